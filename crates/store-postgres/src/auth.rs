//! PostgreSQL queries of access control: tokens, worker bindings and the audit log
//! (`tempora_store::auth`). Each function runs inside the caller's transaction; the statements
//! mirror the SQLite backend's.

use jiff::Timestamp;
use tempora_store::{AuditEntry, AuditQuery, NewAudit, NewToken, StoreError, TokenRecord};
use tokio_postgres::Row;

use crate::pool::{Conn, TxResult};
use crate::rows::{corrupt, ots, ts, us};

const TOKEN_COLS: &str =
    "id, name, role, created_at, expires_at, last_used_at, revoked_at, created_by";

fn token_row(r: &Row) -> TxResult<TokenRecord> {
    let role: String = r.try_get(2)?;
    Ok(TokenRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        role: role.parse().map_err(corrupt)?,
        created_at: ts(r.try_get(3)?),
        expires_at: ots(r.try_get(4)?),
        last_used_at: ots(r.try_get(5)?),
        revoked_at: ots(r.try_get(6)?),
        created_by: r.try_get(7)?,
    })
}

/// Insert `t` with `sql` (an `INSERT … ON CONFLICT DO NOTHING` of the token's seven columns);
/// returns the rows written.
async fn insert_with(c: &Conn, sql: &str, t: &NewToken) -> TxResult<u64> {
    c.execute(
        sql,
        &[
            &t.id,
            &t.name,
            &t.role.as_str(),
            &t.hash,
            &us(t.created_at),
            &t.expires_at.map(us),
            &t.created_by,
        ],
    )
    .await
}

async fn insert(c: &Conn, t: &NewToken) -> TxResult<u64> {
    insert_with(
        c,
        "INSERT INTO tokens (id, name, role, hash, created_at, expires_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        t,
    )
    .await
}

async fn by(c: &Conn, column: &str, value: &str) -> TxResult<Option<TokenRecord>> {
    let sql = format!("SELECT {TOKEN_COLS} FROM tokens WHERE {column} = $1");
    c.query_opt(&sql, &[&value])
        .await?
        .as_ref()
        .map(token_row)
        .transpose()
}

/// [`tempora_store::Store::create_token`].
pub async fn create_token(c: &Conn, t: &NewToken) -> TxResult<TokenRecord> {
    // An expired token gives its name up.
    c.execute(
        "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL \
         AND expires_at IS NOT NULL AND expires_at <= $2",
        &[&t.name, &us(t.created_at)],
    )
    .await?;
    if insert(c, t).await? == 0 {
        return Err(StoreError::Conflict(format!(
            "a token named `{}` exists already (revoke it first)",
            t.name
        ))
        .into());
    }
    Ok(by(c, "id", &t.id)
        .await?
        .ok_or_else(|| corrupt("token vanished"))?)
}

/// [`tempora_store::Store::bootstrap_token`]. Two nodes bootstrapping at once both insert the
/// same name: the second waits for the first and then does nothing.
pub async fn bootstrap_token(c: &Conn, t: &NewToken) -> TxResult<bool> {
    let n = insert_with(
        c,
        "INSERT INTO tokens (id, name, role, hash, created_at, expires_at, created_by) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM tokens) \
         ON CONFLICT DO NOTHING",
        t,
    )
    .await?;
    Ok(n == 1)
}

/// [`tempora_store::Store::ensure_token`].
pub async fn ensure_token(c: &Conn, t: &NewToken) -> TxResult<bool> {
    if by(c, "hash", &t.hash).await?.is_some() {
        return Ok(false);
    }
    // Never the same token: nodes starting together with one file each run this at once, and
    // under READ COMMITTED one node's UPDATE sees the row another node has just inserted.
    c.execute(
        "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL AND hash <> $3",
        &[&t.name, &us(t.created_at), &t.hash],
    )
    .await?;
    Ok(insert(c, t).await? == 1)
}

/// [`tempora_store::Store::token_by_hash`].
pub async fn token_by_hash(c: &Conn, hash: &str) -> TxResult<Option<TokenRecord>> {
    by(c, "hash", hash).await
}

/// [`tempora_store::Store::list_tokens`].
pub async fn list_tokens(c: &Conn) -> TxResult<Vec<TokenRecord>> {
    let sql = format!("SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at, id");
    c.query(&sql, &[]).await?.iter().map(token_row).collect()
}

