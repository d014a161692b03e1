//! The one table of routes: for every method and path of the router, who may call it, what the
//! audit log calls it, and what body it reads. The authentication layer looks every request up
//! here; a route that is missing is refused (fail closed), and the security suite walks this
//! table route by route.

use axum::http::Method;
use tempora_core::auth::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a credential (`/health`, `/ready`, Chronos's `/ping`).
    Public,
    /// A token whose role allows this one.
    Role(Role),
    /// `/metrics`: `viewer`, or anyone with `--metrics-public`.
    Metrics,
    /// Any working token, whatever its role (unknown routes and methods: the answer is a 404
    /// or 405 and reveals nothing).
    AnyToken,
    /// A web UI page or action: a session cookie ([`crate::ui::session`]) whose token has this
    /// role; a change also needs the session's CSRF token. Without a session a page redirects
    /// to the sign-in page.
    Ui(Role),
    /// The web UI's sign-in page and its static files: no credential.
    UiPublic,
}

/// The body a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// None (one sent is ignored).
    None,
    /// A JSON document: the request must say `Content-Type: application/json` (else 415), so
    /// that a web page cannot send one as a "simple" cross-origin request.
    Json,
    /// Raw bytes (a run's output from a worker).
    Raw,
    /// Raw bytes sent as `Content-Type: application/octet-stream` or a `multipart/form-data`
    /// form (else 415), larger than JSON bodies (an artifact upload). A cross-origin form is
    /// refused by the origin check like every change.
    Binary,
    /// An HTML form (`application/x-www-form-urlencoded`: the sign-in page).
    Form,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template as the router writes it (`{name}` for a segment).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The audit log's name for a successful call (None: not a change, or the worker protocol).
    pub action: Option<&'static str>,
    /// The body it reads.
    pub body: BodyKind,
}

const fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    action: Option<&'static str>,
    body: BodyKind,
) -> Route {
    Route {
        method,
        path,
        access,
        action,
        body,
    }
}

use Access::{Metrics, Public, UiPublic};
use BodyKind::{Json, None as NoBody, Raw};

const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const EDITOR: Access = Access::Role(Role::Editor);
const ADMIN: Access = Access::Role(Role::Admin);
const WORKER: Access = Access::Role(Role::Worker);
const UI_VIEWER: Access = Access::Ui(Role::Viewer);
const UI_OPERATOR: Access = Access::Ui(Role::Operator);
const UI_EDITOR: Access = Access::Ui(Role::Editor);

