//! A run's page (`/ui/runs/{id}`): its state and times, its output — streamed live over
//! server-sent events while it runs — a download of the output, and cancel.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tempora_core::run::Run;
use tempora_core::schedule::parse_timezone;

use super::session::Session;
use super::{Nav, local_time, message_page, render};
use crate::AppState;
use crate::auth::Caller;

/// Output shown on the page when it opens (the rest: download).
const PAGE_OUTPUT: usize = 1024 * 1024;
/// Output sent in one event.
const EVENT_OUTPUT: usize = 256 * 1024;
/// How often the stream looks for new output.
const POLL: Duration = Duration::from_millis(250);
/// How often a stream checks that its session's token still works (a revoked token ends its
/// open streams too).
const RECHECK: Duration = Duration::from_secs(5);

/// A run's page.
#[derive(Template)]
#[template(path = "run.html")]
pub struct RunPage {
    nav: Nav,
    id: i64,
    job: String,
    state: &'static str,
    ended: bool,
    fields: Vec<(&'static str, String)>,
    output: String,
    offset: u64,
}

fn run_id(id: &str) -> Option<i64> {
    id.parse().ok().filter(|n| *n > 0)
}

fn not_found(id: &str) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no run `{id}`."),
    )
}

fn fields_of(r: &Run, tz: &jiff::tz::TimeZone) -> Vec<(&'static str, String)> {
    let t = |t: Option<jiff::Timestamp>| t.map(|t| local_time(t, tz)).unwrap_or_default();
    let mut f = vec![
        ("trigger", r.trigger.as_str().to_owned()),
        ("due", local_time(r.scheduled_for, tz)),
        ("attempt", r.attempt.to_string()),
        ("queued", local_time(r.queued_at, tz)),
        ("started", t(r.started_at)),
        ("finished", t(r.finished_at)),
    ];
    if let (Some(a), Some(b)) = (r.started_at, r.finished_at) {
        f.push((
            "took",
            format!("{:.3} s", b.duration_since(a).as_secs_f64()),
        ));
    }
    if let Some(w) = &r.worker {
        f.push(("worker", w.clone()));
    }
    if let Some(c) = r.exit_code {
        f.push(("exit code", c.to_string()));
    }
    if let Some(sig) = r.signal {
        f.push(("signal", sig.to_string()));
    }
    if let Some(e) = &r.error {
        f.push(("error", e.clone()));
    }
    if r.cancel_requested && !r.state.is_final() {
        f.push(("cancel", "requested".to_owned()));
    }
    f
}

/// A notification in one line: its target, state and attempts (`webhook https://… — sent after
/// 2 attempts (HTTP 500, HTTP 200)`).
fn notification_line(n: &tempora_store::notify::Notification) -> String {
    use tempora_core::notify::Target;
    let target = match &n.target {
        Target::Webhook(u) => format!("webhook {u}"),
        Target::Slack(u) => format!("slack {u}"),
        Target::Email(to) => format!("email {}", to.join(", ")),
    };
    if n.attempts.is_empty() {
        return format!("{target} — {}", n.state.as_str());
    }
    let details: Vec<&str> = n.attempts.iter().map(|a| a.detail.as_str()).collect();
    format!(
        "{target} — {} after {} attempt{} ({})",
        n.state.as_str(),
        n.attempts.len(),
        if n.attempts.len() == 1 { "" } else { "s" },
        details.join(", ")
    )
}

/// `GET /ui/runs/{id}`.
pub async fn page(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let Some(n) = run_id(&id) else {
        return not_found(&id);
    };
    let run = match s.store.get_run(n).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&id),
        Err(e) => return message_page(StatusCode::SERVICE_UNAVAILABLE, "Error", &e.to_string()),
    };
    let (output, offset) = match s.store.read_log(n, 0, PAGE_OUTPUT).await {
        Ok(Some(slice)) => (
            String::from_utf8_lossy(&slice.data).into_owned(),
            slice.next_offset,
        ),
        _ => (String::new(), 0),
    };
    let tz = match s.store.get_job(&run.job).await {
        Ok(Some(j)) => parse_timezone(&j.spec.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
        _ => jiff::tz::TimeZone::UTC,
    };
    let mut fields = fields_of(&run, &tz);
    for note in s.store.run_notifications(n).await.unwrap_or_default() {
        fields.push(("notified", notification_line(&note)));
    }
    render(&RunPage {
        nav: Nav::new(&s, &caller, &session),
        id: n,
        job: run.job.clone(),
        state: run.state.as_str(),
        ended: run.state.is_final(),
        fields,
        output,
        offset,
    })
}

