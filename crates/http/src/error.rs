//! API errors: `{"error": {"code", "message", "field"}}` with a 4xx status for bad input, never
//! a stack trace.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tempora_core::job::ValidationError;
use tempora_store::StoreError;
use utoipa::ToSchema;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Explanation in words.
    pub message: String,
    /// The request field at fault, if any.
    pub field: Option<String>,
}

impl ApiError {
    /// A query string that does not fit its handler (serde's message), naming the parameter
    /// when the message does: `limit: invalid digit …`, ``duplicate field `state` ``.
    pub fn query(e: &axum::extract::rejection::QueryRejection) -> ApiError {
        let text = e.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        let named = detail
            .split_once(": ")
            .map(|(f, _)| f)
            .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .or_else(|| {
                let (_, rest) = detail.split_once("field `")?;
                rest.split_once('`').map(|(f, _)| f)
            });
        let field = named.unwrap_or("query").to_owned();
        ApiError::field("invalid_query", &field, detail.to_owned())
    }

    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming a field.
    pub fn field(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }
}

impl From<ValidationError> for ApiError {
    fn from(v: ValidationError) -> Self {
        let status = if v.code == "unsupported" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        Self {
            status,
            code: v.code,
            message: format!("{}: {}", v.field, v.message),
            field: Some(v.field),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::JobNotFound(n) => Self::not_found(format!("job `{n}` not found")),
            StoreError::RunNotFound(id) => Self::not_found(format!("run {id} not found")),
            StoreError::TokenNotFound(t) => Self::not_found(format!("token `{t}` not found")),
            StoreError::JobExists(n) => Self {
                field: Some("name".to_owned()),
                ..Self::new(
                    StatusCode::CONFLICT,
                    "already_exists",
                    format!("job `{n}` already exists (use PUT /api/v1/jobs/{n} to replace it)"),
                )
            },
            StoreError::Invalid(v) => v.into(),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Fenced(m) => {
                tracing::warn!(message = "write fenced", error = %m);
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "leadership changed during the request; try again",
                )
            }
            StoreError::Unavailable(m) => {
                tracing::error!(message = "store unavailable", error = %m);
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again",
                )
            }
            StoreError::Backend(m) => {
                tracing::error!(message = "store error", error = %m);
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal store error (see the server log)",
                )
            }
        }
    }
}

/// The body of every error of the native API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_value`, `not_found`, `unauthorized`, …).
    pub code: &'static str,
    /// Explanation in words.
    pub message: String,
    /// The request field (body field, query or path parameter) at fault, if any.
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
