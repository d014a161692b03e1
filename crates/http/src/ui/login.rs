//! Signing in and out of the web UI.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use tempora_core::auth::token_hash;

use super::render;
use super::session::{self, Session};
use crate::AppState;

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Where to go after signing in.
    pub next: String,
}

/// Query of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// The page asked for before signing in.
    pub next: Option<String>,
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// A token.
    pub token: String,
    /// Where to go after signing in.
    #[serde(default)]
    pub next: String,
}

/// Where to go after signing in: a path of this server, never another site (`//evil`,
/// `/\evil`, `https://…` are refused for `/`).
fn local_target(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && next.len() <= 2048;
    if ok { next.to_owned() } else { "/".to_owned() }
}

/// `GET /ui/login`.
pub async fn page(
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let next = q.ok().and_then(|Query(q)| q.next).unwrap_or_default();
    render(&LoginPage {
        error: None,
        next: local_target(&next),
    })
}

/// `POST /ui/login`: a valid token gets a session cookie and goes on to the page asked for.
pub async fn sign_in(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refuse = |status: StatusCode, error: &str, next: &str| {
        (
            status,
            render(&LoginPage {
                error: Some(error.to_owned()),
                next: local_target(next),
            }),
        )
            .into_response()
    };
    let Ok(Form(form)) = form else {
        return refuse(StatusCode::BAD_REQUEST, "Send the form with a token.", "/");
    };
    // A sign-in from a page of another site (login CSRF) is refused.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !crate::auth::origin_allowed(&s.auth, &headers, origin)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "Sign in from this server's own page.",
            &form.next,
        );
    }
    let token = form.token.trim();
    if token.is_empty() || token.len() > 1024 {
        return refuse(StatusCode::BAD_REQUEST, "Paste a token.", &form.next);
    }
    let now = tempora_store::clock::now();
    let hash = token_hash(token);
    let record = match s.auth_cache.token_by_hash(&s, &hash).await {
        Ok(Some(r)) if r.active(now) => r,
        Ok(_) => {
            tracing::info!(message = "web sign-in refused: unknown, expired or revoked token");
            return refuse(
                StatusCode::UNAUTHORIZED,
                "This token is unknown, expired or revoked.",
                &form.next,
            );
        }
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    };
    let ttl = jiff::SignedDuration::try_from(s.auth.ui_session_ttl).unwrap_or_default();
    let mut expires = now.checked_add(ttl).unwrap_or(now);
    if let Some(t) = record.expires_at {
        expires = expires.min(t);
    }
    let session = match Session::new(hash, expires) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(message = "cannot make a session", error = %e);
            return super::message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                "Cannot make a session (see the server log).",
            );
        }
    };
    tracing::info!(message = "web sign-in", token = %record.name, role = %record.role);
    let cookie = session::set_cookie(&session.encode(&s.secret_key), expires, now, s.auth.tls);
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, local_target(&form.next)),
        ],
    )
        .into_response()
}

/// `POST /ui/logout`: the cookie is removed and the browser sent to the sign-in page.
pub async fn sign_out(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<crate::auth::Caller>,
) -> Response {
    tracing::info!(message = "web sign-out", token = %caller.name);
    (
        [
            (header::SET_COOKIE, session::clear_cookie(s.auth.tls)),
            (
                header::HeaderName::from_static("hx-redirect"),
                "/ui/login".to_owned(),
            ),
        ],
        "",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn only_local_pages_are_targets() {
        assert_eq!(local_target("/ui/jobs/a?x=1"), "/ui/jobs/a?x=1");
        for bad in [
            "//evil.example",
            "/\\evil",
            "https://evil",
            "",
            "x",
            "/a\nb",
        ] {
            assert_eq!(local_target(bad), "/", "{bad:?}");
        }
    }
}
