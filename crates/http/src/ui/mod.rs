//! The web UI: server-rendered HTML pages (askama templates in `crates/http/templates`, checked
//! at compile time) with htmx for partial updates and server-sent events for live output. No
//! build step and no asset from the internet: htmx and its SSE extension are compiled into the
//! binary ([`assets`]).
//!
//! Every node serves it at `/`. Signing in with a token gives a session cookie
//! ([`session`]); the access layer checks it for every page ([`admit`]), with the role the
//! route table asks for, and what a role may not do is not offered on the pages.
//!
//! Pages: the jobs overview ([`jobs`]), a job, a run with its output streamed live ([`runs`]),
//! the job form with a live schedule preview ([`edit`]), the dependency graph, the cluster and
//! the audit log ([`ops`]), sign-in ([`login`]).

pub mod assets;
pub mod edit;
pub mod jobs;
pub mod login;
pub mod ops;
pub mod runs;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use tempora_core::auth::Role;

use crate::AppState;
use crate::auth::Caller;
use session::{COOKIE, CSRF_HEADER, Session};

/// The UI's routes (their access is in [`crate::auth::table`]).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(jobs::overview))
        .route("/ui/login", get(login::page).post(login::sign_in))
        .route("/ui/logout", post(login::sign_out))
        .route("/ui/assets/{file}", get(assets::file))
        .route("/ui/jobs/rows", get(jobs::rows))
        .route("/ui/new", get(edit::new_page).post(edit::create))
        .route(
            "/ui/jobs/{name}/edit",
            get(edit::edit_page).post(edit::update),
        )
        .route("/ui/schedules/preview", post(edit::preview))
        .route("/ui/jobs/{name}", get(jobs::page).delete(jobs::delete))
        .route("/ui/jobs/{name}/run", post(jobs::run_now))
        .route("/ui/jobs/{name}/pause", post(jobs::pause))
        .route("/ui/jobs/{name}/resume", post(jobs::resume))
        .route("/ui/graph", get(ops::graph))
        .route("/ui/cluster", get(ops::cluster))
        .route("/ui/audit", get(ops::audit))
        .route("/ui/runs/{id}", get(runs::page))
        .route("/ui/runs/{id}/events", get(runs::events))
        .route("/ui/runs/{id}/log", get(runs::download))
        .route("/ui/runs/{id}/cancel", post(runs::cancel))
        .layer(axum::middleware::map_response(with_page_headers))
}

/// What every UI answer says to the browser: never inside a frame of another page
/// (clickjacking: a page of another port of the same host is the same *site*, so the session
/// cookie would go along), scripts and styles from this server only, nothing sniffed, no
/// referrer to other sites, pages not cached.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; \
                   object-src 'none'";

/// Add the UI's security headers ([`CSP`]) to an answer.
pub fn secure(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

async fn with_page_headers(mut res: Response) -> Response {
    secure(&mut res);
    res
}

/// What every page's frame shows: who is signed in, and the CSRF token its requests carry.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The token's name.
    pub user: String,
    /// Its role.
    pub role: Role,
    /// The session's CSRF token (sent by htmx as `X-CSRF-Token`).
    pub csrf: String,
}

impl Nav {
    /// The frame of a page for `caller` signed in with `session`.
    pub fn new(state: &AppState, caller: &Caller, session: &Session) -> Nav {
        Nav {
            user: caller.name.clone(),
            role: caller.role,
            csrf: session.csrf(&state.secret_key),
        }
    }

    /// The role allows triggering, cancelling, pausing and resuming.
    pub fn can_operate(&self) -> bool {
        self.role.allows(Role::Operator)
    }

    /// The role reads the audit log.
    pub fn can_audit(&self) -> bool {
        self.role.allows(Role::Admin)
    }

    /// The role allows changing and deleting jobs.
    pub fn can_edit(&self) -> bool {
        self.role.allows(Role::Editor)
    }
}

