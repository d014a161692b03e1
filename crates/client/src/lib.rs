//! `tempora-client`: what the clients of a tempora server (the CLI, `tempora worker`, the
//! end-to-end tests) and the server agree on: the remote worker protocol's wire types and
//! limits ([`wire`]) and the one percent-encoder of URL path segments ([`encode_segment`]),
//! with no HTTP stack so that the server can share them; and, with feature `api`, the typed
//! client of the native API (`api`, over reqwest).

#[cfg(feature = "api")]
pub mod api;
pub mod wire;

/// Percent-encode one URL path segment: every byte but `A-Z a-z 0-9 - _ . ~` (RFC 3986's
/// unreserved characters) becomes `%XX`, so a job or worker name a user typed cannot change
/// the path it is put in.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn only_unreserved_bytes_pass() {
        assert_eq!(encode_segment("nightly-backup_2.x~"), "nightly-backup_2.x~");
        assert_eq!(encode_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(encode_segment(".."), "..");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
