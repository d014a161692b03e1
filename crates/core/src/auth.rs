//! Access control's pure parts: roles, what each one allows, token names and the token hash.
//!
//! A scheduler runs commands by design, so every route needs a credential. A credential is an
//! API token with one [`Role`]. The human roles form a chain, each allowing everything the one
//! before it does: `viewer` ⊂ `operator` ⊂ `editor` ⊂ `admin`. `worker` stands apart: it may use
//! the worker protocol and nothing else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read jobs, runs, output, the cluster and metrics.
    Viewer,
    /// + trigger, cancel, pause and resume runs and jobs.
    Operator,
    /// + create, change and delete jobs.
    Editor,
    /// + tokens, the audit log, and everything else.
    Admin,
    /// The worker protocol only, as the worker ids it registered.
    Worker,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Operator,
        Role::Editor,
        Role::Admin,
        Role::Worker,
    ];

    /// The role's name as written in the API, the CLI and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }

    /// Whether a token with this role may do what needs `needed`. The human roles are a chain;
    /// `worker` is allowed only what needs `worker`, and `admin` is allowed that too (an admin
    /// can create worker tokens anyway, so refusing it would protect nothing).
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Worker, n) => n == Role::Worker,
            (Role::Admin, _) => true,
            (_, Role::Worker) => false,
            (have, n) => have >= n,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (viewer, operator, editor, admin or worker)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Prefix of every token tempora makes, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "tempora_";

/// Bytes of randomness in a token (256 bits; the floor is 128).
pub const TOKEN_BYTES: usize = 32;

/// The token text for `random` bytes: the prefix and the bytes in lower-case hex.
pub fn token_from_bytes(random: &[u8]) -> String {
    let mut s = String::with_capacity(TOKEN_PREFIX.len() + random.len() * 2);
    s.push_str(TOKEN_PREFIX);
    s.push_str(&hex(random));
    s
}

/// How a token is stored: SHA-256 of its text, in hex. Tokens carry 256 random bits, so a
/// fast hash is enough (no password stretching is needed against guessing).
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Hex digest of arbitrary bytes (used for spec hashes in the audit log).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Check a token name: 1–100 characters of letters, digits, `.`, `_`, `-`, starting with a
/// letter or digit (the same shape as a job name, shorter).
pub fn validate_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok && name.starts_with("tok_") {
        return Err(format!(
            "`{name}`: names starting with `tok_` are kept for token ids"
        ));
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid token name: 1-100 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_form_a_chain_and_worker_stands_apart() {
        use Role::*;
        for (have, needed, ok) in [
            (Viewer, Viewer, true),
            (Viewer, Operator, false),
            (Operator, Viewer, true),
            (Operator, Editor, false),
            (Editor, Operator, true),
            (Editor, Admin, false),
            (Admin, Editor, true),
            (Admin, Worker, true),
            (Editor, Worker, false),
            (Viewer, Worker, false),
            (Worker, Worker, true),
            (Worker, Viewer, false),
            (Worker, Admin, false),
        ] {
            assert_eq!(have.allows(needed), ok, "{have} for {needed}");
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn tokens_and_hashes() {
        let t = token_from_bytes(&[0xab; TOKEN_BYTES]);
        assert_eq!(t.len(), TOKEN_PREFIX.len() + 64);
        assert!(t.starts_with("tempora_abab"));
        // SHA-256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(validate_token_name("ci-deploy.1").is_ok());
        assert!(validate_token_name("").is_err());
        assert!(validate_token_name("-x").is_err());
        assert!(validate_token_name("a b").is_err());
        assert!(validate_token_name(&"a".repeat(101)).is_err());
        assert!(validate_token_name("tok_13fcd67bf5fa").is_err());
    }
}
