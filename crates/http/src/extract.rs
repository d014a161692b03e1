//! Strict JSON bodies: a size bound and errors that name the field. The content type is checked
//! before, by the access layer (`crate::auth`), for every route its table says reads JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON body deserialized strictly. An empty body deserializes from `{}`.
pub struct JsonBody<T>(pub T);

/// Parse JSON text into `T`, mapping serde errors to a 400 that names the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    // serde would also read a struct from a JSON array; bodies are objects.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::field(
            "invalid_json",
            "body",
            "the body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or_default();
            // The path already ends with the unknown field's name.
            let field = if path == "." || path.is_empty() {
                name.to_owned()
            } else {
                path
            };
            return ApiError::field("unknown_field", field, msg);
        }
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::field("invalid_json", "body", format!("malformed JSON: {msg}"));
        }
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::field("invalid_value", field.clone(), format!("{field}: {msg}"))
    })
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text())
            }
        })?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}