/// [`tempora_store::Store::revoke_token`].
pub async fn revoke_token(c: &Conn, id_or_name: &str, now: Timestamp) -> TxResult<TokenRecord> {
    let row = c
        .query_opt(
            "UPDATE tokens SET revoked_at = $2 WHERE id = (SELECT id FROM tokens \
             WHERE revoked_at IS NULL AND (id = $1 OR name = $1) ORDER BY id = $1 DESC LIMIT 1) \
             RETURNING id, name, role, created_at, expires_at, last_used_at, revoked_at, created_by",
            &[&id_or_name, &us(now)],
        )
        .await?;
    match row {
        Some(r) => token_row(&r),
        None => Err(StoreError::TokenNotFound(id_or_name.to_owned()).into()),
    }
}

/// [`tempora_store::Store::touch_token`].
pub async fn touch_token(c: &Conn, id: &str, at: Timestamp) -> TxResult<()> {
    c.execute(
        "UPDATE tokens SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $2) WHERE id = $1",
        &[&id, &us(at)],
    )
    .await?;
    Ok(())
}

/// [`tempora_store::Store::bind_worker`].
pub async fn bind_worker(c: &Conn, worker: &str, token_id: &str, now: Timestamp) -> TxResult<bool> {
    // Taken over only from a token that no longer works.
    let n = c
        .execute(
            "INSERT INTO worker_tokens (worker, token_id) VALUES ($1, $2) \
             ON CONFLICT (worker) DO UPDATE SET token_id = excluded.token_id \
             WHERE worker_tokens.token_id = excluded.token_id OR NOT EXISTS ( \
                 SELECT 1 FROM tokens t WHERE t.id = worker_tokens.token_id \
                 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $3))",
            &[&worker, &token_id, &us(now)],
        )
        .await?;
    Ok(n == 1)
}

/// [`tempora_store::Store::worker_token`].
pub async fn worker_token(c: &Conn, worker: &str) -> TxResult<Option<String>> {
    Ok(c.query_opt(
        "SELECT token_id FROM worker_tokens WHERE worker = $1",
        &[&worker],
    )
    .await?
    .map(|r| r.try_get(0))
    .transpose()?)
}

/// [`tempora_store::Store::append_audit`].
pub async fn append_audit(c: &Conn, e: &NewAudit) -> TxResult<()> {
    c.execute(
        "INSERT INTO audit (at, token_id, token_name, role, remote, action, target, job, \
         spec_hash, detail, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &us(e.at),
            &e.token_id,
            &e.token_name,
            &e.role.as_str(),
            &e.remote,
            &e.action,
            &e.target,
            &e.job,
            &e.spec_hash,
            &e.detail,
            &i32::from(e.status),
        ],
    )
    .await?;
    Ok(())
}

/// [`tempora_store::Store::list_audit`].
pub async fn list_audit(c: &Conn, q: &AuditQuery) -> TxResult<Vec<AuditEntry>> {
    let rows = c
        .query(
            "SELECT id, at, token_id, token_name, role, remote, action, target, job, spec_hash, \
             detail, status FROM audit WHERE id < $1 AND ($2::text IS NULL OR job = $2) \
             ORDER BY id DESC LIMIT $3",
            &[&q.before.unwrap_or(i64::MAX), &q.job, &i64::from(q.limit)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(4)?;
            let status: i32 = r.try_get(11)?;
            Ok(AuditEntry {
                id: r.try_get(0)?,
                entry: NewAudit {
                    at: ts(r.try_get(1)?),
                    token_id: r.try_get(2)?,
                    token_name: r.try_get(3)?,
                    role: role.parse().map_err(corrupt)?,
                    remote: r.try_get(5)?,
                    action: r.try_get(6)?,
                    target: r.try_get(7)?,
                    job: r.try_get(8)?,
                    spec_hash: r.try_get(9)?,
                    detail: r.try_get(10)?,
                    status: u16::try_from(status).unwrap_or(0),
                },
            })
        })
        .collect()
}

/// [`tempora_store::Store::prune_audit`].
pub async fn prune_audit(c: &Conn, before: Timestamp, max_rows: u32) -> TxResult<u64> {
    c.execute(
        "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY id LIMIT $2)",
        &[&us(before), &i64::from(max_rows)],
    )
    .await
}
