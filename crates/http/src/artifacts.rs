//! `/api/v1/artifacts`: uploaded scripts and binaries, content-addressed by SHA-256. A job runs
//! one with `artifact: "sha256:<hex>"`; workers fetch it through
//! `/api/v1/workers/{id}/artifacts/{sha256}` and check its hash.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tempora_store::artifacts::ArtifactInfo;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// Default largest artifact (`--max-artifact-bytes`).
pub const DEFAULT_MAX_ARTIFACT: usize = 100 * 1024 * 1024;

/// Artifact bodies a node handles at once (uploads and downloads): each is held in memory, a
/// few times its size while it is hashed and stored; further ones wait their turn.
pub const AT_ONCE: usize = 2;

fn turns() -> &'static tokio::sync::Semaphore {
    static TURNS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| tokio::sync::Semaphore::new(AT_ONCE))
}

/// The artifacts listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactList {
    /// The artifacts, newest first (at most 1000).
    pub artifacts: Vec<ArtifactInfo>,
}

/// The digest of a path: 64 lowercase hex digits (a `sha256:` prefix is allowed).
pub(crate) fn digest(sha: &str) -> ApiResult<String> {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    match tempora_core::kind::artifact_digest(&format!("sha256:{hex}")) {
        Some(h) => Ok(h.to_owned()),
        None => {
            let shown: String = sha.chars().take(80).collect();
            Err(ApiError::field(
                "invalid_value",
                "sha256",
                format!("sha256: `{shown}` is not 64 lowercase hex digits"),
            ))
        }
    }
}

/// The file of a `multipart/form-data` upload: its first field.
async fn first_part(content_type: &str, body: Bytes) -> ApiResult<Bytes> {
    let bad = |m: String| ApiError::field("invalid_value", "body", m);
    let boundary = multer::parse_boundary(content_type).map_err(|e| bad(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    match parts.next_field().await.map_err(|e| bad(e.to_string()))? {
        Some(field) => field.bytes().await.map_err(|e| bad(e.to_string())),
        None => Err(bad("the form has no file".into())),
    }
}

/// `POST /api/v1/artifacts`: store the body (`application/octet-stream`), or the first file of
/// a `multipart/form-data` form (`curl -F file=@script.sh`), as an artifact.
#[utoipa::path(
    post,
    path = "/api/v1/artifacts",
    operation_id = "pushArtifact",
    tag = "artifacts",
    request_body(content = [u8], content_type = "application/octet-stream"),
    responses((status = 201, description = "Stored (or already there)", body = ArtifactInfo), (status = 400, description = "A form without a file", body = crate::error::ErrorBody))
)]
pub async fn push(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let _turn = turns().acquire().await;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the artifact is larger than {} bytes (--max-artifact-bytes)",
                    s.max_artifact_bytes
                ),
            )
        } else {
            ApiError::field("invalid_value", "body", e.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        first_part(content_type, body).await?
    } else {
        body
    };
    let sha = tempora_core::auth::sha256_hex(&body);
    let info = s
        .store
        .put_artifact(&sha, body.to_vec(), tempora_store::clock::now())
        .await?;
    tracing::info!(message = "artifact stored", sha256 = %info.sha256, size = info.size);
    let note = crate::auth::AuditNote {
        detail: Some(format!("sha256:{} ({} bytes)", info.sha256, info.size)),
        ..Default::default()
    };
    Ok(note.attach((StatusCode::CREATED, Json(info))))
}

/// `GET /api/v1/artifacts`: the artifacts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/artifacts",
    operation_id = "listArtifacts",
    tag = "artifacts",
    responses((status = 200, description = "The artifacts", body = ArtifactList))
)]
pub async fn list(State(s): State<Arc<AppState>>) -> ApiResult<Json<ArtifactList>> {
    Ok(Json(ArtifactList {
        artifacts: s.store.list_artifacts(1000).await?,
    }))
}

