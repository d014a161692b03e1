//! Occurrences fired by the scheduler, and manual triggers.

use super::*;

/// Record a batch of due occurrences and advance the cursors.
pub fn fire(
    c: &Connection,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> StoreResult<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(requests.len());
    let no_overrides = RunOverrides::default();
    for req in requests {
        let row: Option<(i64, Option<i64>, bool, String)> = c
            .prepare_cached("SELECT version, next_fire_at, paused, spec FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([&req.job], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
            .map_err(db)?;
        let Some((version, cursor, paused, spec_json)) = row else {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        };
        if version != req.version || cursor != Some(us(req.expected_cursor)) || paused {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        }
        let spec = parse_spec(&spec_json)?;
        let mut counts = active_counts(c, &req.job)?;
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
                    if insert_run(c, r)?.is_some() {
                        skipped += 1;
                    }
                }
                Disposition::Run => {
                    match admit_run(
                        c,
                        &spec,
                        Trigger::Schedule,
                        occ.at,
                        &no_overrides,
                        &[],
                        how,
                        now,
                        &mut counts,
                    )? {
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
        // Scheduled runs become claimable at their occurrence time (they are due now).
        c.prepare_cached("UPDATE jobs SET next_fire_at = ?2 WHERE name = ?1")
            .map_err(db)?
            .execute(params![req.job, req.next_cursor.map(us)])
            .map_err(db)?;
        out.push(FireOutcome::Fired {
            job: req.job,
            queued,
            skipped,
        });
    }
    Ok(out)
}

/// Trigger a run now.
pub fn trigger_run(
    c: &Connection,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> StoreResult<Run> {
    let rec = load_job(c, job)?.ok_or_else(|| StoreError::JobNotFound(job.to_owned()))?;
    let mut counts = active_counts(c, job)?;
    let (id, _) = admit_run(
        c,
        &rec.spec,
        Trigger::Manual,
        now,
        &overrides,
        &[],
        if force {
            policy::Admission::Force
        } else {
            policy::Admission::Policy
        },
        now,
        &mut counts,
    )?
    .ok_or_else(|| StoreError::Backend("manual run was not inserted".into()))?;
    load_run(c, id)?.ok_or(StoreError::RunNotFound(id))
}
