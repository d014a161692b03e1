//! Web sessions: signing in with a token gives the browser a signed cookie, so that no token
//! is kept by the page itself.
//!
//! The cookie `tempora_session` holds `v1.<token hash>.<expiry>.<nonce>` and an HMAC of it made
//! with the cluster's secret key ([`tempora_core::secret::SecretKey::sign`]): any node of a
//! cluster accepts it, none stores it. It is `HttpOnly` (no script reads it), `SameSite=Strict`
//! (no other site's page sends it), `Secure` over TLS, and expires after `--ui-session-ttl`
//! (12 hours) or with its token, whichever is first. Every request checks the token behind it,
//! so revoking the token ends its sessions at once, on every node.
//!
//! Every change (a request that is not GET or HEAD) must carry the session's CSRF token in the
//! `X-CSRF-Token` header (the pages' htmx requests do): an HMAC of the session's nonce, which a
//! page of another site cannot read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jiff::Timestamp;
use tempora_core::secret::SecretKey;

/// The cookie's name.
pub const COOKIE: &str = "tempora_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
const PURPOSE: &str = "tempora ui session v1";
const CSRF_PURPOSE: &str = "tempora ui csrf v1";

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the token that signed in.
    pub token_hash: String,
    /// When the session ends.
    pub expires: Timestamp,
    /// Random, per session: the CSRF token is derived from it.
    pub nonce: String,
}

impl Session {
    /// A new session for the token of `token_hash`, ending at `expires`.
    pub fn new(token_hash: String, expires: Timestamp) -> Result<Session, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Session {
            token_hash,
            expires,
            nonce: B64.encode(bytes),
        })
    }

    fn payload(&self) -> String {
        format!(
            "v1.{}.{}.{}",
            self.token_hash,
            self.expires.as_second(),
            self.nonce
        )
    }

    /// The cookie's value.
    pub fn encode(&self, key: &SecretKey) -> String {
        let payload = self.payload();
        let tag = key.sign(PURPOSE, payload.as_bytes());
        format!("{payload}.{}", B64.encode(tag))
    }

    /// The session in a cookie value, if its signature holds and it has not expired.
    pub fn decode(value: &str, key: &SecretKey, now: Timestamp) -> Option<Session> {
        if value.len() > 512 {
            return None;
        }
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = B64.decode(tag).ok()?;
        if !key.verify(PURPOSE, payload.as_bytes(), &tag) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(hash), Some(expires), Some(nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires = Timestamp::from_second(expires.parse().ok()?).ok()?;
        (expires > now).then(|| Session {
            token_hash: hash.to_owned(),
            expires,
            nonce: nonce.to_owned(),
        })
    }

    /// The CSRF token of this session.
    pub fn csrf(&self, key: &SecretKey) -> String {
        B64.encode(key.sign(CSRF_PURPOSE, self.nonce.as_bytes()))
    }

    /// Whether `token` is this session's CSRF token.
    pub fn csrf_ok(&self, key: &SecretKey, token: &str) -> bool {
        B64.decode(token)
            .is_ok_and(|t| key.verify(CSRF_PURPOSE, self.nonce.as_bytes(), &t))
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value that stores `value` until `expires`.
pub fn set_cookie(value: &str, expires: Timestamp, now: Timestamp, secure: bool) -> String {
    let max_age = expires.as_second().saturating_sub(now.as_second()).max(0);
    format!(
        "{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32])
    }

    #[test]
    fn a_session_survives_its_cookie_and_nothing_else_does() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let s = Session::new("ab".repeat(32), now + jiff::SignedDuration::from_hours(12)).unwrap();
        let v = s.encode(&key(1));
        assert_eq!(Session::decode(&v, &key(1), now), Some(s.clone()));
        // Another cluster's key, an altered value, an expired session.
        assert!(Session::decode(&v, &key(2), now).is_none());
        let forged = v.replacen("v1.ab", "v1.cd", 1);
        assert!(Session::decode(&forged, &key(1), now).is_none());
        let later = now + jiff::SignedDuration::from_hours(13);
        assert!(Session::decode(&v, &key(1), later).is_none());
        assert!(Session::decode("", &key(1), now).is_none());
        assert!(Session::decode("a.b.c.d.e.f", &key(1), now).is_none());
        // CSRF: this session's token passes, another session's does not.
        let other = Session::new("ab".repeat(32), s.expires).unwrap();
        assert!(s.csrf_ok(&key(1), &s.csrf(&key(1))));
        assert!(!s.csrf_ok(&key(1), &other.csrf(&key(1))));
        assert!(!s.csrf_ok(&key(1), "nonsense"));
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; tempora_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(
            set_cookie("v", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH, true)
                .ends_with("; Secure")
        );
    }
}
