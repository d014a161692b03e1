//! The registry of remote workers and what each holds.

use super::*;

/// Register or refresh a worker; forget workers long unseen that run nothing.
pub fn upsert_worker(c: &Connection, info: &WorkerInfo, now: Timestamp) -> StoreResult<()> {
    let labels = serde_json::to_string(&info.claim_labels())
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached(
        "INSERT INTO workers (id, labels, slots, version, address, registered_at, last_seen, \
         clock_offset_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) \
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, slots = excluded.slots, \
         version = excluded.version, address = excluded.address, \
         last_seen = MAX(last_seen, excluded.last_seen), clock_offset_us = excluded.clock_offset_us",
    )
    .map_err(db)?
    .execute(params![
        info.id,
        labels,
        i64::from(info.slots),
        info.version,
        info.address,
        us(now),
        info.clock_offset.map(|d| d.as_micros() as i64)
    ])
    .map_err(db)?;
    let forget_before = us(now
        .checked_sub(WORKER_FORGET_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH));
    c.prepare_cached(
        "DELETE FROM workers WHERE last_seen < ?1 AND NOT EXISTS \
         (SELECT 1 FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id)",
    )
    .map_err(db)?
    .execute([forget_before])
    .map_err(db)?;
    Ok(())
}

/// Registered workers by id, with their running counts.
pub fn list_workers(c: &Connection, now: Timestamp) -> StoreResult<Vec<WorkerStatus>> {
    let stale_before = now
        .checked_sub(WORKER_STALE_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut stmt = c
        .prepare_cached(
            "SELECT id, labels, slots, version, address, registered_at, last_seen, \
             (SELECT COUNT(*) FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id), \
             clock_offset_us FROM workers ORDER BY id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, labels, slots, version, address, registered_at, last_seen, running, offset) in rows {
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&labels).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (labels, capabilities) = tempora_core::kind::split_claim_labels(labels);
        let last_seen = ts(last_seen);
        out.push(WorkerStatus {
            info: WorkerInfo {
                id,
                labels,
                capabilities,
                slots: u32::try_from(slots).unwrap_or(0),
                version,
                address,
                clock_offset: offset.map(SignedDuration::from_micros),
            },
            registered_at: ts(registered_at),
            last_seen,
            running: u64::try_from(running).unwrap_or(0),
            stale: last_seen < stale_before,
        });
    }
    Ok(out)
}

/// Runs `running` on a worker with a lease, with their specs.
pub fn worker_runs(c: &Connection, worker: &str) -> StoreResult<Vec<ClaimedRun>> {
    let rows: Vec<(Run, Option<i64>, String)> = c
        .prepare_cached(&format!(
            "SELECT {cols}, runs.lease_expires_at, jobs.spec FROM runs JOIN jobs ON jobs.name = runs.job \
             WHERE runs.state = 'running' AND runs.worker = ?1 AND runs.awaiting_completion = 0 \
             AND runs.lease_expires_at IS NOT NULL ORDER BY runs.id",
            cols = RUN_COLS
                .split(',')
                .map(|col| format!("runs.{}", col.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .map_err(db)?
        .query_map([worker], |r| Ok((run_from_row(r)?, r.get(RUN_COL_COUNT)?, r.get(RUN_COL_COUNT + 1)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    rows.into_iter()
        .map(|(run, lease, spec)| {
            Ok(ClaimedRun {
                run,
                spec: parse_spec(&spec)?,
                lease_expires_at: ts(lease.unwrap_or(0)),
            })
        })
        .collect()
}