/// Native API, worker protocol and operational endpoints.
pub const ROUTES: &[Route] = &[
    r("GET", "/health", Public, None, NoBody),
    r("GET", "/ready", Public, None, NoBody),
    r("GET", "/ping", Public, None, NoBody),
    r("GET", "/metrics", Metrics, None, NoBody),
    r("GET", "/api/v1/openapi.json", Public, None, NoBody),
    r("GET", "/api/v1/chronos/openapi.json", Public, None, NoBody),
    r("GET", "/api/docs", Public, None, NoBody),
    r("GET", "/api/docs/", Public, None, NoBody),
    r("GET", "/api/docs/{file}", Public, None, NoBody),
    // The web UI (crate::ui).
    r("GET", "/", UI_VIEWER, None, NoBody),
    r("GET", "/ui/login", UiPublic, None, NoBody),
    r("POST", "/ui/login", UiPublic, None, BodyKind::Form),
    r("POST", "/ui/logout", UI_VIEWER, None, NoBody),
    r("GET", "/ui/assets/{file}", UiPublic, None, NoBody),
    r("GET", "/ui/jobs/rows", UI_VIEWER, None, NoBody),
    r("GET", "/ui/new", UI_EDITOR, None, NoBody),
    r(
        "POST",
        "/ui/new",
        UI_EDITOR,
        Some("job.create"),
        BodyKind::Form,
    ),
    r("GET", "/ui/jobs/{name}/edit", UI_EDITOR, None, NoBody),
    r(
        "POST",
        "/ui/jobs/{name}/edit",
        UI_EDITOR,
        Some("job.put"),
        BodyKind::Form,
    ),
    r(
        "POST",
        "/ui/schedules/preview",
        UI_VIEWER,
        None,
        BodyKind::Form,
    ),
    r("GET", "/ui/jobs/{name}", UI_VIEWER, None, NoBody),
    r(
        "POST",
        "/ui/jobs/{name}/run",
        UI_OPERATOR,
        Some("job.trigger"),
        BodyKind::Form,
    ),
    r(
        "POST",
        "/ui/jobs/{name}/pause",
        UI_OPERATOR,
        Some("job.pause"),
        NoBody,
    ),
    r(
        "POST",
        "/ui/jobs/{name}/resume",
        UI_OPERATOR,
        Some("job.resume"),
        NoBody,
    ),
    r(
        "DELETE",
        "/ui/jobs/{name}",
        UI_EDITOR,
        Some("job.delete"),
        NoBody,
    ),
    r("GET", "/ui/graph", UI_VIEWER, None, NoBody),
    r("GET", "/ui/cluster", UI_VIEWER, None, NoBody),
    r("GET", "/ui/audit", Access::Ui(Role::Admin), None, NoBody),
    r("GET", "/ui/runs/{id}", UI_VIEWER, None, NoBody),
    r("GET", "/ui/runs/{id}/events", UI_VIEWER, None, NoBody),
    r("GET", "/ui/runs/{id}/log", UI_VIEWER, None, NoBody),
    r(
        "POST",
        "/ui/runs/{id}/cancel",
        UI_OPERATOR,
        Some("run.cancel"),
        NoBody,
    ),
    r("GET", "/vars", VIEWER, None, NoBody),
    r("GET", "/vars.json", VIEWER, None, NoBody),
    r("GET", "/api/v1/jobs", VIEWER, None, NoBody),
    r("POST", "/api/v1/jobs", EDITOR, Some("job.create"), Json),
    r("POST", "/api/v1/apply", EDITOR, Some("jobs.apply"), Json),
    r("POST", "/api/v1/apply/plan", EDITOR, None, Json),
    r("GET", "/api/v1/jobs/{name}", VIEWER, None, NoBody),
    r("PUT", "/api/v1/jobs/{name}", EDITOR, Some("job.put"), Json),
    r(
        "DELETE",
        "/api/v1/jobs/{name}",
        EDITOR,
        Some("job.delete"),
        NoBody,
    ),
    r(
        "POST",
        "/api/v1/jobs/{name}/backfill",
        OPERATOR,
        Some("job.backfill"),
        Json,
    ),
    r(
        "POST",
        "/api/v1/jobs/{name}/pause",
        OPERATOR,
        Some("job.pause"),
        NoBody,
    ),
    r(
        "POST",
        "/api/v1/jobs/{name}/resume",
        OPERATOR,
        Some("job.resume"),
        NoBody,
    ),
    r("GET", "/api/v1/jobs/{name}/runs", VIEWER, None, NoBody),
    r(
        "POST",
        "/api/v1/jobs/{name}/runs",
        OPERATOR,
        Some("job.trigger"),
        Json,
    ),
    r("GET", "/api/v1/runs", VIEWER, None, NoBody),
    r("GET", "/api/v1/runs/{id}", VIEWER, None, NoBody),
    r("GET", "/api/v1/runs/{id}/log", VIEWER, None, NoBody),
    r(
        "POST",
        "/api/v1/runs/{id}/cancel",
        OPERATOR,
        Some("run.cancel"),
        NoBody,
    ),
    r("POST", "/api/v1/schedules/preview", VIEWER, None, Json),
    r("GET", "/api/v1/graph", VIEWER, None, NoBody),
    r("GET", "/api/v1/status", VIEWER, None, NoBody),
    r("GET", "/api/v1/cluster", VIEWER, None, NoBody),
    r("GET", "/api/v1/workers", VIEWER, None, NoBody),
    r("POST", "/api/v1/workers/register", WORKER, None, Json),
    r("POST", "/api/v1/workers/{id}/claim", WORKER, None, Json),
    r("POST", "/api/v1/workers/{id}/heartbeat", WORKER, None, Json),
    r(
        "POST",
        "/api/v1/workers/{id}/runs/{run}/log",
        WORKER,
        None,
        Raw,
    ),
    r("POST", "/api/v1/workers/{id}/finish", WORKER, None, Json),
    r(
        "GET",
        "/api/v1/workers/{id}/artifacts/{sha256}",
        WORKER,
        None,
        NoBody,
    ),
    r("GET", "/api/v1/artifacts", VIEWER, None, NoBody),
    r(
        "POST",
        "/api/v1/artifacts",
        EDITOR,
        Some("artifact.push"),
        BodyKind::Binary,
    ),
    r("GET", "/api/v1/artifacts/{sha256}", VIEWER, None, NoBody),
    r(
        "DELETE",
        "/api/v1/artifacts/{sha256}",
        EDITOR,
        Some("artifact.delete"),
        NoBody,
    ),
    r("GET", "/api/v1/tokens", ADMIN, None, NoBody),
    r("POST", "/api/v1/tokens", ADMIN, Some("token.create"), Json),
    r(
        "DELETE",
        "/api/v1/tokens/{token}",
        ADMIN,
        Some("token.revoke"),
        NoBody,
    ),
    r("GET", "/api/v1/audit", ADMIN, None, NoBody),
    r(
        "POST",
        "/api/v1/backup",
        ADMIN,
        Some("store.backup"),
        NoBody,
    ),
];

