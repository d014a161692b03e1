//! The end of a run and what follows: the job's counters, a retry, the children's progress, and
//! the release of a run held under `concurrency: queue`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tempora_core::dag;
use tempora_core::notify;
use tempora_core::policy;
use tempora_core::run::{RunOverrides, RunState, Trigger};

use super::{NewRun, Tx, admit_run};
use crate::micros::ts;

/// A run that just reached a final state, as its follow-up needs it (the columns the backends
/// return from the update that ended it).
#[derive(Debug, Clone)]
pub struct Ended {
    /// The run.
    pub id: i64,
    /// Its job.
    pub job: String,
    /// What made its first attempt (`schedule`, `manual`, …).
    pub origin: String,
    /// Its occurrence, in microseconds.
    pub scheduled_for: i64,
    /// Its attempt.
    pub attempt: u32,
    /// Its overrides (JSON), kept by a retry.
    pub overrides: Option<String>,
}

/// Counter changes of a job for a batch of ended runs ([`Tx::add_counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Successes.
    pub ok: i64,
    /// Errors (final failures).
    pub errors: i64,
    /// Errors after the batch's last success (`errors_since_success` becomes this when the
    /// batch has a success, else grows by `errors`).
    pub errors_after_ok: i64,
}

/// The follow-up of one run that reached `state`.
pub async fn after_final<T: Tx>(
    tx: &T,
    e: &Ended,
    state: RunState,
    now: Timestamp,
) -> Result<(), T::Error> {
    after_finals(tx, &[(e, state)], now).await
}

/// The follow-ups of runs that reached a final state, job by job: each job is locked and its
/// counters updated once for all its runs (a batch of results is then a few statements per job
/// rather than several per run), then retries and dependency reports per run, then the release
/// of a run held under `concurrency: queue`.
pub async fn after_finals<T: Tx>(
    tx: &T,
    ended: &[(&Ended, RunState)],
    now: Timestamp,
) -> Result<(), T::Error> {
    // Runs grouped by job, each group in the runs' order; the map's order (by name) is the one
    // lock order of every transaction, so two batches cannot deadlock.
    let mut by_job: BTreeMap<&str, Vec<(&Ended, RunState)>> = BTreeMap::new();
    for (e, state) in ended {
        by_job.entry(&e.job).or_default().push((*e, *state));
    }
    for (job, runs) in by_job {
        let Some(rec) = tx.job_for_update(job).await? else {
            continue;
        };
        // Counters, in the runs' order. A failure that will be retried is not an error of the
        // job yet (as in Chronos): only the last attempt's is.
        let mut counted = Counted::default();
        for (e, state) in &runs {
            match state {
                RunState::Succeeded => {
                    counted.ok += 1;
                    counted.errors_after_ok = 0;
                }
                RunState::Failed | RunState::TimedOut | RunState::Lost
                    if !policy::should_retry(&rec.spec, *state, e.attempt) =>
                {
                    counted.errors += 1;
                    counted.errors_after_ok += 1;
                }
                _ => {}
            }
        }
        if counted.ok + counted.errors > 0 {
            tx.add_counters(job, counted, now).await?;
        }
        let mut has_children: Option<bool> = None;
        let owner = rec
            .spec
            .owner
            .as_deref()
            .map(notify::owner_addresses)
            .unwrap_or_default();
        let defaults = crate::notify::defaults();
        for (e, state) in runs {
            let retrying = policy::should_retry(&rec.spec, state, e.attempt);
            if !rec.spec.notify.is_empty() || !owner.is_empty() || !defaults.is_empty() {
                let rules = Rules {
                    job: &rec.spec.notify,
                    defaults: &defaults,
                    owner: &owner,
                };
                record_notifications(tx, &rules, e, state, retrying, now).await?;
            }
            let counts_for_children = state == RunState::Succeeded
                || (rec.spec.soft_error && state.is_retryable_failure() && !retrying);
            if counts_for_children {
                let any = match has_children {
                    Some(v) => v,
                    None => {
                        let v = !tx.children_of(job).await?.is_empty();
                        has_children = Some(v);
                        v
                    }
                };
                if any {
                    report_to_children(tx, job, e.id, now).await?;
                }
            }
            if retrying {
                let delay = policy::retry_delay(&rec.spec, e.attempt);
                let overrides: RunOverrides = match &e.overrides {
                    Some(s) => serde_json::from_str(s).unwrap_or_default(),
                    None => RunOverrides::default(),
                };
                let origin = e.origin.parse::<Trigger>().unwrap_or(Trigger::Schedule);
                tx.insert_run(&NewRun {
                    job,
                    trigger: Trigger::Retry,
                    origin,
                    scheduled_for: ts(e.scheduled_for),
                    attempt: e.attempt + 1,
                    state: RunState::Queued,
                    hold: false,
                    now,
                    not_before: now.checked_add(delay).unwrap_or(now),
                    error: None,
                    overrides: &overrides,
                    triggered_by: &[],
                })
                .await?;
            }
        }
        // Release a run waiting under `concurrency: queue` once nothing else is active.
        let (active, held) = tx.active_counts(job).await?;
        if active == 0 && held > 0 {
            tx.release_held(job, now).await?;
        }
    }
    Ok(())
}

