//! The registry of remote workers and what each holds.

use super::*;

/// Register or refresh a worker; forget workers long unseen that run nothing.
pub async fn upsert_worker(c: &Conn, info: &WorkerInfo, now: Timestamp) -> TxResult<()> {
    let labels = json(&info.claim_labels())?;
    c.execute(
        "INSERT INTO workers (id, labels, slots, version, address, registered_at, last_seen, \
         clock_offset_us) VALUES ($1, CAST($2::text AS jsonb), $3, $4, $5, $6, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET labels = excluded.labels, slots = excluded.slots, \
         version = excluded.version, address = excluded.address, \
         last_seen = GREATEST(workers.last_seen, excluded.last_seen), \
         clock_offset_us = excluded.clock_offset_us",
        &[
            &info.id,
            &labels,
            &i64::from(info.slots),
            &info.version,
            &info.address,
            &us(now),
            &info.clock_offset.map(|d| d.as_micros() as i64),
        ],
    )
    .await?;
    let forget_before = us(now
        .checked_sub(WORKER_FORGET_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH));
    c.execute(
        "DELETE FROM workers WHERE last_seen < $1 AND NOT EXISTS \
         (SELECT 1 FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id)",
        &[&forget_before],
    )
    .await?;
    Ok(())
}

/// Registered workers by id, with their running counts.
pub async fn list_workers(c: &Conn, now: Timestamp) -> TxResult<Vec<WorkerStatus>> {
    let stale_before = now
        .checked_sub(WORKER_STALE_AFTER)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let rows = c
        .query(
            "SELECT id, labels::text, slots, version, address, registered_at, last_seen, \
             (SELECT COUNT(*) FROM runs WHERE runs.state = 'running' AND runs.worker = workers.id), \
             clock_offset_us FROM workers ORDER BY id",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let labels: String = r.try_get(1)?;
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&labels).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (labels, capabilities) = tempora_core::kind::split_claim_labels(labels);
        let slots: i64 = r.try_get(2)?;
        let running: i64 = r.try_get(7)?;
        let last_seen = ts(r.try_get(6)?);
        out.push(WorkerStatus {
            info: WorkerInfo {
                id: r.try_get(0)?,
                labels,
                capabilities,
                slots: u32::try_from(slots).unwrap_or(0),
                version: r.try_get(3)?,
                address: r.try_get(4)?,
                clock_offset: r
                    .try_get::<_, Option<i64>>(8)?
                    .map(SignedDuration::from_micros),
            },
            registered_at: ts(r.try_get(5)?),
            last_seen,
            running: u64::try_from(running).unwrap_or(0),
            stale: last_seen < stale_before,
        });
    }
    Ok(out)
}

/// Runs `running` on a worker with a lease, with their specs.
pub async fn worker_runs(c: &Conn, worker: &str) -> TxResult<Vec<ClaimedRun>> {
    let cols = RUN_COLS
        .split(',')
        .map(|col| format!("runs.{}", col.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = c
        .query(
            &format!(
                "SELECT {cols}, runs.lease_expires_at, jobs.spec FROM runs \
                 JOIN jobs ON jobs.name = runs.job \
                 WHERE runs.state = 'running' AND runs.worker = $1 \
                 AND NOT runs.awaiting_completion AND runs.lease_expires_at IS NOT NULL \
                 ORDER BY runs.id"
            ),
            &[&worker],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let lease: Option<i64> = r.try_get(RUN_COL_COUNT)?;
        let spec: String = r.try_get(RUN_COL_COUNT + 1)?;
        out.push(ClaimedRun {
            run: run_from_row(r)?,
            spec: parse_spec(&spec)?,
            lease_expires_at: ts(lease.unwrap_or(0)),
        });
    }
    Ok(out)
}
