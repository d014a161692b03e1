//! One delivery attempt: a signed webhook, a Slack message or an email.
//!
//! A webhook is `POST`ed as JSON with `X-Tempora-Timestamp` (Unix seconds) and
//! `X-Tempora-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>.<body>")>`, so a receiver can
//! check that it came from this cluster and is recent.

use std::sync::{Arc, OnceLock};

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tempora_core::notify::Target;
use tempora_store::Store;
use tempora_store::notify::Notification;

use crate::NotifyConfig;
use crate::message;

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered (the receiver's answer in words).
    Sent(String),
    /// Not delivered; worth another attempt.
    Retry(String),
    /// Not delivered, and another attempt would not do better.
    Failed(String),
    /// Not sent on purpose.
    Skipped(String),
}

/// The SMTP server emails go through, and their sender.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    /// `url`: `smtp://[user:password@]host[:port]` (plain; add `?tls=required` for STARTTLS,
    /// `?tls=opportunistic` to use it when offered) or `smtps://…` (TLS from the first byte,
    /// port 465). `from`: the sender address. `ca_pem`: certificates (PEM) to trust besides the
    /// system's, for a relay with a private CA.
    pub fn new(url: &str, from: &str, ca_pem: Option<&[u8]>) -> Result<Smtp, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("--smtp-url: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(10)));
        if let Some(pem) = ca_pem {
            builder = builder.tls(tls_with_ca(url, pem)?);
        }
        let transport = builder.build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("--smtp-from `{from}`: {e}"))?;
        Ok(Smtp { transport, from })
    }
}

/// The TLS mode `url` asks for, trusting the certificates of `pem` too.
fn tls_with_ca(url: &str, pem: &[u8]) -> Result<lettre::transport::smtp::client::Tls, String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "--smtp-url: not a URL".to_owned())?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .to_owned();
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let cert = Certificate::from_pem(pem).map_err(|e| format!("--smtp-ca-file: {e}"))?;
    let params = TlsParameters::builder(host)
        .add_root_certificate(cert)
        .build_rustls()
        .map_err(|e| format!("--smtp-ca-file: {e}"))?;
    if scheme.eq_ignore_ascii_case("smtps") {
        Ok(Tls::Wrapper(params))
    } else if query.split('&').any(|p| p == "tls=required") {
        Ok(Tls::Required(params))
    } else if query.split('&').any(|p| p == "tls=opportunistic") {
        Ok(Tls::Opportunistic(params))
    } else {
        Err("--smtp-ca-file needs TLS: use smtps://… or smtp://…?tls=required".into())
    }
}

fn client() -> &'static Result<reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            // A redirect would send the signed document somewhere the rule does not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tempora/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())
    })
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(key: &ring::hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

/// A `${NAME}` target resolved from the job's variables and (opened) secrets.
async fn resolve(
    store: &Arc<dyn Store>,
    cfg: &NotifyConfig,
    job: &str,
    url: &str,
) -> Result<String, String> {
    let Some(name) = url.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return Ok(url.to_owned());
    };
    let rec = store
        .get_job(job)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job `{job}` no longer exists"))?;
    if let Some(v) = rec.spec.env.get(name) {
        return Ok(v.clone());
    }
    let sealed = rec.spec.secrets.get(name).ok_or_else(|| {
        format!("`${{{name}}}` is neither a variable nor a secret of job `{job}`")
    })?;
    let key = cfg
        .secret_key
        .as_ref()
        .ok_or_else(|| "this node has no secret key".to_owned())?;
    key.open(job, name, sealed)
        .map_err(|e| format!("cannot open secret `{name}`: {e}"))
}

/// A resolved target, checked: `${NAME}` must hold an `http(s)://` URL (its value is never
/// repeated in the error).
fn checked(reference: &str, url: String) -> Result<String, String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(url)
    } else {
        Err(format!(
            "`{reference}` does not hold an http:// or https:// URL"
        ))
    }
}

