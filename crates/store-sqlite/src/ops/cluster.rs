//! Leadership lease, fencing, node heartbeats, the cluster view.

use super::*;

/// Refuse a scheduling write unless `fence` still holds the lease.
pub fn check_fence(c: &Connection, fence: Option<&Fence>) -> StoreResult<()> {
    let Some(f) = fence else {
        return Ok(());
    };
    let held: Option<(String, i64)> = c
        .prepare_cached("SELECT node, epoch FROM leader_lease WHERE id = 1")
        .map_err(db)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db)?;
    match held {
        Some((node, epoch)) if node == f.node && epoch as u64 == f.epoch => Ok(()),
        Some((node, epoch)) => Err(StoreError::Fenced(format!(
            "node {} with epoch {} is not the leader (the lease is {node}'s, epoch {epoch})",
            f.node, f.epoch
        ))),
        None => Err(StoreError::Fenced(format!(
            "node {} holds no lease",
            f.node
        ))),
    }
}

pub(super) fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        node: r.get(0)?,
        address: r.get(1)?,
        epoch: r.get::<_, i64>(2)? as u64,
        expires_at: ts(r.get(3)?),
    })
}

/// Take or renew the leader lease.
pub fn acquire_leadership(
    c: &Connection,
    node: &str,
    address: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    let until = us(now).saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
    // Insert the first lease; renew ours; take a lapsed one with the next epoch.
    c.prepare_cached(
        "INSERT INTO leader_lease (id, node, address, epoch, expires_at) VALUES (1, ?1, ?2, 1, ?3) \
         ON CONFLICT (id) DO UPDATE SET \
           epoch = CASE WHEN leader_lease.node = ?1 AND leader_lease.expires_at >= ?4 \
                        THEN leader_lease.epoch ELSE leader_lease.epoch + 1 END, \
           node = ?1, address = ?2, expires_at = ?3 \
         WHERE leader_lease.node = ?1 OR leader_lease.expires_at < ?4",
    )
    .map_err(db)?
    .execute(params![node, address, until, us(now)])
    .map_err(db)?;
    c.prepare_cached("SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1")
        .map_err(db)?
        .query_row([], lease_row)
        .map_err(db)
}

/// Give the lease up.
pub fn release_leadership(c: &Connection, node: &str, epoch: u64) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE leader_lease SET expires_at = 0 WHERE id = 1 AND node = ?1 AND epoch = ?2",
    )
    .map_err(db)?
    .execute(params![node, epoch as i64])
    .map_err(db)?;
    Ok(())
}

/// Record a node's heartbeat.
pub fn node_heartbeat(
    c: &Connection,
    node: &str,
    address: &str,
    clock_offset: Option<SignedDuration>,
    now: Timestamp,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO nodes (id, address, last_seen, clock_offset_us) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (id) DO UPDATE SET address = ?2, last_seen = ?3, clock_offset_us = ?4",
    )
    .map_err(db)?
    .execute(params![
        node,
        address,
        us(now),
        clock_offset.map(|d| d.as_micros() as i64)
    ])
    .map_err(db)?;
    Ok(())
}

/// The lease and the nodes.
pub fn cluster_view(c: &Connection, now: Timestamp) -> StoreResult<ClusterView> {
    let lease = c
        .prepare_cached("SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1")
        .map_err(db)?
        .query_row([], lease_row)
        .optional()
        .map_err(db)?;
    let nodes = c
        .prepare_cached("SELECT id, address, last_seen, clock_offset_us FROM nodes ORDER BY id")
        .map_err(db)?
        .query_map([], |r| {
            Ok(NodeInfo {
                id: r.get(0)?,
                address: r.get(1)?,
                last_seen: ts(r.get(2)?),
                clock_offset: r.get::<_, Option<i64>>(3)?.map(SignedDuration::from_micros),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(ClusterView { lease, nodes, now })
}