/// Who hears of a job's runs.
struct Rules<'a> {
    /// The job's own `notify`.
    job: &'a [notify::NotifyRule],
    /// The server-wide rules ([`crate::notify::defaults`]).
    defaults: &'a [notify::NotifyRule],
    /// The addresses in the job's `owner`.
    owner: &'a [String],
}

/// The notifications of one ended run: one per rule (the job's, then the server-wide ones)
/// that matches its events, and an email to the addresses in `owner` when no retry is left
/// after a failure (Chronos's owner notifications). A target named twice is notified once.
async fn record_notifications<T: Tx>(
    tx: &T,
    rules: &Rules<'_>,
    e: &Ended,
    state: RunState,
    retrying: bool,
    now: Timestamp,
) -> Result<(), T::Error> {
    let events = notify::events_of(state, retrying);
    if events.is_empty() {
        return Ok(());
    }
    // A rule sends when one of its events is among the run's; the notification names all of
    // the run's events (a `failure` rule's receiver learns whether retries are exhausted).
    let mut targets: Vec<notify::Target> = Vec::new();
    for r in rules.job.iter().chain(rules.defaults) {
        if let Some(t) = r.target().filter(|_| !r.matching(&events).is_empty())
            && !targets.contains(&t)
        {
            targets.push(t);
        }
    }
    let owner = notify::Target::Email(rules.owner.to_vec());
    if !rules.owner.is_empty()
        && events.contains(&notify::Event::RetryExhausted)
        && !targets.contains(&owner)
    {
        targets.push(owner);
    }
    // Both are plain enums and strings: serializing them cannot fail.
    let events = serde_json::to_string(&events).unwrap_or_default();
    for target in targets {
        let target = serde_json::to_string(&target).unwrap_or_default();
        tx.insert_notification(e.id, &e.job, &target, &events, now)
            .await?;
    }
    Ok(())
}

/// A parent's run ended in a way that counts for its children (succeeded, or failed with
/// `soft_error` and no retry left): record it, and trigger every child whose parents have all
/// reported since its last dependency run.
pub async fn report_to_children<T: Tx>(
    tx: &T,
    parent: &str,
    run_id: i64,
    now: Timestamp,
) -> Result<(), T::Error> {
    for child in tx.children_of(parent).await? {
        // Lock the child first: two parents reporting at once must see each other's progress.
        let Some(rec) = tx.job_for_update(&child).await? else {
            continue;
        };
        tx.record_progress(&child, parent, run_id).await?;
        let reported = tx.progress(&child).await?;
        let names = reported.keys().cloned().collect();
        if !dag::ready(&rec.spec.parents, &names) {
            continue;
        }
        tx.clear_progress(&child).await?;
        if rec.spec.paused {
            tracing::info!(message = "dependency trigger ignored: the job is paused", job = %child);
            continue;
        }
        let by: Vec<i64> = rec
            .spec
            .parents
            .iter()
            .filter_map(|p| reported.get(p).copied())
            .collect();
        let mut counts = tx.active_counts(&child).await?;
        admit_run(
            tx,
            &rec.spec,
            Trigger::Dependency,
            now,
            &RunOverrides::default(),
            &by,
            policy::Admission::Policy,
            now,
            &mut counts,
        )
        .await?;
    }
    Ok(())
}