/// Query of the event stream.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// The output offset the page already shows.
    #[serde(default)]
    pub offset: u64,
}

/// `GET /ui/runs/{id}/events`: the run's new output as `output` events (text, escaped by the
/// page), then one `end` event with its final state. Each event's id is the output offset after
/// it, so a reconnecting browser (`Last-Event-ID`) gets nothing twice.
pub async fn events(
    State(s): State<Arc<AppState>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(n) = run_id(&id) else {
        return not_found(&id);
    };
    // An unknown run is a 404, not an empty stream a browser would reconnect to forever.
    if !matches!(s.store.get_run(n).await, Ok(Some(_))) {
        return not_found(&id);
    }
    let mut offset = q.map(|Query(q)| q.offset).unwrap_or(0);
    if let Some(last) = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        offset = last;
    }
    let state = s.clone();
    let (token_hash, expires) = (session.token_hash, session.expires);
    let start = Some((offset, tokio::time::Instant::now()));
    let stream = futures_util::stream::unfold(start, move |st| {
        let (s, token_hash) = (state.clone(), token_hash.clone());
        async move {
            let store = s.store.clone();
            // The output offset sent so far, and when the token was last checked.
            let (mut offset, mut checked) = st?;
            loop {
                if checked.elapsed() >= RECHECK {
                    checked = tokio::time::Instant::now();
                    let now = tempora_store::clock::now();
                    if now >= expires {
                        return None;
                    }
                    match s.auth_cache.token_by_hash(&s, &token_hash).await {
                        Ok(Some(t)) if t.active(now) => {}
                        _ => return None,
                    }
                }
                let slice = match store.read_log(n, offset, EVENT_OUTPUT).await {
                    Ok(Some(slice)) => slice,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::debug!(message = "output stream ends", error = %e);
                        return None;
                    }
                };
                if !slice.data.is_empty() {
                    offset = slice.next_offset;
                    let text = html_escape(&String::from_utf8_lossy(&slice.data));
                    let event = Event::default()
                        .event("output")
                        .id(offset.to_string())
                        .data(text);
                    return Some((Ok::<_, Infallible>(event), Some((offset, checked))));
                }
                if slice.state.is_final() {
                    let state = slice.state.as_str();
                    let html = format!(
                        "<span id=\"state\" hx-swap-oob=\"true\" class=\"badge s-{state}\">{state}</span>\
                         <p class=\"notice\">The run ended: {state}. <a href=\"\">Reload</a> for its times and exit code.</p>"
                    );
                    let event = Event::default().event("end").data(html);
                    return Some((Ok(event), None));
                }
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The characters of `text` that HTML would read as markup, escaped.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /ui/runs/{id}/log`: the output as a file.
pub async fn download(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(n) = run_id(&id) else {
        return not_found(&id);
    };
    match s.store.read_log(n, 0, 64 * 1024 * 1024).await {
        Ok(Some(slice)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"run-{n}.log\""),
                ),
            ],
            slice.data,
        )
            .into_response(),
        Ok(None) => not_found(&id),
        Err(e) => message_page(StatusCode::SERVICE_UNAVAILABLE, "Error", &e.to_string()),
    }
}

/// `POST /ui/runs/{id}/cancel`.
pub async fn cancel(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(n) = run_id(&id) else {
        return not_found(&id);
    };
    match s.store.request_cancel(n, tempora_store::clock::now()).await {
        Ok(run) => {
            s.stops_requested.notify_one();
            tracing::info!(message = "cancel requested (web UI)", run_id = n, job = %run.job);
            let mut res = StatusCode::NO_CONTENT.into_response();
            res.headers_mut()
                .insert("hx-refresh", HeaderValue::from_static("true"));
            res
        }
        Err(e) => {
            let e = crate::error::ApiError::from(e);
            message_page(e.status, "Not done", &e.message)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_cannot_become_markup() {
        assert_eq!(
            super::html_escape("<script>a&b</script>\"'"),
            "&lt;script&gt;a&amp;b&lt;/script&gt;&quot;&#39;"
        );
    }
}
