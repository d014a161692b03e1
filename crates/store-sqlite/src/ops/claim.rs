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

/// Append output to a run, keeping at most `max` bytes (the tail).
pub fn append_log(c: &Connection, run_id: i64, data: &[u8], max: u64) -> StoreResult<()> {
    if data.is_empty() {
        return Ok(());
    }
    let row: Option<(i64, i64)> = c
        .prepare_cached("SELECT log_size, log_dropped FROM runs WHERE id = ?1")
        .map_err(db)?
        .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    let Some((size, mut dropped)) = row else {
        return Ok(()); // the run was deleted with its job
    };
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    c.prepare_cached("INSERT INTO run_logs (run_id, offset, data) VALUES (?1, ?2, ?3)")
        .map_err(db)?
        .execute(params![run_id, size, data])
        .map_err(db)?;
    let new_size = size + data.len() as i64;
    // Drop whole chunks from the front until the kept bytes fit, trimming the last one.
    while new_size - dropped > max {
        let first: Option<(i64, Vec<u8>)> = c
            .prepare_cached(
                "SELECT offset, data FROM run_logs WHERE run_id = ?1 ORDER BY offset LIMIT 1",
            )
            .map_err(db)?
            .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(db)?;
        let Some((off, bytes)) = first else { break };
        let excess = new_size - dropped - max;
        c.prepare_cached("DELETE FROM run_logs WHERE run_id = ?1 AND offset = ?2")
            .map_err(db)?
            .execute(params![run_id, off])
            .map_err(db)?;
        if (bytes.len() as i64) <= excess {
            dropped = off + bytes.len() as i64;
        } else {
            let keep = &bytes[excess as usize..];
            c.prepare_cached("INSERT INTO run_logs (run_id, offset, data) VALUES (?1, ?2, ?3)")
                .map_err(db)?
                .execute(params![run_id, off + excess, keep])
                .map_err(db)?;
            dropped = off + excess;
        }
    }
    c.prepare_cached("UPDATE runs SET log_size = ?2, log_dropped = ?3 WHERE id = ?1")
        .map_err(db)?
        .execute(params![run_id, new_size, dropped])
        .map_err(db)?;
    Ok(())
}
