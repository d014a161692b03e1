//! Access control of every request: the credential, the role [`table`] asks for, browser
//! safety (content type, origin, host, CORS) and the audit log of changes.
//!
//! A request passes [`authenticate`] after routing, so it knows the route's template:
//! 1. `--allowed-host`, if set, must name the `Host` header (against DNS rebinding);
//! 2. public routes (`/health`, `/ready`, `/ping`) pass; `/metrics` too with `--metrics-public`;
//! 3. the token comes from `Authorization: Bearer <token>` or as the password of HTTP Basic
//!    (any user name); no credential is a 401, a token that is unknown, expired or revoked is a
//!    401, a role below the route's is a 403 naming the role needed — loopback included;
//! 4. a state-changing request from a browser page of another origin (its `Origin` header) is
//!    a 403, and a JSON route's body must say `Content-Type: application/json` (415);
//! 5. a successful change is appended to the audit log with who, from where and what.
//!
//! Tokens are looked up in the store on every request, so a revocation holds on every node at
//! once.

pub mod bootstrap;
pub mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tempora_core::auth::{Role, token_hash};
use tempora_store::{NewAudit, StoreResult, TokenRecord};

use crate::AppState;
use crate::error::ApiError;
use table::{Access, BodyKind, Route};

/// Longest accepted `Authorization` header value (a token is 72 characters).
const MAX_CREDENTIAL: usize = 1024;
/// A token's last use is written at most this often per node.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// How long this node trusts a worker id → token binding it has read.
const BINDING_TTL: Duration = Duration::from_secs(10);

