//! Occurrences fired by the scheduler, and manual triggers.

use super::*;

/// Record a batch of due occurrences and advance the cursors.
pub async fn fire(
    c: &Conn,
    requests: Vec<FireRequest>,
    now: Timestamp,
) -> TxResult<Vec<FireOutcome>> {
    let mut out = Vec::with_capacity(requests.len());
    let no_overrides = RunOverrides::default();
    for req in requests {
        let row = c
            .query_opt(
                "SELECT version, next_fire_at, paused, spec FROM jobs WHERE name = $1 FOR UPDATE",
                &[&req.job],
            )
            .await?;
        let Some(row) = row else {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        };
        let version: i64 = row.try_get(0)?;
        let cursor: Option<i64> = row.try_get(1)?;
        let paused: bool = row.try_get(2)?;
        let spec_json: String = row.try_get(3)?;
        if version != req.version || cursor != Some(us(req.expected_cursor)) || paused {
            out.push(FireOutcome::Stale { job: req.job });
            continue;
        }
        let spec = parse_spec(&spec_json)?;
        let mut counts = active_counts(c, &req.job).await?;
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
                    if insert_run(c, r).await?.is_some() {
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
                    )
                    .await?
                    {
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
        c.execute(
            "UPDATE jobs SET next_fire_at = $2 WHERE name = $1",
            &[&req.job, &req.next_cursor.map(us)],
        )
        .await?;
        out.push(FireOutcome::Fired {
            job: req.job,
            queued,
            skipped,
        });
    }
    Ok(out)
}

/// Trigger a run now.
pub async fn trigger_run(
    c: &Conn,
    job: &str,
    overrides: RunOverrides,
    force: bool,
    now: Timestamp,
) -> TxResult<Run> {
    let rec = lock_job(c, job)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(job.to_owned()))?;
    let mut counts = active_counts(c, job).await?;
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
    )
    .await?
    .ok_or_else(|| StoreError::Backend("manual run was not inserted".into()))?;
    Ok(load_run(c, id).await?.ok_or(StoreError::RunNotFound(id))?)
}
