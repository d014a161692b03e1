//! The artifacts table (see `tempora_store::artifacts`): each artifact's bytes are a
//! PostgreSQL large object (`lo_from_bytea`, `lo_put`, `lo_get`, `lo_unlink`), written and read
//! in 1 MiB pieces, in the caller's transaction.

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

/// Store an artifact as a large object (nothing when it exists).
pub async fn put(c: &Conn, sha256: &str, data: &[u8], now: Timestamp) -> TxResult<ArtifactInfo> {
    // One upload of a digest at a time; a second finds the first's row.
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&sha256],
    )
    .await?;
    if let Some(i) = info(c, sha256).await? {
        return Ok(i);
    }
    let size = i64::try_from(data.len()).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut pieces = data.chunks(CHUNK);
    let first: &[u8] = pieces.next().unwrap_or_default();
    let blob: u32 = c
        .query_one("SELECT lo_from_bytea(0, $1)", &[&first])
        .await?
        .try_get(0)?;
    let mut offset = first.len() as i64;
    for piece in pieces {
        c.execute("SELECT lo_put($1, $2, $3)", &[&blob, &offset, &piece])
            .await?;
        offset += piece.len() as i64;
    }
    c.execute(
        "INSERT INTO artifacts (sha256, size, created_at, blob) VALUES ($1, $2, $3, $4)",
        &[&sha256, &size, &us(now), &blob],
    )
    .await?;
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
    let Some(row) = c
        .query_opt(
            "SELECT blob, size FROM artifacts WHERE sha256 = $1",
            &[&sha256],
        )
        .await?
    else {
        return Ok(None);
    };
    let blob: u32 = row.try_get(0)?;
    let size: i64 = row.try_get(1)?;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let piece = CHUNK as i32;
    let mut offset = 0i64;
    while offset < size {
        let bytes: Vec<u8> = c
            .query_one("SELECT lo_get($1, $2, $3)", &[&blob, &offset, &piece])
            .await?
            .try_get(0)?;
        if bytes.is_empty() {
            break;
        }
        offset += bytes.len() as i64;
        out.extend_from_slice(&bytes);
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
    let gone = c
        .query_opt(
            "DELETE FROM artifacts WHERE sha256 = $1 RETURNING blob",
            &[&sha256],
        )
        .await?;
    match gone {
        Some(row) => {
            let blob: u32 = row.try_get(0)?;
            c.execute("SELECT lo_unlink($1)", &[&blob]).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}
