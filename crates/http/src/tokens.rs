//! Token management under `/api/v1/tokens` and the audit log at `/api/v1/audit` (admin only,
//! see [`crate::auth::table`]). A token's secret is answered once, at creation; the store keeps
//! only its hash.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tempora_core::auth::{Role, token_hash, validate_token_name};
use tempora_store::{AuditEntry, TokenRecord};
use tempora_store::{AuditQuery, NewToken};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::bootstrap::{new_id, new_secret};
use crate::auth::{AuditNote, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// Most tokens that may be active at once.
pub const MAX_ACTIVE_TOKENS: usize = 10_000;
/// Longest lifetime a token may be given: 100 years of 365.25 days.
const MAX_LIFETIME_DAYS: i64 = 36_525;

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Unique among active tokens.
    pub name: String,
    /// `viewer`, `operator`, `editor`, `admin` or `worker`.
    pub role: String,
    /// Lifetime (`90d`, `12h`, `P30D`) or an RFC 3339 instant; none: until revoked.
    #[serde(default)]
    pub expires: Option<String>,
}

fn expiry(text: &str, now: Timestamp) -> ApiResult<Timestamp> {
    let bad = |m: String| ApiError::field("invalid_value", "expires", m);
    let too_far = || bad("expires: at most 100 years from now".into());
    // An instant has a date (`2027-01-01T…`); anything else is read as a lifetime.
    let looks_like_instant = text.len() > 10 && text.as_bytes().get(4) == Some(&b'-');
    let at = if looks_like_instant {
        text.parse::<Timestamp>().map_err(|e| {
            bad(format!(
                "expires: `{text}` is not an RFC 3339 instant between the years 0 and 9999: {e}"
            ))
        })?
    } else {
        let d = tempora_core::duration::parse_duration(text).map_err(|e| {
            bad(format!(
                "expires: `{text}` is neither a lifetime (90d, 12h, P30D) nor an RFC 3339 instant: {e}"
            ))
        })?;
        if d.as_secs() > MAX_LIFETIME_DAYS as u64 * 86_400 {
            return Err(too_far());
        }
        let d = SignedDuration::try_from(d).map_err(|_| too_far())?;
        now.checked_add(d).map_err(|_| too_far())?
    };
    if at <= now {
        return Err(bad("expires: the token would be expired already".into()));
    }
    if at.duration_since(now).as_hours() > MAX_LIFETIME_DAYS * 24 {
        return Err(too_far());
    }
    Ok(at)
}

/// A token as listed: never its secret or hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// The token.
    #[serde(flatten)]
    pub record: TokenRecord,
    /// Neither revoked nor expired.
    pub active: bool,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Every token, revoked ones too.
    pub tokens: Vec<TokenView>,
}

/// A token just made: the only answer that holds its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenView {
    /// The token.
    #[serde(flatten)]
    pub record: TokenRecord,
    /// The secret (`tempora_…`), shown this once.
    pub token: String,
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// The `before` of the next page (null: this is the last).
    pub next_before: Option<i64>,
}

