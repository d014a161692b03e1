//! A typed client of the native API (`/api/v1`), over `reqwest` (feature `api`): one method per
//! operation, with the path built and its segments encoded here, and one error type that keeps
//! the server's error object. The CLI and the end-to-end tests use it; answers are the
//! server's JSON documents, which the callers print or inspect as they are.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::encode_segment;

/// Why a call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client could not be set up (a token a header cannot carry, a TLS setting).
    #[error("{0}")]
    Setup(String),
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach the server at {base}: {cause}")]
    Unreachable {
        /// The server's base URL.
        base: String,
        /// The error and its causes.
        cause: String,
    },
    /// The server refused: its status, its message, and its error object (`code`, `field`, …)
    /// when it sent one.
    #[error("{message} (HTTP {status})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's message (or its whole body when it sent no error object).
        message: String,
        /// The server's `error` object.
        detail: Option<Value>,
    },
    /// The server answered with something that is not the expected JSON.
    #[error("invalid response from the server: {0}")]
    Invalid(String),
}

impl ApiError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Result of an API call.
pub type ApiResult<T> = Result<T, ApiError>;

/// A client of one server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
}

impl ApiClient {
    /// A client of the server at `base` (`http://host:port`; a trailing `/` is dropped),
    /// sending `token` as a bearer credential. `builder` carries the caller's transport
    /// settings (timeouts, TLS roots, client certificate).
    pub fn new(
        base: &str,
        token: Option<&str>,
        builder: reqwest::ClientBuilder,
    ) -> ApiResult<ApiClient> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    ApiError::Setup("the token has characters a header cannot carry".into())
                })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = builder.default_headers(headers).build().map_err(|e| {
            ApiError::Setup(format!("cannot set up the HTTP client: {}", causes(&e)))
        })?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (which starts with `/`), for what has no method of its own.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Send a request; any answer (whatever its status) is returned, only a transport failure
    /// is an error.
    pub async fn exchange(&self, req: RequestBuilder) -> ApiResult<Response> {
        req.send().await.map_err(|e| ApiError::Unreachable {
            base: self.base.clone(),
            cause: causes(&e),
        })
    }

    /// Send a request; a status other than 2xx is [`ApiError::Refused`].
    pub async fn send(&self, req: RequestBuilder) -> ApiResult<Response> {
        let resp = self.exchange(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .map(|v| v["error"].clone())
            .filter(Value::is_object);
        let message = detail
            .as_ref()
            .and_then(|e| e["message"].as_str().map(str::to_owned))
            .unwrap_or(body);
        Err(ApiError::Refused {
            status,
            message,
            detail,
        })
    }

    /// Send a request and read its JSON answer (`null` for 204 No Content).
    pub async fn json(&self, req: RequestBuilder) -> ApiResult<Value> {
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        resp.json()
            .await
            .map_err(|e| ApiError::Invalid(e.to_string()))
    }

    /// `GET /api/v1/jobs` with these query parameters (`limit`, `after`, …).
    pub async fn list_jobs(&self, query: &[(&str, String)]) -> ApiResult<Value> {
        self.json(self.request(Method::GET, "/api/v1/jobs").query(query))
            .await
    }

    /// `GET /api/v1/jobs/{name}`.
    pub async fn get_job(&self, name: &str) -> ApiResult<Value> {
        self.json(self.request(Method::GET, &job_path(name))).await
    }

    /// `PUT /api/v1/jobs/{name}`: create or replace a job.
    pub async fn put_job(&self, name: &str, spec: &Value) -> ApiResult<Value> {
        self.json(self.request(Method::PUT, &job_path(name)).json(spec))
            .await
    }

    /// `DELETE /api/v1/jobs/{name}` (`force`: also when other jobs depend on it).
    pub async fn delete_job(&self, name: &str, force: bool) -> ApiResult<Value> {
        let mut req = self.request(Method::DELETE, &job_path(name));
        if force {
            req = req.query(&[("force", "true")]);
        }
        self.json(req).await
    }

    /// `POST /api/v1/jobs/{name}/runs`: run a job now, with `body`'s overrides (`env`,
    /// `arguments`, `force`); answers the new run.
    pub async fn trigger(&self, name: &str, body: &Value) -> ApiResult<Value> {
        let path = format!("{}/runs", job_path(name));
        self.json(self.request(Method::POST, &path).json(body))
            .await
    }

    /// `GET /api/v1/jobs/{name}/runs`: a job's runs, newest first.
    pub async fn job_runs(&self, name: &str, query: &[(&str, String)]) -> ApiResult<Value> {
        let path = format!("{}/runs", job_path(name));
        self.json(self.request(Method::GET, &path).query(query))
            .await
    }

    /// `POST /api/v1/jobs/{name}/backfill` (`from`, `to`, `max`, `dry_run`): runs for the past
    /// occurrences in `[from, to)`.
    pub async fn backfill(&self, name: &str, body: &Value) -> ApiResult<Value> {
        let path = format!("{}/backfill", job_path(name));
        self.json(self.request(Method::POST, &path).json(body))
            .await
    }

    /// `POST /api/v1/jobs/{name}/pause`.
    pub async fn pause(&self, name: &str) -> ApiResult<Value> {
        let path = format!("{}/pause", job_path(name));
        self.json(self.request(Method::POST, &path)).await
    }

    /// `POST /api/v1/jobs/{name}/resume`.
    pub async fn resume(&self, name: &str) -> ApiResult<Value> {
        let path = format!("{}/resume", job_path(name));
        self.json(self.request(Method::POST, &path)).await
    }

    /// `POST /api/v1/apply` (or `/apply/plan` when `plan`): a set of jobs, written whole.
    pub async fn apply(&self, body: &Value, plan: bool) -> ApiResult<Value> {
        let path = if plan {
            "/api/v1/apply/plan"
        } else {
            "/api/v1/apply"
        };
        self.json(self.request(Method::POST, path).json(body)).await
    }

    /// `GET /api/v1/runs`: runs across jobs (`job`, `state`, `trigger`, `since`, `until`,
    /// `limit`, `before`).
    pub async fn search_runs(&self, query: &[(&str, String)]) -> ApiResult<Value> {
        self.json(self.request(Method::GET, "/api/v1/runs").query(query))
            .await
    }

    /// `GET /api/v1/runs/{id}`.
    pub async fn get_run(&self, id: i64) -> ApiResult<Value> {
        self.json(self.request(Method::GET, &format!("/api/v1/runs/{id}")))
            .await
    }

    /// `POST /api/v1/runs/{id}/cancel`.
    pub async fn cancel_run(&self, id: i64) -> ApiResult<Value> {
        self.json(self.request(Method::POST, &format!("/api/v1/runs/{id}/cancel")))
            .await
    }

    /// `GET /api/v1/runs/{id}/log` (`follow`: the answer streams until the run ends); the
    /// response, to read as a stream.
    pub async fn run_log(&self, id: i64, follow: bool) -> ApiResult<Response> {
        let mut req = self.request(Method::GET, &format!("/api/v1/runs/{id}/log"));
        if follow {
            req = req.query(&[("follow", "true")]);
        }
        self.send(req).await
    }

    /// `POST /api/v1/tokens`: a new token (its secret is in this answer only).
    pub async fn create_token(&self, body: &Value) -> ApiResult<Value> {
        self.json(self.request(Method::POST, "/api/v1/tokens").json(body))
            .await
    }

    /// `GET /api/v1/tokens`.
    pub async fn list_tokens(&self) -> ApiResult<Value> {
        self.json(self.request(Method::GET, "/api/v1/tokens")).await
    }

    /// `DELETE /api/v1/tokens/{id or name}`.
    pub async fn revoke_token(&self, id_or_name: &str) -> ApiResult<Value> {
        let path = format!("/api/v1/tokens/{}", encode_segment(id_or_name));
        self.json(self.request(Method::DELETE, &path)).await
    }

    /// `GET /api/v1/audit` with these filters.
    pub async fn audit(&self, query: &[(&str, String)]) -> ApiResult<Value> {
        self.json(self.request(Method::GET, "/api/v1/audit").query(query))
            .await
    }

    /// `POST /api/v1/artifacts`: store `data` as an artifact; answers its `sha256` and `size`.
    pub async fn push_artifact(&self, data: Vec<u8>) -> ApiResult<Value> {
        self.json(
            self.request(Method::POST, "/api/v1/artifacts")
                .header("content-type", "application/octet-stream")
                .body(data),
        )
        .await
    }

    /// `GET /api/v1/artifacts`.
    pub async fn list_artifacts(&self) -> ApiResult<Value> {
        self.json(self.request(Method::GET, "/api/v1/artifacts"))
            .await
    }

    /// `DELETE /api/v1/artifacts/{sha256}`.
    pub async fn delete_artifact(&self, sha256: &str) -> ApiResult<Value> {
        let path = format!("/api/v1/artifacts/{}", encode_segment(sha256));
        self.json(self.request(Method::DELETE, &path)).await
    }

    /// `POST /api/v1/backup`: the response streams a consistent copy of the database.
    pub async fn backup(&self) -> ApiResult<Response> {
        self.send(self.request(Method::POST, "/api/v1/backup"))
            .await
    }
}

/// `/api/v1/jobs/{name}`, the name encoded.
pub fn job_path(name: &str) -> String {
    format!("/api/v1/jobs/{}", encode_segment(name))
}

/// An error and its causes, `: `-separated (reqwest's own text hides why a TLS handshake or a
/// connection failed: "error sending request").
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