/// The access layer's check of a UI route: a valid session whose token is active and has
/// `role`; for a change, also the session's CSRF token and no foreign `Origin`. Without a
/// session, a page asked for is sent to sign in (and back after); an htmx request is told to
/// go there (`HX-Redirect`).
pub(crate) async fn admit(
    state: &AppState,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    role: Role,
) -> Result<(Caller, Session), Response> {
    let now = tempora_store::clock::now();
    let session =
        session::cookie(headers, COOKIE).and_then(|v| Session::decode(v, &state.secret_key, now));
    let Some(session) = session else {
        return Err(to_sign_in(method, target, headers));
    };
    let record = match state
        .auth_cache
        .token_by_hash(state, &session.token_hash)
        .await
    {
        Ok(Some(r)) if r.active(now) => r,
        Ok(_) => return Err(to_sign_in(method, target, headers)),
        Err(e) => return Err(crate::error::ApiError::from(e).into_response()),
    };
    if !record.role.allows(role) {
        return Err(message_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "This needs role {role}; you are signed in as {} (role {}).",
                record.name, record.role
            ),
        ));
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && !crate::auth::origin_allowed(&state.auth, headers, origin)
        {
            return Err(message_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "A change sent from a page of another site is refused.",
            ));
        }
        let csrf = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !session.csrf_ok(&state.secret_key, csrf) {
            return Err(message_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "This change did not come from a page of this server (its CSRF token is missing or wrong). Reload the page and try again.",
            ));
        }
    }
    Ok((
        Caller {
            token_id: record.id,
            name: record.name,
            role: record.role,
        },
        session,
    ))
}

/// Where a request without a valid session goes: the sign-in page, with the page asked for.
fn to_sign_in(method: &Method, target: &str, headers: &HeaderMap) -> Response {
    let htmx = headers.contains_key("hx-request");
    // An htmx request comes from a page: come back to that page, not to the fragment.
    let back = if htmx {
        headers
            .get("hx-current-url")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| u.split_once("://").map(|(_, rest)| rest))
            .and_then(|rest| rest.find('/').map(|i| rest[i..].to_owned()))
            .unwrap_or_else(|| "/".to_owned())
    } else {
        target.to_owned()
    };
    let login = format!("/ui/login?next={}", tempora_client::encode_segment(&back));
    if htmx || !matches!(*method, Method::GET | Method::HEAD) {
        let mut res = message_page(
            StatusCode::UNAUTHORIZED,
            "Signed out",
            "Your session has ended: sign in again.",
        );
        if let Ok(v) = HeaderValue::from_str(&login) {
            res.headers_mut().insert("hx-redirect", v);
        }
        return res;
    }
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, login)]).into_response();
    secure(&mut res);
    res
}

/// A message for the page's message area (an htmx answer): `text`, escaped, as an alert.
pub fn notice(status: StatusCode, text: &str) -> Response {
    let html = format!(
        "<p class=\"notice error\" role=\"alert\">{}</p>",
        runs::html_escape(text)
    );
    (status, Html(html)).into_response()
}

/// A page that only says something (refusals, errors).
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let page = templates::Message {
        title: title.to_owned(),
        text: text.to_owned(),
    };
    let mut res = (status, render(&page)).into_response();
    secure(&mut res);
    res
}

/// A template rendered to an HTML answer (an error page if it cannot be, which a compiled
/// template with its fields set only fails on out of memory).
pub fn render<T: askama::Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(message = "cannot render a page", error = %e);
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render the page").into_response()
        }
    }
}

/// `t` in `tz` for people: `2026-12-07 14:30:00 CET`.
pub fn local_time(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// How far `t` is from `now`, in words: `in 3 min`, `2 h ago`, `now`.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let secs = t.as_second() - now.as_second();
    let (n, future) = (secs.unsigned_abs(), secs > 0);
    let words = match n {
        0..=4 => return "now".to_owned(),
        5..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} days", n / 86_400),
    };
    if future {
        format!("in {words}")
    } else {
        format!("{words} ago")
    }
}

/// The templates shared by every page.
pub mod templates {
    use askama::Template;

    /// A page that only says something.
    #[derive(Template)]
    #[template(path = "message.html")]
    pub struct Message {
        /// Its title.
        pub title: String,
        /// What it says.
        pub text: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        assert_eq!(relative(at(0), now), "now");
        assert_eq!(relative(at(180), now), "in 3 min");
        assert_eq!(relative(at(-7200), now), "2 h ago");
        assert_eq!(relative(at(30), now), "in 30 s");
        assert_eq!(relative(at(3 * 86_400), now), "in 3 days");
    }
}
