//! Claims of queued runs, held-claim checks, heartbeats, output appends.

use super::*;

/// Claim runnable queued runs for a worker with `labels` (a job's `selector` must be contained
/// in them).
pub fn claim_runs(
    c: &Connection,
    worker: &str,
    labels: &BTreeMap<String, String>,
    max: usize,
    now: Timestamp,
    lease: Duration,
) -> StoreResult<Vec<ClaimedRun>> {
    let lease_until = add(now, lease);
    let labels_json =
        serde_json::to_string(labels).map_err(|e| StoreError::Backend(e.to_string()))?;
    let runs: Vec<Run> = c
        .prepare_cached(&format!(
            "UPDATE runs SET state = 'running', worker = ?1, started_at = ?2, lease_expires_at = ?3 \
             WHERE id IN (SELECT r.id FROM runs r JOIN jobs j ON j.name = r.job \
                          WHERE r.state = 'queued' AND r.hold = 0 AND r.not_before <= ?2 \
                          AND {SELECTOR_MATCHES} \
                          ORDER BY r.not_before, r.id LIMIT ?4) \
             RETURNING {RUN_COLS}"
        ))
        .map_err(db)?
        .query_map(
            params![worker, us(now), us(lease_until), max as i64, labels_json],
            run_from_row,
        )
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut specs: HashMap<String, JobSpec> = HashMap::new();
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let spec = match specs.get(&run.job) {
            Some(s) => s.clone(),
            None => {
                let json: String = c
                    .prepare_cached("SELECT spec FROM jobs WHERE name = ?1")
                    .map_err(db)?
                    .query_row([&run.job], |r| r.get(0))
                    .map_err(db)?;
                let s: JobSpec = parse_spec(&json)?;
                specs.insert(run.job.clone(), s.clone());
                s
            }
        };
        out.push(ClaimedRun {
            run,
            spec,
            lease_expires_at: lease_until,
        });
    }
    // RETURNING order is unspecified; hand runs out oldest first.
    out.sort_by_key(|c| (c.run.not_before, c.run.id));
    Ok(out)
}

/// Whether [`claim_runs`] would find a run for `labels` now (read-only).
pub fn any_claimable(
    c: &Connection,
    labels: &BTreeMap<String, String>,
    now: Timestamp,
) -> StoreResult<bool> {
    let labels_json =
        serde_json::to_string(labels).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached(&format!(
        "SELECT 1 FROM runs r JOIN jobs j ON j.name = r.job \
         WHERE r.state = 'queued' AND r.hold = 0 AND r.not_before <= ?1 \
         AND {} LIMIT 1",
        SELECTOR_MATCHES.replace("?5", "?2")
    ))
    .map_err(db)?
    .query_row(params![us(now), labels_json], |_| Ok(()))
    .optional()
    .map_err(db)
    .map(|r| r.is_some())
}

/// Renew leases; return the ids that must stop.
pub fn heartbeat(
    c: &Connection,
    worker: &str,
    ids: &[i64],
    now: Timestamp,
    lease: Duration,
) -> StoreResult<Vec<i64>> {
    let until = us(add(now, lease));
    let mut stop = Vec::new();
    let mut stmt = c
        .prepare_cached(
            "UPDATE runs SET lease_expires_at = ?3 WHERE id = ?1 AND state = 'running' \
             AND worker = ?2 RETURNING cancel_requested",
        )
        .map_err(db)?;
    for &id in ids {
        let flag: Option<i64> = stmt
            .query_row(params![id, worker, until], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if flag != Some(0) {
            stop.push(id);
        }
    }
    Ok(stop)
}