/// `GET /api/v1/tokens`: every token (revoked ones too), never a secret or a hash.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "listTokens",
    tag = "tokens",
    responses((status = 200, description = "Every token (never a secret)", body = TokenList))
)]
pub async fn list(State(state): State<Arc<AppState>>) -> ApiResult<Json<TokenList>> {
    let now = tempora_store::clock::now();
    let tokens = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(|record| TokenView {
            active: record.active(now),
            record,
        })
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// `POST /api/v1/tokens`: make a token; the answer holds its secret, shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "createToken",
    tag = "tokens",
    request_body = CreateToken,
    responses((status = 201, description = "The token, with its secret (shown this once)", body = NewTokenView), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody), (status = 409, description = "An active token has that name, or too many are active", body = crate::error::ErrorBody))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateToken>,
) -> ApiResult<Response> {
    validate_token_name(&req.name).map_err(|m| ApiError::field("invalid_value", "name", m))?;
    let role: Role = req
        .role
        .parse()
        .map_err(|e: tempora_core::auth::UnknownRole| {
            ApiError::field("invalid_value", "role", e.to_string())
        })?;
    let now = tempora_store::clock::now();
    let expires_at = req.expires.as_deref().map(|e| expiry(e, now)).transpose()?;
    let active = state
        .store
        .list_tokens()
        .await?
        .iter()
        .filter(|t| t.active(now))
        .count();
    if active >= MAX_ACTIVE_TOKENS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_tokens",
            format!("{MAX_ACTIVE_TOKENS} tokens are active; revoke some first"),
        ));
    }
    let secret = new_secret().map_err(internal)?;
    let record = state
        .store
        .create_token(NewToken {
            id: new_id().map_err(internal)?,
            name: req.name,
            role,
            hash: token_hash(&secret),
            created_at: now,
            expires_at,
            created_by: Some(caller.name),
        })
        .await
        .map_err(|e| match e {
            tempora_store::StoreError::Conflict(m) => ApiError {
                field: Some("name".into()),
                ..ApiError::new(StatusCode::CONFLICT, "already_exists", m)
            },
            other => other.into(),
        })?;
    state.auth_cache.tokens_changed();
    tracing::info!(message = "token created", id = %record.id, name = %record.name, role = %record.role);
    let note = AuditNote {
        detail: Some(format!(
            "token `{}` ({}), role {}{}",
            record.name,
            record.id,
            record.role,
            record
                .expires_at
                .map(|e| format!(", expires {e}"))
                .unwrap_or_default()
        )),
        ..AuditNote::default()
    };
    let body = NewTokenView {
        record,
        token: secret,
    };
    Ok(note.attach((StatusCode::CREATED, Json(body))))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(message = "cannot make a token", error = %e);
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "cannot make a token (see the server log)",
    )
}

/// `DELETE /api/v1/tokens/{token}` (id or name): revoke; it stops working at once everywhere.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{token}",
    operation_id = "revokeToken",
    tag = "tokens",
    params(("token" = String, Path, description = "The token's id or name")),
    responses((status = 200, description = "Revoked", body = TokenRecord), (status = 404, description = "Token not found", body = crate::error::ErrorBody))
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> ApiResult<Response> {
    let record = state
        .store
        .revoke_token(&key, tempora_store::clock::now())
        .await;
    // Emptied whatever the outcome: nothing stale survives a revocation attempt.
    state.auth_cache.tokens_changed();
    let record = record?;
    tracing::info!(message = "token revoked", id = %record.id, name = %record.name);
    let note = AuditNote {
        detail: Some(format!(
            "token `{}` ({}), role {}",
            record.name, record.id, record.role
        )),
        ..AuditNote::default()
    };
    Ok(note.attach(Json(record)))
}

/// Query of `GET /api/v1/audit` as sent (each parameter read and checked by name).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// At most this many (default 100, at most 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Entries older than this id (the previous page's `next_before`).
    #[param(value_type = Option<i64>)]
    pub before: Option<String>,
    /// Only this job's entries.
    pub job: Option<String>,
}

fn number<T: std::str::FromStr>(field: &'static str, v: Option<&str>) -> ApiResult<Option<T>> {
    v.map(|s| {
        s.trim().parse::<T>().map_err(|_| {
            ApiError::field(
                "invalid_query",
                field,
                format!("{field} must be a whole number, not `{s}`"),
            )
        })
    })
    .transpose()
}

/// `GET /api/v1/audit`: the changes, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "listAudit",
    tag = "tokens",
    params(AuditParams),
    responses((status = 200, description = "One page of the audit log, newest first", body = AuditPage), (status = 400, description = "Invalid input; `error.field` names the field or parameter", body = crate::error::ErrorBody))
)]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditPage>> {
    let Query(q) = q.map_err(|e| ApiError::query(&e))?;
    let limit: u32 = number("limit", q.limit.as_deref())?.unwrap_or(100);
    let before: Option<i64> = number("before", q.before.as_deref())?;
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field(
            "invalid_query",
            "limit",
            "limit must be 1 to 1000",
        ));
    }
    if q.job.as_ref().is_some_and(|j| j.len() > 200) {
        return Err(ApiError::field("invalid_query", "job", "job name too long"));
    }
    // Read your writes: the entries of changes this node just answered are written first.
    state
        .auth_cache
        .audit_written(std::time::Duration::from_secs(2))
        .await;
    let entries = state
        .store
        .list_audit(AuditQuery {
            limit,
            before,
            job: q.job,
        })
        .await?;
    let next_before = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
