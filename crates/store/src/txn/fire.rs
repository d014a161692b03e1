//! Occurrences fired by the scheduler, and manual triggers.

use jiff::Timestamp;
use tempora_core::policy::{self, Disposition};
use tempora_core::run::{Run, RunOverrides, RunState, Trigger};

use super::{NewRun, Tx, admit_run};
use crate::micros::us;
use crate::{Backfilled, FireOutcome, FireRequest, StoreError};

/// Record a batch of due occurrences and advance the cursors. A request whose job changed
/// since it was planned (version, cursor, pause) is `Stale` and writes nothing; every
/// occurrence is one run at most (the backend's unique key), so a repeated fire adds none.
pub async fn fire<T: Tx>(
    tx: &T,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> Result<Vec<FireOutcome>, T::Error> {
    let mut out = Vec::with_capacity(requests.len());
    let no_overrides = RunOverrides::default();
    for req in requests {
        let row = tx.fire_row(&req.job).await?;
        let Some(row) = row.filter(|r| {
            r.version == req.version && r.cursor_us == Some(us(req.expected_cursor)) && !r.paused
        }) else {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        };
        let spec: tempora_core::job::JobSpec = serde_json::from_str(&row.spec)
            .map_err(|e| StoreError::Backend(format!("stored job spec is unreadable: {e}")))?;
        let mut counts = tx.active_counts(&req.job).await?;
        let mut queued = Vec::new();
        let mut skipped = 0usize;
        let mut note = req.skipped_note.as_deref();
        // The oldest occurrence to run meets the job's runs under its policy; the others of a
        // catch-up wait behind it (policy::admit).
        let mut how = policy::Admission::Policy;
        for occ in &req.occurrences {
            match &occ.disposition {
                Disposition::Skip(reason) => {
                    let reason = match note.take() {
                        Some(n) => format!("{reason}; {n}"),
                        None => reason.clone(),
                    };
                    let r = NewRun {
                        job: &req.job,
                        trigger: Trigger::Schedule,
                        origin: Trigger::Schedule,
                        scheduled_for: occ.at,
                        attempt: 1,
                        state: RunState::Skipped,
                        hold: false,
                        now,
                        not_before: occ.at,
                        error: Some(&reason),
                        overrides: &no_overrides,
                        triggered_by: &[],
                    };
                    if tx.insert_run(&r).await?.is_some() {
                        skipped += 1;
                    }
                }
                Disposition::Run => {
                    let admitted = admit_run(
                        tx,
                        &spec,
                        Trigger::Schedule,
                        occ.at,
                        &no_overrides,
                        &[],
                        how,
                        now,
                        &mut counts,
                    )
                    .await?;
                    match admitted {
                        Some((id, true)) => {
                            queued.push(id);
                            how = policy::Admission::Behind { admitted: true };
                        }
                        Some((_, false)) => {
                            skipped += 1;
                            how = policy::Admission::Behind { admitted: false };
                        }
                        None => {}
                    }
                }
            }
        }
        tx.set_cursor(&req.job, req.next_cursor).await?;
        out.push(FireOutcome::Fired {
            job: req.job,
            queued,
            skipped,
        });
    }
    Ok(out)
}

/// Trigger a run of `job` now, under its overlap policy unless `force`.
pub async fn trigger_run<T: Tx>(
    tx: &T,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> Result<Run, T::Error> {
    let rec = tx
        .job_for_update(job)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(job.to_owned()))?;
    let mut counts = tx.active_counts(job).await?;
    let how = if force {
        policy::Admission::Force
    } else {
        policy::Admission::Policy
    };
    let (id, _) = admit_run(
        tx,
        &rec.spec,
        Trigger::Manual,
        now,
        &overrides,
        &[],
        how,
        now,
        &mut counts,
    )
    .await?
    .ok_or_else(|| StoreError::Backend("manual run was not inserted".into()))?;
    Ok(tx.run(id).await?.ok_or(StoreError::RunNotFound(id))?)
}

/// Create one run (trigger `backfill`) per occurrence of `occurrences` (oldest first), each at
/// most once: an occurrence that has a run already, scheduled or backfilled, gets no other (the
/// occurrence key is shared). The runs go one after another, as under `concurrency: queue`
/// whatever the job's policy: the first starts unless the job has a run active, each later one
/// is held behind it and released when the job has nothing active.
pub async fn backfill<T: Tx>(
    tx: &T,
    job: &str,
    occurrences: &[Timestamp],
    now: Timestamp,
) -> Result<Backfilled, T::Error> {
    let rec = tx
        .job_for_update(job)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(job.to_owned()))?;
    let mut spec = rec.spec;
    spec.concurrency = tempora_core::job::Concurrency::Queue;
    let mut counts = tx.active_counts(job).await?;
    let no_overrides = RunOverrides::default();
    let mut out = Backfilled::default();
    // Occurrences up to the newest one whose run retention deleted may have run: not again.
    let pruned = tx.pruned_through(job).await?;
    // Behind whatever the job has active or held already (another backfill's runs too):
    // queue semantics would skip a second waiting run.
    let mut how = if counts == (0, 0) {
        policy::Admission::Policy
    } else {
        policy::Admission::Behind { admitted: true }
    };
    for &at in occurrences {
        if pruned.is_some_and(|p| at <= p) {
            out.pruned += 1;
            continue;
        }
        let admitted = admit_run(
            tx,
            &spec,
            Trigger::Backfill,
            at,
            &no_overrides,
            &[],
            how,
            now,
            &mut counts,
        )
        .await?;
        match admitted {
            Some((id, _)) => {
                out.created.push(id);
                how = policy::Admission::Behind { admitted: true };
            }
            None => out.existing += 1,
        }
    }
    Ok(out)
}
