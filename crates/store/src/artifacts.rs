//! Artifacts: uploaded scripts and binaries, kept content-addressed by their SHA-256 in the
//! store itself (SQLite: 1 MiB chunk rows; PostgreSQL: a large object each), so every node and
//! worker of a cluster reads the same bytes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Bytes per stored chunk (SQLite) or per large-object read and write (PostgreSQL).
pub const CHUNK: usize = 1024 * 1024;

/// An artifact as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactInfo {
    /// Its SHA-256, lowercase hex (a job names it `sha256:<this>`).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was first uploaded.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}
