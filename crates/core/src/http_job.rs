//! HTTP jobs: a run is one HTTP request instead of a process (`http: {method, url, headers,
//! body, timeout, expect_status, follow_redirects, tls_verify}`). What the request may be is
//! checked here; the worker sends it (`tempora_worker::http`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_opt_duration;
use crate::job::ValidationError;

/// Longest URL.
pub const MAX_URL: usize = 4096;
/// Largest request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most request headers.
pub const MAX_HEADERS: usize = 100;
/// Longest request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The request an HTTP job sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `GET` (default), `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` or `OPTIONS`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `http://` or `https://` URL.
    pub url: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (text, at most 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How long the request may take (default: the job's `timeout`, else 30s).
    #[serde(
        default,
        with = "serde_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "30s")]
    pub timeout: Option<Duration>,
    /// Statuses that mean success (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// Follow redirects (at most 10; default true).
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Verify the server's TLS certificate (default true).
    #[serde(default = "yes")]
    pub tls_verify: bool,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn yes() -> bool {
    true
}

/// Request timeout when neither `http.timeout` nor the job's `timeout` says one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpSpec {
    /// Whether `status` means success.
    pub fn expected(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }

    /// The statuses that mean success, in words.
    pub fn expected_text(&self) -> String {
        if self.expect_status.is_empty() {
            "2xx".to_owned()
        } else {
            self.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let bad = |field: &str, msg: String| {
            Err(ValidationError::new(
                format!("http.{field}"),
                "invalid_value",
                msg,
            ))
        };
        const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
        if !METHODS.contains(&self.method.as_str()) {
            return bad(
                "method",
                format!("`{}` is not one of {}", self.method, METHODS.join(", ")),
            );
        }
        check_url(&self.url).or_else(|m| bad("url", m))?;
        if self.headers.len() > MAX_HEADERS {
            return bad("headers", format!("at most {MAX_HEADERS} headers"));
        }
        for (k, v) in &self.headers {
            let token = !k.is_empty()
                && k.len() <= 256
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return bad("headers", format!("`{k}` is not a header name"));
            }
            if v.len() > 8192 || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return bad(
                    &format!("headers.{k}"),
                    "a header value is at most 8 KiB, without line breaks".to_owned(),
                );
            }
        }
        if self.body.as_ref().is_some_and(|b| b.len() > MAX_BODY) {
            return bad("body", format!("longer than {MAX_BODY} bytes"));
        }
        if let Some(t) = self.timeout
            && (t.is_zero() || t > MAX_TIMEOUT)
        {
            return bad("timeout", "from 1ms to 24h".to_owned());
        }
        if self.expect_status.len() > 50 {
            return bad("expect_status", "at most 50 statuses".to_owned());
        }
        if let Some(s) = self
            .expect_status
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return bad("expect_status", format!("{s} is not an HTTP status"));
        }
        Ok(())
    }
}

/// An absolute `http`/`https` URL with a host, no whitespace or control characters.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!("longer than {MAX_URL} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL has no spaces or control characters".to_owned());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    if let Some(port) = authority
        .rsplit_once(']')
        .map_or(authority, |(_, p)| p)
        .rsplit_once(':')
        .map(|(_, p)| p)
        && !port.is_empty()
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{port}` is not a port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> HttpSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_expected_statuses() {
        let s = spec(r#"{"url":"https://example.com/hook"}"#);
        assert_eq!(s.method, "GET");
        assert!(s.follow_redirects && s.tls_verify);
        assert!(s.expected(204) && !s.expected(301) && !s.expected(500));
        let s = spec(r#"{"url":"http://x","expect_status":[200,404]}"#);
        assert!(s.expected(404) && !s.expected(201));
        assert_eq!(s.expected_text(), "200, 404");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_requests_name_their_field() {
        for (json, field) in [
            (r#"{"url":"ftp://x"}"#, "http.url"),
            (r#"{"url":"http://"}"#, "http.url"),
            (r#"{"url":"http://a b"}"#, "http.url"),
            (r#"{"url":"http://x:99999/"}"#, "http.url"),
            (r#"{"url":"http://x","method":"BREW"}"#, "http.method"),
            (
                r#"{"url":"http://x","headers":{"a b":"1"}}"#,
                "http.headers",
            ),
            (
                r#"{"url":"http://x","headers":{"X":"a\r\nB: c"}}"#,
                "http.headers.X",
            ),
            (
                r#"{"url":"http://x","expect_status":[999]}"#,
                "http.expect_status",
            ),
            (r#"{"url":"http://x","timeout":"0s"}"#, "http.timeout"),
        ] {
            let e = spec(json).validate().unwrap_err();
            assert_eq!(e.field, field, "{json}");
        }
        assert!(
            spec(r#"{"url":"http://[::1]:8080/a?b#c"}"#)
                .validate()
                .is_ok()
        );
        assert!(
            spec(r#"{"url":"https://user@host.example:443"}"#)
                .validate()
                .is_ok()
        );
    }
}
