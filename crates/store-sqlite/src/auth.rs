//! SQLite queries of access control: tokens, worker bindings and the audit log
//! (`tempora_store::auth`). Each function runs inside the caller's transaction.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tempora_store::{
    AuditEntry, AuditQuery, NewAudit, NewToken, StoreError, StoreResult, TokenRecord,
};

use crate::rows::{db, ots, ts, us};

const TOKEN_COLS: &str =
    "id, name, role, created_at, expires_at, last_used_at, revoked_at, created_by";

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let role: String = r.get(2)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role.parse().map_err(|e: tempora_core::auth::UnknownRole| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        created_at: ts(r.get(3)?),
        expires_at: ots(r.get(4)?),
        last_used_at: ots(r.get(5)?),
        revoked_at: ots(r.get(6)?),
        created_by: r.get(7)?,
    })
}

fn insert(c: &Connection, t: &NewToken) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO tokens (id, name, role, hash, created_at, expires_at, created_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        t.id,
        t.name,
        t.role.as_str(),
        t.hash,
        us(t.created_at),
        t.expires_at.map(us),
        t.created_by
    ])
}

fn by(c: &Connection, column: &str, value: &str) -> StoreResult<Option<TokenRecord>> {
    c.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM tokens WHERE {column} = ?1"
    ))
    .map_err(db)?
    .query_row([value], token_row)
    .optional()
    .map_err(db)
}

/// [`tempora_store::Store::create_token`].
pub fn create_token(c: &Connection, t: &NewToken) -> StoreResult<TokenRecord> {
    // An expired token gives its name up.
    c.prepare_cached(
        "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL \
         AND expires_at IS NOT NULL AND expires_at <= ?2",
    )
    .map_err(db)?
    .execute(params![t.name, us(t.created_at)])
    .map_err(db)?;
    if insert(c, t).map_err(db)? == 0 {
        return Err(StoreError::Conflict(format!(
            "a token named `{}` exists already (revoke it first)",
            t.name
        )));
    }
    by(c, "id", &t.id)?.ok_or_else(|| StoreError::Backend("token vanished".into()))
}

/// [`tempora_store::Store::bootstrap_token`].
pub fn bootstrap_token(c: &Connection, t: &NewToken) -> StoreResult<bool> {
    let any: bool = c
        .query_row("SELECT EXISTS (SELECT 1 FROM tokens)", [], |r| r.get(0))
        .map_err(db)?;
    Ok(!any && insert(c, t).map_err(db)? == 1)
}

/// [`tempora_store::Store::ensure_token`].
pub fn ensure_token(c: &Connection, t: &NewToken) -> StoreResult<bool> {
    if by(c, "hash", &t.hash)?.is_some() {
        return Ok(false);
    }
    c.prepare_cached(
        "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL AND hash <> ?3",
    )
    .map_err(db)?
    .execute(params![t.name, us(t.created_at), t.hash])
    .map_err(db)?;
    Ok(insert(c, t).map_err(db)? == 1)
}

/// [`tempora_store::Store::token_by_hash`].
pub fn token_by_hash(c: &Connection, hash: &str) -> StoreResult<Option<TokenRecord>> {
    by(c, "hash", hash)
}

/// [`tempora_store::Store::list_tokens`].
pub fn list_tokens(c: &Connection) -> StoreResult<Vec<TokenRecord>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at, id"
        ))
        .map_err(db)?;
    let rows = stmt.query_map([], token_row).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// [`tempora_store::Store::revoke_token`].