/// Make one attempt at `n`.
pub async fn deliver(store: &Arc<dyn Store>, cfg: &NotifyConfig, n: &Notification) -> Delivery {
    let run = match store.get_run(n.run_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return Delivery::Skipped("the run no longer exists".into()),
        Err(e) => return Delivery::Retry(format!("cannot read the run: {e}")),
    };
    match &n.target {
        Target::Webhook(url) => {
            let url = match resolve(store, cfg, &n.job, url)
                .await
                .and_then(|u| checked(url, u))
            {
                Ok(u) => u,
                Err(e) => return Delivery::Failed(e),
            };
            let body = message::webhook_body(n, &run);
            let ts = tempora_store::clock::now().as_second();
            let sig = signature(&cfg.webhook_key, ts, body.as_bytes());
            let events: Vec<&str> = n.events.iter().map(|e| e.as_str()).collect();
            post(
                &url,
                body,
                &[
                    ("X-Tempora-Timestamp", ts.to_string()),
                    ("X-Tempora-Signature", sig),
                    ("X-Tempora-Event", events.join(",")),
                    ("X-Tempora-Delivery", n.id.to_string()),
                ],
            )
            .await
        }
        Target::Slack(url) => {
            let url = match resolve(store, cfg, &n.job, url)
                .await
                .and_then(|u| checked(url, u))
            {
                Ok(u) => u,
                Err(e) => return Delivery::Failed(e),
            };
            let body = serde_json::json!({ "text": message::text(n, &run) }).to_string();
            post(&url, body, &[]).await
        }
        Target::Email(to) => {
            let Some(smtp) = &cfg.smtp else {
                return Delivery::Skipped("no SMTP server is configured (--smtp-url)".into());
            };
            email(smtp, to, &message::subject(n, &run), message::text(n, &run)).await
        }
    }
}

async fn post(url: &str, body: String, headers: &[(&str, String)]) -> Delivery {
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Delivery::Retry(e.clone()),
    };
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    match req.send().await {
        Ok(res) => {
            let s = res.status();
            let mut text = format!("HTTP {}", s.as_u16());
            if s.is_redirection() {
                text.push_str(" (redirects are not followed)");
            }
            if s.is_success() {
                Delivery::Sent(text)
            } else if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 {
                Delivery::Retry(text)
            } else {
                Delivery::Failed(text)
            }
        }
        Err(e) => {
            // Never the URL: it may be a secret's value.
            let permanent = e.is_builder();
            let text = tempora_core::error_chain(&e.without_url());
            if permanent {
                Delivery::Failed(text)
            } else {
                Delivery::Retry(text)
            }
        }
    }
}

async fn email(smtp: &Smtp, to: &[String], subject: &str, text: String) -> Delivery {
    let mut builder = Message::builder().from(smtp.from.clone()).subject(subject);
    for a in to {
        match a.parse::<Mailbox>() {
            Ok(m) => builder = builder.to(m),
            Err(e) => return Delivery::Failed(format!("`{a}`: {e}")),
        }
    }
    let message = match builder.header(ContentType::TEXT_PLAIN).body(text) {
        Ok(m) => m,
        Err(e) => return Delivery::Failed(format!("cannot build the email: {e}")),
    };
    match smtp.transport.send(message).await {
        Ok(r) => Delivery::Sent(format!(
            "{} {}",
            r.code(),
            r.message().next().unwrap_or_default()
        )),
        Err(e) if e.is_permanent() || e.is_client() => Delivery::Failed(e.to_string()),
        Err(e) => Delivery::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let a = signature(&key, 1_700_000_000, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(a, signature(&key, 1_700_000_001, b"{}"));
        assert_ne!(a, signature(&key, 1_700_000_000, b"{ }"));
        assert_eq!(a, signature(&key, 1_700_000_000, b"{}"));
    }
}
