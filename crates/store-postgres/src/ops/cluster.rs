//! Leadership lease, fencing (on the database's clock), node heartbeats, the cluster view.

use super::*;

/// Runs whose lease expired become lost.
/// The database clock in microseconds: leases use it so nodes' clocks need not agree.
pub(super) const DB_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

/// Refuse a scheduling write unless `fence` still holds the lease. The row is share-locked for
/// the rest of the transaction, so a takeover waits for this write to commit.
pub async fn check_fence(c: &Conn, fence: Option<&Fence>) -> TxResult<()> {
    let Some(f) = fence else {
        return Ok(());
    };
    let row = c
        .query_opt(
            "SELECT node, epoch FROM leader_lease WHERE id = 1 FOR SHARE",
            &[],
        )
        .await?;
    match row {
        Some(r) => {
            let (node, epoch): (String, i64) = (r.get(0), r.get(1));
            if node == f.node && epoch as u64 == f.epoch {
                Ok(())
            } else {
                Err(StoreError::Fenced(format!(
                    "node {} with epoch {} is not the leader (the lease is {node}'s, epoch {epoch})",
                    f.node, f.epoch
                ))
                .into())
            }
        }
        None => Err(StoreError::Fenced(format!("node {} holds no lease", f.node)).into()),
    }
}

pub(super) fn lease_from(r: &Row) -> Lease {
    Lease {
        node: r.get(0),
        address: r.get(1),
        epoch: r.get::<_, i64>(2) as u64,
        expires_at: ts(r.get(3)),
    }
}

/// Take or renew the leader lease (database clock).
pub async fn acquire_leadership(
    c: &Conn,
    node: &str,
    address: &str,
    ttl: Duration,
) -> TxResult<Lease> {
    let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    c.execute(
        &format!(
            "INSERT INTO leader_lease AS l (id, node, address, epoch, expires_at) \
             VALUES (1, $1, $2, 1, {DB_NOW} + $3) \
             ON CONFLICT (id) DO UPDATE SET \
               epoch = CASE WHEN l.node = $1 AND l.expires_at >= {DB_NOW} THEN l.epoch ELSE l.epoch + 1 END, \
               node = $1, address = $2, expires_at = {DB_NOW} + $3 \
             WHERE l.node = $1 OR l.expires_at < {DB_NOW}"
        ),
        &[&node, &address, &ttl_us],
    )
    .await?;
    let r = c
        .query_one(
            "SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1",
            &[],
        )
        .await?;
    Ok(lease_from(&r))
}

/// The database's clock.
pub async fn reference_time(c: &Conn) -> TxResult<Timestamp> {
    let now: i64 = c.query_one(&format!("SELECT {DB_NOW}"), &[]).await?.get(0);
    Ok(ts(now))
}

/// Give the lease up.
pub async fn release_leadership(c: &Conn, node: &str, epoch: u64) -> TxResult<()> {
    let epoch = epoch as i64;
    c.execute(
        "UPDATE leader_lease SET expires_at = 0 WHERE id = 1 AND node = $1 AND epoch = $2",
        &[&node, &epoch],
    )
    .await?;
    Ok(())
}

/// Record a node's heartbeat (database clock).
pub async fn node_heartbeat(
    c: &Conn,
    node: &str,
    address: &str,
    clock_offset: Option<SignedDuration>,
) -> TxResult<()> {
    let offset = clock_offset.map(|d| d.as_micros() as i64);
    c.execute(
        &format!(
            "INSERT INTO nodes (id, address, last_seen, clock_offset_us) \
             VALUES ($1, $2, {DB_NOW}, $3) \
             ON CONFLICT (id) DO UPDATE SET address = $2, last_seen = {DB_NOW}, clock_offset_us = $3"
        ),
        &[&node, &address, &offset],
    )
    .await?;
    Ok(())
}

/// The lease and the nodes.
pub async fn cluster_view(c: &Conn) -> TxResult<ClusterView> {
    let lease = c
        .query_opt(
            "SELECT node, address, epoch, expires_at FROM leader_lease WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| lease_from(&r));
    let nodes = c
        .query(
            "SELECT id, address, last_seen, clock_offset_us FROM nodes ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| NodeInfo {
            id: r.get(0),
            address: r.get(1),
            last_seen: ts(r.get(2)),
            clock_offset: r.get::<_, Option<i64>>(3).map(SignedDuration::from_micros),
        })
        .collect();
    let now: i64 = c.query_one(&format!("SELECT {DB_NOW}"), &[]).await?.get(0);
    Ok(ClusterView {
        lease,
        nodes,
        now: ts(now),
    })
}