/// The Chronos API, below each of its prefixes ([`CHRONOS_PREFIXES`]).
pub const CHRONOS_ROUTES: &[Route] = &[
    r("GET", "/jobs", VIEWER, None, NoBody),
    r("GET", "/jobs/search", VIEWER, None, NoBody),
    r("GET", "/jobs/summary", VIEWER, None, NoBody),
    r("GET", "/job/{name}", VIEWER, None, NoBody),
    r(
        "PUT",
        "/job/{name}",
        OPERATOR,
        Some("chronos.job.run"),
        NoBody,
    ),
    r(
        "DELETE",
        "/job/{name}",
        EDITOR,
        Some("chronos.job.delete"),
        NoBody,
    ),
    r(
        "PUT",
        "/job/success/{name}",
        OPERATOR,
        Some("chronos.job.success"),
        NoBody,
    ),
    r("GET", "/job/stat/{name}", VIEWER, None, NoBody),
    r("POST", "/iso8601", EDITOR, Some("chronos.job.put"), Json),
    r("PUT", "/iso8601", EDITOR, Some("chronos.job.put"), Json),
    r("POST", "/dependency", EDITOR, Some("chronos.job.put"), Json),
    r("PUT", "/dependency", EDITOR, Some("chronos.job.put"), Json),
    r(
        "DELETE",
        "/task/kill/{name}",
        OPERATOR,
        Some("chronos.task.kill"),
        NoBody,
    ),
    r(
        "PUT",
        "/task/{task_id}",
        OPERATOR,
        Some("chronos.task.complete"),
        Json,
    ),
    r("GET", "/graph/dot", VIEWER, None, NoBody),
    r("GET", "/graph/csv", VIEWER, None, NoBody),
    r("GET", "/leader", VIEWER, None, NoBody),
    r("GET", "/stats/{percentile}", VIEWER, None, NoBody),
];

/// Where the Chronos API is mounted (Chronos 2.x and 3.x paths).
pub const CHRONOS_PREFIXES: [&str; 2] = ["/scheduler", "/v1/scheduler"];

/// The row for `method` on the route template `path` (as axum's `MatchedPath` gives it). A
/// HEAD request is a GET whose body is not sent: it needs what the GET needs.
pub fn lookup(method: &Method, path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let find =
        |table: &'static [Route], p: &str| table.iter().find(|r| r.path == p && r.method == method);
    if let Some(route) = find(ROUTES, path) {
        return Some(route);
    }
    CHRONOS_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .and_then(|rest| find(CHRONOS_ROUTES, rest))
}

/// Every route with its full path: the native table and the Chronos table under each prefix.
pub fn all_routes() -> Vec<(String, Route)> {
    let mut out: Vec<(String, Route)> = ROUTES.iter().map(|r| (r.path.to_owned(), *r)).collect();
    for prefix in CHRONOS_PREFIXES {
        for route in CHRONOS_ROUTES {
            out.push((format!("{prefix}{}", route.path), *route));
        }
    }
    out
}

/// The value of each `{param}` of `template` in the concrete `path` (segments as sent).
pub fn path_params<'a>(template: &str, path: &'a str) -> Vec<(&'static str, &'a str)> {
    let mut out = Vec::new();
    for (t, p) in template.split('/').zip(path.split('/')) {
        if let Some(name) = t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            // The known parameter names, so that the result can be 'static.
            let name = match name {
                "name" => "name",
                "id" => "id",
                "run" => "run",
                "token" => "token",
                "task_id" => "task_id",
                "percentile" => "percentile",
                _ => "param",
            };
            out.push((name, p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_cover_both_chronos_prefixes() {
        let get = Method::GET;
        assert_eq!(
            lookup(&get, "/scheduler/jobs").map(|r| r.access),
            Some(VIEWER)
        );
        assert_eq!(
            lookup(&Method::PUT, "/v1/scheduler/job/{name}").map(|r| r.access),
            Some(OPERATOR)
        );
        assert!(lookup(&Method::PATCH, "/api/v1/jobs/{name}").is_none());
        // HEAD is a GET.
        assert_eq!(
            lookup(&Method::HEAD, "/api/v1/tokens").map(|r| r.access),
            Some(ADMIN)
        );
        assert_eq!(
            lookup(&Method::HEAD, "/health").map(|r| r.access),
            Some(Public)
        );
        assert!(lookup(&get, "/nowhere").is_none());
        assert_eq!(all_routes().len(), ROUTES.len() + 2 * CHRONOS_ROUTES.len());
        // Each (method, path) once.
        let mut seen = std::collections::BTreeSet::new();
        for (path, r) in all_routes() {
            assert!(
                seen.insert((r.method, path.clone())),
                "{} {path} twice",
                r.method
            );
        }
    }

    #[test]
    fn path_params_follow_the_template() {
        assert_eq!(
            path_params(
                "/api/v1/workers/{id}/runs/{run}/log",
                "/api/v1/workers/w1/runs/7/log"
            ),
            [("id", "w1"), ("run", "7")]
        );
        assert!(path_params("/api/v1/jobs", "/api/v1/jobs").is_empty());
    }
}
