//! The UI's static files, compiled into the binary: htmx 2.0.11 and its SSE extension 2.2.4
//! (Zero-Clause BSD, `crates/http/assets/LICENSE-htmx`), tempora's style sheet and script.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `(name, content type, bytes)` of every file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx.min.js"),
    ),
    (
        "htmx-ext-sse.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/htmx-ext-sse.min.js"),
    ),
    (
        "tempora.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/tempora.css"),
    ),
    (
        "tempora.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/tempora.js"),
    ),
    (
        "LICENSE-htmx",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/LICENSE-htmx"),
    ),
];

/// `GET /ui/assets/{file}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