pub fn revoke_token(c: &Connection, id_or_name: &str, now: Timestamp) -> StoreResult<TokenRecord> {
    let id: Option<String> = c
        .prepare_cached(
            "SELECT id FROM tokens WHERE revoked_at IS NULL AND (id = ?1 OR name = ?1) \
             ORDER BY id = ?1 DESC LIMIT 1",
        )
        .map_err(db)?
        .query_row([id_or_name], |r| r.get(0))
        .optional()
        .map_err(db)?;
    let id = id.ok_or_else(|| StoreError::TokenNotFound(id_or_name.to_owned()))?;
    c.prepare_cached("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1")
        .map_err(db)?
        .execute(params![id, us(now)])
        .map_err(db)?;
    by(c, "id", &id)?.ok_or_else(|| StoreError::TokenNotFound(id_or_name.to_owned()))
}

/// [`tempora_store::Store::touch_token`].
pub fn touch_token(c: &Connection, id: &str, at: Timestamp) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE tokens SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE id = ?1",
    )
    .map_err(db)?
    .execute(params![id, us(at)])
    .map_err(db)?;
    Ok(())
}

/// [`tempora_store::Store::bind_worker`].
pub fn bind_worker(
    c: &Connection,
    worker: &str,
    token_id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    // Taken over only from a token that no longer works.
    let n = c
        .prepare_cached(
            "INSERT INTO worker_tokens (worker, token_id) VALUES (?1, ?2) \
             ON CONFLICT (worker) DO UPDATE SET token_id = excluded.token_id \
             WHERE worker_tokens.token_id = excluded.token_id OR NOT EXISTS ( \
                 SELECT 1 FROM tokens t WHERE t.id = worker_tokens.token_id \
                 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?3))",
        )
        .map_err(db)?
        .execute(params![worker, token_id, us(now)])
        .map_err(db)?;
    Ok(n == 1)
}

/// [`tempora_store::Store::worker_token`].
pub fn worker_token(c: &Connection, worker: &str) -> StoreResult<Option<String>> {
    c.prepare_cached("SELECT token_id FROM worker_tokens WHERE worker = ?1")
        .map_err(db)?
        .query_row([worker], |r| r.get(0))
        .optional()
        .map_err(db)
}

/// [`tempora_store::Store::append_audit`].
pub fn append_audit(c: &Connection, e: &NewAudit) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO audit (at, token_id, token_name, role, remote, action, target, job, \
         spec_hash, detail, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .map_err(db)?
    .execute(params![
        us(e.at),
        e.token_id,
        e.token_name,
        e.role.as_str(),
        e.remote,
        e.action,
        e.target,
        e.job,
        e.spec_hash,
        e.detail,
        e.status
    ])
    .map_err(db)?;
    Ok(())
}

/// [`tempora_store::Store::list_audit`].
pub fn list_audit(c: &Connection, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT id, at, token_id, token_name, role, remote, action, target, job, spec_hash, \
             detail, status FROM audit WHERE id < ?1 AND (?2 IS NULL OR job = ?2) \
             ORDER BY id DESC LIMIT ?3",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![q.before.unwrap_or(i64::MAX), q.job, q.limit], |r| {
            let role: String = r.get(4)?;
            Ok(AuditEntry {
                id: r.get(0)?,
                entry: NewAudit {
                    at: ts(r.get(1)?),
                    token_id: r.get(2)?,
                    token_name: r.get(3)?,
                    role: role.parse().map_err(|e: tempora_core::auth::UnknownRole| {
                        rusqlite::Error::FromSqlConversionFailure(
                            4,
                            rusqlite::types::Type::Text,
                            e.into(),
                        )
                    })?,
                    remote: r.get(5)?,
                    action: r.get(6)?,
                    target: r.get(7)?,
                    job: r.get(8)?,
                    spec_hash: r.get(9)?,
                    detail: r.get(10)?,
                    status: r.get(11)?,
                },
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// [`tempora_store::Store::prune_audit`].
pub fn prune_audit(c: &Connection, before: Timestamp, max_rows: u32) -> StoreResult<u64> {
    let n = c
        .prepare_cached(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 ORDER BY id LIMIT ?2)",
        )
        .map_err(db)?
        .execute(params![us(before), max_rows])
        .map_err(db)?;
    Ok(n as u64)
}
