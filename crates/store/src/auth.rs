//! Records of access control kept by every backend: API tokens (stored as hashes only), the
//! binding of worker ids to the token that registered them, and the audit log of changes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tempora_core::auth::Role;

/// A token to store. Its secret text is not here: only [`NewToken::hash`]
/// (`tempora_core::auth::token_hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Public id (`tok_…`), used to revoke and shown in the audit log.
    pub id: String,
    /// Unique among active tokens.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// Name of the token that created it (None: made at bootstrap).
    pub created_by: Option<String>,
}

/// A stored token as listed (never with its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// When it was last used (recorded at most about once a minute per node).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    /// Name of the token that created it.
    pub created_by: Option<String>,
}

impl TokenRecord {
    /// Whether the token works at `now`: not revoked and not expired.
    pub fn active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A change to record in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAudit {
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Id of the token used.
    pub token_id: String,
    /// Its name.
    pub token_name: String,
    /// Its role.
    pub role: Role,
    /// The client's address as this node saw it.
    pub remote: String,
    /// What was done (`job.put`, `run.cancel`, `token.create`, …).
    pub action: String,
    /// The request path it was done through (names the job, run or token).
    pub target: String,
    /// The job concerned, if one is.
    pub job: Option<String>,
    /// SHA-256 of the job's new spec (its canonical JSON), for writes of a job.
    pub spec_hash: Option<String>,
    /// What else identifies the change (a token's name and role; a trigger's overridden
    /// variable names). Never a secret value.
    pub detail: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Increasing id (newest is largest).
    pub id: i64,
    /// The change.
    #[serde(flatten)]
    pub entry: NewAudit,
}

/// Which audit entries to read: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At most this many.
    pub limit: u32,
    /// Only entries with an id below this one (the next page).
    pub before: Option<i64>,
    /// Only entries about this job.
    pub job: Option<String>,
}
