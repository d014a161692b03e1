//! The artifacts tables (see `tempora_store::artifacts`).

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use tempora_store::artifacts::{ArtifactInfo, CHUNK};
use tempora_store::{StoreError, StoreResult};

use crate::rows::{db, ts, us};

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactInfo> {
    Ok(ArtifactInfo {
        sha256: r.get(0)?,
        size: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        created_at: ts(r.get(2)?),
    })
}

/// One artifact's record.
pub fn info(c: &Connection, sha256: &str) -> StoreResult<Option<ArtifactInfo>> {
    c.prepare_cached("SELECT sha256, size, created_at FROM artifacts WHERE sha256 = ?1")
        .map_err(db)?
        .query_row([sha256], info_row)
        .optional()
        .map_err(db)
}

/// Store an artifact in chunks (nothing when it exists).
pub fn put(c: &Connection, sha256: &str, data: &[u8], now: Timestamp) -> StoreResult<ArtifactInfo> {
    if let Some(i) = info(c, sha256)? {
        return Ok(i);
    }
    let size = i64::try_from(data.len()).map_err(|e| StoreError::Backend(e.to_string()))?;
    c.prepare_cached("INSERT INTO artifacts (sha256, size, created_at) VALUES (?1, ?2, ?3)")
        .map_err(db)?
        .execute(params![sha256, size, us(now)])
        .map_err(db)?;
    for (seq, chunk) in data.chunks(CHUNK).enumerate() {
        c.prepare_cached("INSERT INTO artifact_chunks (sha256, seq, data) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(params![sha256, seq as i64, chunk])
            .map_err(db)?;
    }
    Ok(ArtifactInfo {
        sha256: sha256.to_owned(),
        size: data.len() as u64,
        created_at: now,
    })
}

/// The artifacts, newest first.
pub fn list(c: &Connection, limit: u32) -> StoreResult<Vec<ArtifactInfo>> {
    c.prepare_cached(
        "SELECT sha256, size, created_at FROM artifacts ORDER BY created_at DESC, sha256 LIMIT ?1",
    )
    .map_err(db)?
    .query_map([i64::from(limit)], info_row)
    .map_err(db)?
    .collect::<Result<_, _>>()
    .map_err(db)
}

/// An artifact's bytes.
pub fn read(c: &Connection, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
    if info(c, sha256)?.is_none() {
        return Ok(None);
    }
    let chunks: Vec<Vec<u8>> = c
        .prepare_cached("SELECT data FROM artifact_chunks WHERE sha256 = ?1 ORDER BY seq")
        .map_err(db)?
        .query_map([sha256], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    Ok(Some(chunks.concat()))
}

/// Delete an artifact no job runs.
pub fn delete(c: &Connection, sha256: &str) -> StoreResult<bool> {
    let users: Vec<String> = c
        .prepare_cached(
            "SELECT name FROM jobs WHERE json_extract(spec, '$.artifact') = ?1 ORDER BY name",
        )
        .map_err(db)?
        .query_map([format!("sha256:{sha256}")], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    if !users.is_empty() {
        return Err(StoreError::Conflict(format!(
            "artifact sha256:{sha256} is run by job(s) {}: change or delete them first",
            users.join(", ")
        )));
    }
    c.prepare_cached("DELETE FROM artifact_chunks WHERE sha256 = ?1")
        .map_err(db)?
        .execute([sha256])
        .map_err(db)?;
    let n = c
        .prepare_cached("DELETE FROM artifacts WHERE sha256 = ?1")
        .map_err(db)?
        .execute([sha256])
        .map_err(db)?;
    Ok(n > 0)
}
