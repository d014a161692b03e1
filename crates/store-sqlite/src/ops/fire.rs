//! Occurrences fired by the scheduler, and manual triggers: the shared scripts
//! (`tempora_store::txn::fire`) on this backend's steps ([`SqliteTx`]).

use super::*;

/// Record a batch of due occurrences and advance the cursors.
pub fn fire(
    c: &Connection,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> StoreResult<Vec<FireOutcome>> {
    sync(txn::fire(&SqliteTx(c), requests, now))
}

/// Trigger a run now.
pub fn trigger_run(
    c: &Connection,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> StoreResult<Run> {
    sync(txn::trigger_run(&SqliteTx(c), job, overrides, force, now))
}

/// Backfill past occurrences.
pub fn backfill(
    c: &Connection,
    job: &str,
    occurrences: &[Timestamp],
    now: Timestamp,
) -> StoreResult<tempora_store::Backfilled> {
    sync(txn::backfill(&SqliteTx(c), job, occurrences, now))
}
