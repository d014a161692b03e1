//! The artifacts tables (see `tempora_store::artifacts`; the SQLite store's statements in
//! PostgreSQL's dialect).

use jiff::Timestamp;
use tempora_store::StoreError;
use tempora_store::artifacts::{ArtifactInfo, CHUNK};
use tokio_postgres::Row;

use crate::pool::{Conn, TxResult};
use crate::rows::{ts, us};

fn info_row(r: &Row) -> TxResult<ArtifactInfo> {
    let size: i64 = r.try_get(1)?;
    Ok(ArtifactInfo {
        sha256: r.try_get(0)?,
        size: u64::try_from(size).unwrap_or(0),
        created_at: ts(r.try_get(2)?),
    })
}

/// One artifact's record.
pub async fn info(c: &Conn, sha256: &str) -> TxResult<Option<ArtifactInfo>> {
    c.query_opt(
        "SELECT sha256, size, created_at FROM artifacts WHERE sha256 = $1",
        &[&sha256],
    )
    .await?
    .map(|r| info_row(&r))
    .transpose()
}

/// Store an artifact in chunks (nothing when it exists).
pub async fn put(c: &Conn, sha256: &str, data: &[u8], now: Timestamp) -> TxResult<ArtifactInfo> {
    let size = i64::try_from(data.len()).map_err(|e| StoreError::Backend(e.to_string()))?;
    let n = c
        .execute(
            "INSERT INTO artifacts (sha256, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sha256) DO NOTHING",
            &[&sha256, &size, &us(now)],
        )
        .await?;
    if n == 1 {
        for (seq, chunk) in data.chunks(CHUNK).enumerate() {
            let seq = seq as i64;
            c.execute(
                "INSERT INTO artifact_chunks (sha256, seq, data) VALUES ($1, $2, $3)",
                &[&sha256, &seq, &chunk],
            )
            .await?;
        }
    }
    info(c, sha256)
        .await?
        .ok_or_else(|| StoreError::Backend("artifact vanished while stored".into()).into())
}

/// The artifacts, newest first.
pub async fn list(c: &Conn, limit: u32) -> TxResult<Vec<ArtifactInfo>> {
    c.query(
        "SELECT sha256, size, created_at FROM artifacts ORDER BY created_at DESC, sha256 LIMIT $1",
        &[&i64::from(limit)],
    )
    .await?
    .iter()
    .map(info_row)
    .collect()
}

/// An artifact's bytes.
pub async fn read(c: &Conn, sha256: &str) -> TxResult<Option<Vec<u8>>> {
    if info(c, sha256).await?.is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for r in c
        .query(
            "SELECT data FROM artifact_chunks WHERE sha256 = $1 ORDER BY seq",
            &[&sha256],
        )
        .await?
    {
        let chunk: Vec<u8> = r.try_get(0)?;
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// Delete an artifact no job runs.
pub async fn delete(c: &Conn, sha256: &str) -> TxResult<bool> {
    let reference = format!("sha256:{sha256}");
    let users: Vec<String> = c
        .query(
            "SELECT name FROM jobs WHERE spec::jsonb ->> 'artifact' = $1 ORDER BY name FOR UPDATE",
            &[&reference],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "artifact {reference} is run by job(s) {}: change or delete them first",
            users.join(", ")
        ))
        .into());
    }
    c.execute("DELETE FROM artifact_chunks WHERE sha256 = $1", &[&sha256])
        .await?;
    let n = c
        .execute("DELETE FROM artifacts WHERE sha256 = $1", &[&sha256])
        .await?;
    Ok(n > 0)
}
