//! HTTP jobs: a run sends one request ([`tempora_core::http_job::HttpSpec`]) instead of starting
//! a process. The response's status line, headers and body (at most [`MAX_RESPONSE_BODY`]) are
//! the run's output; a status outside `expect_status` fails the run (and its retries apply, as
//! for a process). `${NAME}` in the URL, headers and body is replaced by the job's variable or
//! secret `NAME` (secret values are masked in the output like a process's).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tempora_core::http_job::{DEFAULT_TIMEOUT, HttpSpec};
use tempora_core::run::RunState;
use tempora_store::clock::Clock;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::process::EndReason;

/// Bytes of a response body kept as output (the rest is not read).
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// How one request went.
#[derive(Debug, Clone)]
pub struct HttpOutcome {
    /// When it was sent.
    pub started_at: Timestamp,
    /// Why it ended.
    pub end: EndReason,
    /// The response's status, when one came.
    pub status: Option<u16>,
    /// Why no response came (connection refused, TLS, …).
    pub error: Option<String>,
}

/// One client per (verify TLS, follow redirects): connections are pooled across runs.
fn client(verify: bool, follow: bool) -> Result<reqwest::Client, String> {
    static CLIENTS: OnceLock<[Result<reqwest::Client, String>; 4]> = OnceLock::new();
    let clients = CLIENTS.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let make = |verify: bool, follow: bool| {
            reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(!verify)
                .redirect(if follow {
                    reqwest::redirect::Policy::limited(10)
                } else {
                    reqwest::redirect::Policy::none()
                })
                .user_agent(concat!("tempora/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| e.to_string())
        };
        [
            make(false, false),
            make(false, true),
            make(true, false),
            make(true, true),
        ]
    });
    clients[usize::from(verify) * 2 + usize::from(follow)].clone()
}

/// `${NAME}` replaced by `vars[NAME]` (unknown names stay as written).
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    if !text.contains("${") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) if vars.contains_key(&after[..j]) => {
                out.push_str(&vars[&after[..j]]);
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Send the request of `spec` (variables from `vars`), its response going to `out` as it comes;
/// `job_timeout` bounds it when `spec.timeout` does not (else 30s).
pub async fn send(
    spec: &HttpSpec,
    vars: &BTreeMap<String, String>,
    job_timeout: Option<Duration>,
    out: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
    clock: &dyn Clock,
) -> HttpOutcome {
    let started_at = clock.now();
    let limit = spec.timeout.or(job_timeout).unwrap_or(DEFAULT_TIMEOUT);
    let exchange = exchange(spec, vars, out);
    tokio::select! {
        r = tokio::time::timeout(limit, exchange) => match r {
            Ok(Ok(status)) => HttpOutcome { started_at, end: EndReason::Exited, status: Some(status), error: None },
            Ok(Err(e)) => HttpOutcome { started_at, end: EndReason::Exited, status: None, error: Some(e) },
            Err(_) => HttpOutcome { started_at, end: EndReason::TimedOut, status: None, error: None },
        },
        () = cancel.cancelled() => HttpOutcome { started_at, end: EndReason::Cancelled, status: None, error: None },
    }
}

async fn exchange(
    spec: &HttpSpec,
    vars: &BTreeMap<String, String>,
    out: mpsc::Sender<Bytes>,
) -> Result<u16, String> {
    let client = client(spec.tls_verify, spec.follow_redirects)?;
    let method = reqwest::Method::from_bytes(spec.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = client.request(method, substitute(&spec.url, vars));
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), substitute(v, vars));
    }
    if let Some(body) = &spec.body {
        req = req.body(substitute(body, vars));
    }
    let mut res = req.send().await.map_err(describe)?;
    let status = res.status();
    let mut head = format!(
        "{:?} {} {}\n",
        res.version(),
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (k, v) in res.headers() {
        head.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    head.push('\n');
    let _ = out.send(Bytes::from(head)).await;
    let mut kept = 0usize;
    while let Some(chunk) = res.chunk().await.map_err(describe)? {
        let room = MAX_RESPONSE_BODY - kept;
        if chunk.len() > room {
            let _ = out.send(chunk.slice(..room)).await;
            let note = format!(
                "\n[tempora: the body goes on; only its first {MAX_RESPONSE_BODY} bytes are kept]\n"
            );
            let _ = out.send(Bytes::from(note)).await;
            break;
        }
        kept += chunk.len();
        let _ = out.send(chunk).await;
    }
    Ok(status.as_u16())
}

/// A request error in words, with its cause (reqwest's own message is only the outer layer),
/// without the URL: once `${NAME}` is filled in it may hold a secret, and the error is shown
/// on the run.
fn describe(e: reqwest::Error) -> String {
    tempora_core::error_chain(&e.without_url())
}

/// The final state and explanation of a request.
pub fn classify(
    spec: &HttpSpec,
    o: &HttpOutcome,
    limit: Duration,
    shutting_down: bool,
) -> (RunState, Option<String>) {
    match o.end {
        EndReason::TimedOut => (
            RunState::TimedOut,
            Some(format!(
                "the request took longer than {}",
                tempora_core::duration::format_duration(limit)
            )),
        ),
        EndReason::Cancelled if shutting_down => (
            RunState::Lost,
            Some("lost: the worker shut down while the request was going".into()),
        ),
        EndReason::Cancelled => (RunState::Cancelled, Some("cancelled".into())),
        EndReason::Exited => match (o.status, &o.error) {
            (Some(s), _) if spec.expected(s) => (RunState::Succeeded, None),
            (Some(s), _) => (
                RunState::Failed,
                Some(format!(
                    "HTTP status {s} is not an expected one ({})",
                    spec.expected_text()
                )),
            ),
            (None, Some(e)) => (RunState::Failed, Some(format!("request failed: {e}"))),
            (None, None) => (RunState::Failed, Some("no response".into())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_substituted_and_unknown_ones_kept() {
        let mut v = BTreeMap::new();
        v.insert("TOKEN".to_owned(), "s3cret".to_owned());
        assert_eq!(
            substitute("Bearer ${TOKEN} ${NOPE} ${", &v),
            "Bearer s3cret ${NOPE} ${"
        );
        assert_eq!(substitute("plain", &v), "plain");
    }
}
