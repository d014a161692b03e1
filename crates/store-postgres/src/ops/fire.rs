//! Occurrences fired by the scheduler, and manual triggers: the shared scripts
//! (`tempora_store::txn::fire`) on this backend's steps ([`PgTx`]).

use super::*;

/// Record a batch of due occurrences and advance the cursors.
pub async fn fire(
    c: &Conn,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> TxResult<Vec<FireOutcome>> {
    txn::fire(&PgTx(c), requests, now).await
}

/// Trigger a run now.
pub async fn trigger_run(
    c: &Conn,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> TxResult<Run> {
    txn::trigger_run(&PgTx(c), job, overrides, force, now).await
}

/// Backfill past occurrences.
pub async fn backfill(
    c: &Conn,
    job: &str,
    occurrences: &[Timestamp],
    now: Timestamp,
) -> TxResult<tempora_store::Backfilled> {
    txn::backfill(&PgTx(c), job, occurrences, now).await
}