/// Settings of the access layer.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Origins (`https://ui.example.com`) that get CORS headers and may send changes.
    pub cors_origins: Vec<String>,
    /// When not empty, the `Host` header must name one of these hosts.
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` without a credential.
    pub metrics_public: bool,
    /// How long a web UI session lasts (at most as long as its token).
    pub ui_session_ttl: Duration,
    /// The server speaks TLS: session cookies are `Secure`.
    pub tls: bool,
}

/// The caller of a request, set by [`authenticate`] for every route that needs a token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id.
    pub token_id: String,
    /// Token name.
    pub name: String,
    /// Token role.
    pub role: Role,
}

/// What a handler adds to the audit entry of its change (a response extension).
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    /// The job concerned, when the path does not name it.
    pub job: Option<String>,
    /// SHA-256 of the job's new spec.
    pub spec_hash: Option<String>,
    /// What else identifies the change (never a secret value).
    pub detail: Option<String>,
}

impl AuditNote {
    /// Attach this note to a handler's response.
    pub fn attach(self, res: impl IntoResponse) -> Response {
        let mut res = res.into_response();
        res.extensions_mut().insert(self);
        res
    }
}

/// Attach the audit note of a write of `spec` (its name and the SHA-256 of its JSON as stored)
/// to a handler's response.
pub fn with_spec_note(res: impl IntoResponse, spec: &tempora_core::job::JobSpec) -> Response {
    let mut res = res.into_response();
    let spec_hash = serde_json::to_vec(spec)
        .ok()
        .map(|b| tempora_core::auth::sha256_hex(&b));
    res.extensions_mut().insert(AuditNote {
        job: Some(spec.name.clone()),
        spec_hash,
        detail: None,
    });
    res
}

/// Per-node memory of the access layer.
#[derive(Debug, Default)]
pub struct AuthCache {
    touched: Mutex<HashMap<String, Instant>>,
    bindings: Mutex<HashMap<String, (String, Instant)>>,
    /// Tokens found by hash, kept only for an embedded (SQLite) store, whose tokens change
    /// only through this process: every change empties it ([`AuthCache::tokens_changed`]), so
    /// a revocation still holds at once. A cluster's nodes read the database every time.
    tokens: Mutex<HashMap<String, TokenRecord>>,
    /// Audit entries of this node not yet written, and a wake-up when one is.
    audit_pending: AtomicUsize,
    audit_done: tokio::sync::Notify,
}

impl AuthCache {
    /// Wait (up to `within`) until the audit entries of changes this node has answered are
    /// written.
    pub async fn audit_written(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.audit_pending.load(Ordering::SeqCst) > 0 {
            let notified = self.audit_done.notified();
            if self.audit_pending.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
    }

    /// Forget the tokens found so far (a token was made or revoked on this node).
    pub fn tokens_changed(&self) {
        if let Ok(mut m) = self.tokens.lock() {
            m.clear();
        }
    }

    /// The token whose SHA-256 is `hash` (a web session holds it).
    pub(crate) async fn token_by_hash(
        &self,
        state: &AppState,
        hash: &str,
    ) -> StoreResult<Option<TokenRecord>> {
        self.token(state, hash).await
    }

    async fn token(&self, state: &AppState, hash: &str) -> StoreResult<Option<TokenRecord>> {
        let local = state.store_kind == "sqlite";
        if local && let Some(t) = self.tokens.lock().ok().and_then(|m| m.get(hash).cloned()) {
            return Ok(Some(t));
        }
        let found = state.store.token_by_hash(hash).await?;
        if local
            && let Some(t) = &found
            && let Ok(mut m) = self.tokens.lock()
        {
            m.insert(hash.to_owned(), t.clone());
        }
        Ok(found)
    }

    /// Remember that `worker` is bound to `token_id` (after a registration on this node).
    pub fn remember_binding(&self, worker: &str, token_id: &str) {
        if let Ok(mut m) = self.bindings.lock() {
            m.insert(worker.to_owned(), (token_id.to_owned(), Instant::now()));
        }
    }

    fn cached_binding(&self, worker: &str) -> Option<String> {
        let m = self.bindings.lock().ok()?;
        let (token, at) = m.get(worker)?;
        (at.elapsed() < BINDING_TTL).then(|| token.clone())
    }

    /// Whether this node should record a use of `token_id` now.
    fn should_touch(&self, token_id: &str) -> bool {
        let Ok(mut m) = self.touched.lock() else {
            return false;
        };
        let now = Instant::now();
        match m.get(token_id) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                m.insert(token_id.to_owned(), now);
                true
            }
        }
    }
}

/// 401 with the error body and a challenge: Basic on the Chronos routes and `/metrics`
/// (Chronos clients such as chronos-python send their password only when challenged), Bearer
/// elsewhere (a browser never prompts for it, so no credential is remembered for a page to
/// reuse).
fn unauthorized(path: &str, message: impl Into<String>) -> Response {
    let chronos = path == "/metrics"
        || table::CHRONOS_PREFIXES
            .iter()
            .any(|p| path.starts_with(&format!("{p}/")));
    let challenge = if chronos {
        "Basic realm=\"tempora\", charset=\"UTF-8\""
    } else {
        "Bearer realm=\"tempora\""
    };
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    res
}

fn forbidden(code: &'static str, message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
}

/// The token in the request's `Authorization` header: `Ok(None)` when there is none, `Err`
/// with a reason when the header is malformed.
pub fn credential(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    if value.len() > MAX_CREDENTIAL {
        return Err("the Authorization header is too long");
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or("the Authorization header must be `Bearer <token>` or HTTP Basic")?;
    let rest = rest.trim();
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| "the Basic credential is not base64")?;
        let text = String::from_utf8(decoded).map_err(|_| "the Basic credential is not UTF-8")?;
        let (_user, password) = text
            .split_once(':')
            .ok_or("the Basic credential must be `user:token`")?;
        password.to_owned()
    } else {
        return Err("the Authorization scheme must be Bearer or Basic");
    };
    if token.is_empty() {
        return Err("the token is empty");
    }
    Ok(Some(token))
}

/// The request's media type, lowercase, without parameters (`application/json`).
fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

fn is_upload(headers: &HeaderMap) -> bool {
    media_type(headers)
        .is_some_and(|m| m == "application/octet-stream" || m == "multipart/form-data")
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// The host part of a `Host` header value (`[::1]:8080` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Whether a page of `origin` may send changes here: a listed origin, or this server itself.
pub(crate) fn origin_allowed(config: &AuthConfig, headers: &HeaderMap, origin: &str) -> bool {
    if config.cors_origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

/// What [`check`] found: the route's row (None for an unknown route) and its caller (None for
/// a public route).
struct Admitted {
    route: Option<&'static Route>,
    template: Option<String>,
    caller: Option<Caller>,
    /// The web UI session the caller signed in with (UI routes only).
    session: Option<crate::ui::session::Session>,
}

/// Steps 1–4 of the module documentation: admit the request, or answer it.
async fn check(
    state: &AppState,
    method: &Method,
    path: &str,
    target: &str,
    headers: &HeaderMap,
    template: Option<String>,
) -> Result<Admitted, Response> {
    let config = &state.auth;
    if !config.allowed_hosts.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(host_name)
            .unwrap_or_default();
        if !config
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
        {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                format!("host `{host}` is not served here (--allowed-host)"),
            )
            .into_response());
        }
    }
    let route: Option<&'static Route> = template.as_deref().and_then(|m| table::lookup(method, m));
    let needed = match (route, &template) {
        (Some(r), _) => r.access,
        // No route (a fallback's template is a wildcard), or a method the route does not have:
        // the handler answers 404 or 405 to anyone with a token.
        (None, None) => Access::AnyToken,
        (None, Some(m)) if m.contains("{*") || table::all_routes().iter().any(|(p, _)| p == m) => {
            Access::AnyToken
        }
        (None, Some(m)) => {
            tracing::error!(message = "route missing from the access table; refused", route = %m);
            return Err(forbidden(
                "forbidden",
                format!("route {m} has no access rule"),
            ));
        }
    };
    let admitted = |caller| Admitted {
        route,
        template: template.clone(),
        caller,
        session: None,
    };
    let role = match needed {
        Access::Public | Access::UiPublic => return Ok(admitted(None)),
        Access::Ui(role) => {
            let (caller, session) = crate::ui::admit(state, method, target, headers, role).await?;
            return Ok(Admitted {
                session: Some(session),
                ..admitted(Some(caller))
            });
        }
        Access::Metrics if config.metrics_public => return Ok(admitted(None)),
        Access::Metrics => Some(Role::Viewer),
        Access::Role(r) => Some(r),
        Access::AnyToken => None,
    };
    let token = match credential(headers) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(unauthorized(
                path,
                "a token is needed: `Authorization: Bearer <token>` (or the token as the HTTP Basic password)",
            ));
        }
        Err(why) => return Err(unauthorized(path, format!("malformed credential: {why}"))),
    };
    let now = tempora_store::clock::now();
    let record = match state.auth_cache.token(state, &token_hash(&token)).await {
        Ok(Some(r)) if r.active(now) => r,
        Ok(_) => {
            return Err(unauthorized(
                path,
                "the token is unknown, expired or revoked",
            ));
        }
        Err(e) => return Err(ApiError::from(e).into_response()),
    };
    if let Some(role) = role
        && !record.role.allows(role)
    {
        tracing::warn!(
            message = "request refused: role too low",
            method = %method,
            path = %path,
            token = %record.name,
            role = %record.role,
            needed = %role,
        );
        return Err(forbidden(
            "forbidden",
            format!(
                "this needs role `{role}`; token `{}` has role `{}`",
                record.name, record.role
            ),
        ));
    }
    let unsafe_method = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method
        && let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !origin_allowed(config, headers, origin)
    {
        return Err(forbidden(
            "cross_origin",
            format!("changes from a page of origin `{origin}` are refused (--cors-origin)"),
        ));
    }
    if route.is_some_and(|r| r.body == BodyKind::Binary) && has_body(headers) && !is_upload(headers)
    {
        return Err(ApiError {
            field: Some("Content-Type".into()),
            ..ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be sent with `Content-Type: application/octet-stream` (or as a `multipart/form-data` form)",
            )
        }
        .into_response());
    }
    if route.is_some_and(|r| r.body == BodyKind::Json) && has_body(headers) && !is_json(headers) {
        return Err(ApiError {
            field: Some("Content-Type".into()),
            ..ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be sent with `Content-Type: application/json`",
            )
        }
        .into_response());
    }
    if record
        .last_used_at
        .is_none_or(|t| now.duration_since(t) > TOUCH_EVERY.try_into().unwrap_or_default())
        && state.auth_cache.should_touch(&record.id)
    {
        let store = state.store.clone();
        let id = record.id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&id, now).await {
                tracing::debug!(message = "cannot record a token's use", error = %e);
            }
        });
    }
    Ok(admitted(Some(Caller {
        token_id: record.id,
        name: record.name,
        role: record.role,
    })))
}

/// The authentication layer (see the module documentation).
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let admitted = match check(&state, &method, &path, &target, req.headers(), template).await {
        Ok(a) => a,
        Err(refusal) => {
            let remote = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
            tracing::info!(
                message = "request refused",
                method = %method,
                path = %path,
                status = refusal.status().as_u16(),
                remote = %remote,
            );
            // Read (a bounded part of) the body before answering: a client still sending it
            // would otherwise see the connection reset instead of the answer (and clients that
            // send credentials only when challenged, like chronos-python, could not retry).
            // Bounded in time too: a client that stops sending holds nothing for long. The
            // frames are dropped as they come, never collected.
            if has_body(req.headers()) {
                let drain = async {
                    let mut body = req.into_body().into_data_stream();
                    let mut read = 0usize;
                    while let Some(Ok(frame)) = futures_util::StreamExt::next(&mut body).await {
                        read += frame.len();
                        if read >= crate::extract::MAX_BODY {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
            }
            return refusal;
        }
    };
    let Some(caller) = admitted.caller else {
        return next.run(req).await;
    };
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    let mut req = req;
    req.extensions_mut().insert(caller.clone());
    if let Some(session) = admitted.session {
        req.extensions_mut().insert(session);
    }
    let res = next.run(req).await;
    if let Some(route) = admitted.route
        && let Some(action) = route.action
        && res.status().is_success()
    {
        let note = res
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        let template = admitted.template.as_deref().unwrap_or_default();
        let job = note.job.or_else(|| {
            table::path_params(template, &path)
                .into_iter()
                .find(|(k, _)| *k == "name")
                .map(|(_, v)| v.to_owned())
        });
        let entry = NewAudit {
            at: tempora_store::clock::now(),
            token_id: caller.token_id,
            token_name: caller.name,
            role: caller.role,
            remote,
            action: action.to_owned(),
            target: path,
            job,
            spec_hash: note.spec_hash,
            detail: note.detail,
            status: res.status().as_u16(),
        };
        // Written right after the answer, behind the change in the store's queue: waiting for a
        // second commit cost a fifth of the triggers a client could send on SQLite. Readers of
        // the audit log on this node wait for these writes (`AuthCache::audit_written`), so an
        // admin still reads a change's entry right after it. A crash in that instant can lose
        // the entry, not the change.
        let store = state.store.clone();
        let cache = state.clone();
        cache
            .auth_cache
            .audit_pending
            .fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Err(e) = store.append_audit(entry.clone()).await {
                tracing::error!(message = "cannot write the audit log", error = %e, action = %entry.action, target = %entry.target);
            }
            cache
                .auth_cache
                .audit_pending
                .fetch_sub(1, Ordering::SeqCst);
            cache.auth_cache.audit_done.notify_waiters();
        });
    }
    res
}

/// Refuse a worker-protocol call for `worker` unless the caller's token registered that id.
pub async fn check_worker_binding(
    state: &AppState,
    caller: &Caller,
    worker: &str,
) -> Result<(), ApiError> {
    let bound = match state.auth_cache.cached_binding(worker) {
        Some(t) => Some(t),
        None => {
            let t = state.store.worker_token(worker).await?;
            if let Some(t) = &t {
                state.auth_cache.remember_binding(worker, t);
            }
            t
        }
    };
    match bound {
        Some(t) if t == caller.token_id => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("worker `{worker}` is registered with another token"),
        )),
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("worker `{worker}` is not registered (POST /api/v1/workers/register first)"),
        )),
    }
}

/// CORS for the origins listed with `--cors-origin` (none by default): their preflight
/// requests are answered and their responses carry `Access-Control-Allow-Origin`; any other
/// origin gets no CORS header, so a browser keeps the answer from its page.
pub async fn cors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| state.auth.cors_origins.iter().any(|c| c == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(origin) = origin else {
            return forbidden("cross_origin", "this origin is not allowed (--cors-origin)");
        };
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
                (
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
                ),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("Authorization, Content-Type"),
                ),
                (
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("600"),
                ),
                (header::VARY, HeaderValue::from_static("Origin")),
            ],
        )
            .into_response();
    }
    let mut res = next.run(req).await;
    if let Some(origin) = origin {
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn credentials_from_bearer_and_basic() {
        assert_eq!(credential(&headers(&[])), Ok(None));
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer abc")])),
            Ok(Some("abc".into()))
        );
        // `user:tok` in base64; any user name.
        assert_eq!(
            credential(&headers(&[("authorization", "Basic dXNlcjp0b2s=")])),
            Ok(Some("tok".into()))
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Token abc",
            "Basic !!!",
            "Basic dXNlcg==",
            "Basic dXNlcjo=",
        ] {
            assert!(
                credential(&headers(&[("authorization", bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(
            credential(&headers(&[
                ("authorization", "Bearer a"),
                ("authorization", "Bearer b")
            ]))
            .is_err()
        );
    }

    #[test]
    fn content_types_hosts_and_origins() {
        assert!(is_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/merge-patch+json"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[])));
        assert_eq!(host_name("example.com:8080"), "example.com");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("example.com"), "example.com");
        let config = AuthConfig {
            cors_origins: vec!["https://ui.example.com".into()],
            ..AuthConfig::default()
        };
        let h = headers(&[("host", "127.0.0.1:8080")]);
        assert!(origin_allowed(&config, &h, "http://127.0.0.1:8080"));
        assert!(origin_allowed(&config, &h, "https://ui.example.com"));
        assert!(!origin_allowed(&config, &h, "https://evil.example"));
        assert!(!origin_allowed(&config, &h, "null"));
    }
}