async fn bytes_of(s: &AppState, sha: &str) -> ApiResult<Response> {
    let hex = digest(sha)?;
    let _turn = turns().acquire().await;
    let data = s
        .store
        .read_artifact(&hex)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("artifact sha256:{hex} not found")))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

/// `GET /api/v1/artifacts/{sha256}`: an artifact's bytes.
#[utoipa::path(
    get,
    path = "/api/v1/artifacts/{sha256}",
    operation_id = "getArtifact",
    tag = "artifacts",
    params(("sha256" = String, Path, description = "The artifact's SHA-256 (64 hex digits)")),
    responses(
        (status = 200, description = "Its bytes", content_type = "application/octet-stream", body = [u8]),
        (status = 400, description = "Not a digest", body = crate::error::ErrorBody),
        (status = 404, description = "No such artifact", body = crate::error::ErrorBody)
    )
)]
pub async fn get(State(s): State<Arc<AppState>>, Path(sha): Path<String>) -> ApiResult<Response> {
    bytes_of(&s, &sha).await
}

/// `DELETE /api/v1/artifacts/{sha256}`: delete an artifact no job runs (409 naming those that
/// do).
#[utoipa::path(
    delete,
    path = "/api/v1/artifacts/{sha256}",
    operation_id = "deleteArtifact",
    tag = "artifacts",
    params(("sha256" = String, Path, description = "The artifact's SHA-256 (64 hex digits)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a digest", body = crate::error::ErrorBody),
        (status = 404, description = "No such artifact", body = crate::error::ErrorBody),
        (status = 409, description = "A job runs it", body = crate::error::ErrorBody)
    )
)]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Path(sha): Path<String>,
) -> ApiResult<Response> {
    let hex = digest(&sha)?;
    if s.store.delete_artifact(&hex).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "artifact sha256:{hex} not found"
        )))
    }
}

/// `GET /api/v1/workers/{id}/artifacts/{sha256}`: an artifact for a worker to run.
#[utoipa::path(
    get,
    path = "/api/v1/workers/{id}/artifacts/{sha256}",
    operation_id = "fetchArtifact",
    tag = "workers",
    params(("id" = String, Path, description = "The worker's id"), ("sha256" = String, Path, description = "The artifact's SHA-256")),
    responses(
        (status = 200, description = "Its bytes", content_type = "application/octet-stream", body = [u8]),
        (status = 400, description = "Not a digest", body = crate::error::ErrorBody),
        (status = 404, description = "No such artifact", body = crate::error::ErrorBody)
    )
)]
/// (403 when none of the runs the worker holds names the artifact.)
pub async fn fetch(
    State(s): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path((id, sha)): Path<(String, String)>,
) -> ApiResult<Response> {
    crate::workers::check_id(&id)?;
    crate::auth::check_worker_binding(&s, &caller, &id).await?;
    // Only for a run this worker holds: a worker reads the jobs it runs, nothing else.
    let reference = format!("sha256:{}", digest(&sha)?);
    let holds = s
        .store
        .worker_runs(&id)
        .await?
        .iter()
        .any(|c| c.spec.artifact.as_deref() == Some(reference.as_str()));
    if !holds {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("worker `{id}` runs no job that names {reference}"),
        ));
    }
    bytes_of(&s, &sha).await
}

/// A job's artifact must exist when the job is saved.
pub(crate) async fn check_job_artifact(
    s: &AppState,
    spec: &tempora_core::job::JobSpec,
) -> ApiResult<()> {
    let Some(reference) = &spec.artifact else {
        return Ok(());
    };
    let hex = reference.trim_start_matches("sha256:");
    if s.store.artifact_info(hex).await?.is_none() {
        return Err(ApiError::field(
            "invalid_value",
            "artifact",
            format!(
                "artifact {reference} is not stored: push it first (POST /api/v1/artifacts, `tempora artifact push FILE`)"
            ),
        ));
    }
    Ok(())
}
