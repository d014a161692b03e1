//! Job secrets: sealed at rest, masked on every way out.
//!
//! A job's `secrets` map holds, in the store, values sealed with ChaCha20-Poly1305 (ring's AEAD)
//! under the cluster's secret key: `sealed:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`. The
//! key id (the first 8 hex digits of the key's SHA-256) lets a node with another key say so
//! instead of failing with a bare authentication error. The job name and the secret's name are
//! the associated data, so a sealed value copied to another job or name does not open.
//!
//! Reads show every value as [`MASK`]; a write that sends [`MASK`] keeps the stored value (so an
//! export applies back unchanged). [`OutputMasker`] replaces secret values in a run's output.
//! The nonce comes from the caller (this crate does no I/O).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Digest;

/// What every read shows instead of a secret's value; sent back, it keeps the stored value.
pub const MASK: &str = "***";
/// Prefix of a sealed value.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// Secret values shorter than this are not masked in output (masking `1` would garble every
/// number); they are still sealed and never returned.
pub const MIN_MASKED_LEN: usize = 4;

/// Why a secret could not be read or the key not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key text is not 64 hex digits.
    #[error("a secret key is 64 hexadecimal digits (32 bytes)")]
    BadKey,
    /// The value is not a sealed value of this format.
    #[error("not a sealed secret value")]
    NotSealed,
    /// Sealed under another key.
    #[error(
        "sealed with key {sealed_with}, but this node's secret key is {this_key}: give every node the same --secret-key-file"
    )]
    OtherKey {
        /// Key id in the value.
        sealed_with: String,
        /// This node's key id.
        this_key: String,
    },
    /// The value was altered, or belongs to another job or name.
    #[error("the sealed value does not open (altered, or copied from another job or name)")]
    Corrupt,
}

/// The cluster's secret key.
pub struct SecretKey {
    key: LessSafeKey,
    /// HMAC-SHA256 with the same bytes, for [`SecretKey::sign`] (other purposes than sealing).
    mac: ring::hmac::Key,
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn aad(job: &str, name: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(job.len() + name.len() + 1);
    a.extend_from_slice(job.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> SecretKey {
        let digest = sha2::Sha256::digest(bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        // A 32-byte slice is always a valid ChaCha20-Poly1305 key, so this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for ChaCha20-Poly1305"));
        SecretKey {
            key: LessSafeKey::new(unbound),
            mac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
            id,
        }
    }

    /// A key from its text form: 64 hex digits (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<SecretKey, SecretError> {
        let t = text.trim();
        if t.len() != 64 {
            return Err(SecretError::BadKey);
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(t.get(2 * i..2 * i + 2).ok_or(SecretError::BadKey)?, 16)
                .map_err(|_| SecretError::BadKey)?;
        }
        Ok(SecretKey::from_bytes(&bytes))
    }

    /// The text form of 32 key bytes (what a key file holds).
    pub fn encode(bytes: &[u8; 32]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// An HMAC-SHA256 of `data` for `purpose` (a web session, a CSRF token): every node of a
    /// cluster, having the same key, makes and checks the same ones. `purpose` keeps a value
    /// signed for one use from passing for another.
    pub fn sign(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        let mut ctx = ring::hmac::Context::with_key(&self.mac);
        ctx.update(purpose.as_bytes());
        ctx.update(&[0]);
        ctx.update(data);
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `tag` is [`SecretKey::sign`]'s for `purpose` and `data` (constant time).
    pub fn verify(&self, purpose: &str, data: &[u8], tag: &[u8]) -> bool {
        let mut msg = Vec::with_capacity(purpose.len() + 1 + data.len());
        msg.extend_from_slice(purpose.as_bytes());
        msg.push(0);
        msg.extend_from_slice(data);
        ring::hmac::verify(&self.mac, &msg, tag).is_ok()
    }

    /// The key's id (8 hex digits), shown in sealed values and errors; not secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seal `value`, secret `name` of job `job`, with a fresh random `nonce`.
    pub fn seal(&self, job: &str, name: &str, value: &str, nonce: [u8; NONCE_LEN]) -> String {
        let mut buf = value.as_bytes().to_vec();
        // Sealing in place only fails for inputs longer than the cipher's 256 GiB limit; job
        // fields are bounded far below that.
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(job, name)),
                &mut buf,
            )
            .is_err()
        {
            unreachable!("secret values are bounded far below the AEAD's limit");
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        format!("{SEALED_PREFIX}{}:{}", self.id, STANDARD.encode(out))
    }

    /// Open a value [`SecretKey::seal`] made for the same job and name.
    pub fn open(&self, job: &str, name: &str, sealed: &str) -> Result<String, SecretError> {
        let rest = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::NotSealed)?;
        let (id, data) = rest.split_once(':').ok_or(SecretError::NotSealed)?;
        if id != self.id {
            return Err(SecretError::OtherKey {
                sealed_with: id.to_owned(),
                this_key: self.id.clone(),
            });
        }
        let mut bytes = STANDARD
            .decode(data.as_bytes())
            .map_err(|_| SecretError::NotSealed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::NotSealed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(job, name)),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Corrupt)
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Replaces secret values in a stream of output with [`MASK`], also across chunk boundaries:
/// it holds back the last bytes of each chunk that could be the start of a value.
#[derive(Debug, Default)]
pub struct OutputMasker {
    /// Values to hide, longest first (so that one containing another is masked whole).
    values: Vec<Vec<u8>>,
    /// Bytes held back from the previous chunk.
    pending: Vec<u8>,
    /// Longest value minus one: what may be held back.
    hold: usize,
}

impl OutputMasker {
    /// A masker for these values (ones shorter than [`MIN_MASKED_LEN`] are left alone).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> OutputMasker {
        let mut values: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| v.len() >= MIN_MASKED_LEN)
            .map(|v| v.as_bytes().to_vec())
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        let hold = values.first().map_or(0, |v| v.len() - 1);
        OutputMasker {
            values,
            pending: Vec::new(),
            hold,
        }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Feed a chunk; returns the output that is safe to pass on now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.values.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        let (out, keep_from) = self.mask(false);
        self.pending.drain(..keep_from);
        out
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let (out, _) = self.mask(true);
        self.pending.clear();
        out
    }

    /// Mask `pending`; returns the masked output and where the held-back tail starts.
    fn mask(&self, last: bool) -> (Vec<u8>, usize) {
        let buf = &self.pending;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        // Bytes from `limit` on could begin a value that continues in the next chunk.
        let limit = if last {
            buf.len()
        } else {
            buf.len().saturating_sub(self.hold)
        };
        while i < limit {
            if let Some(v) = self.values.iter().find(|v| buf[i..].starts_with(v)) {
                out.extend_from_slice(MASK.as_bytes());
                i += v.len();
            } else {
                out.push(buf[i]);
                i += 1;
            }
        }
        (out, i.min(buf.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; 32])
    }

    #[test]
    fn sealed_values_open_only_for_their_job_name_and_key() {
        let k = key(7);
        let s = k.seal("job", "PW", "hunter2!", [1; 12]);
        assert!(is_sealed(&s) && !s.contains("hunter2"));
        assert_eq!(k.open("job", "PW", &s).unwrap(), "hunter2!");
        assert_eq!(k.open("other", "PW", &s), Err(SecretError::Corrupt));
        assert_eq!(k.open("job", "PW2", &s), Err(SecretError::Corrupt));
        assert!(matches!(
            key(8).open("job", "PW", &s),
            Err(SecretError::OtherKey { .. })
        ));
        let mut altered = s.clone();
        altered.pop();
        altered.push('A');
        assert!(k.open("job", "PW", &altered).is_err());
        assert_eq!(k.open("job", "PW", "plain"), Err(SecretError::NotSealed));
        // Two seals of one value differ (the nonce); both open.
        let s2 = k.seal("job", "PW", "hunter2!", [2; 12]);
        assert_ne!(s, s2);
        assert_eq!(k.open("job", "PW", &s2).unwrap(), "hunter2!");
    }

    #[test]
    fn key_text_round_trips_and_bad_text_is_refused() {
        let text = SecretKey::encode(&[0xab; 32]);
        assert_eq!(text.len(), 64);
        assert_eq!(SecretKey::parse(&text).unwrap().id(), key(0xab).id());
        for bad in ["", "xyz", &text[..62], &format!("{}zz", &text[..62])] {
            assert_eq!(SecretKey::parse(bad).unwrap_err(), SecretError::BadKey);
        }
    }

    #[test]
    fn output_is_masked_across_chunk_boundaries() {
        let text = b"user=admin pass=s3cr3t-value token=abcd end s3cr3t";
        for split in 1..text.len() {
            let mut m = OutputMasker::new(["s3cr3t-value", "abcd", "xy"]);
            let mut out = Vec::new();
            for c in text.chunks(split) {
                out.extend(m.feed(c));
            }
            out.extend(m.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "user=admin pass=*** token=*** end s3cr3t",
                "chunks of {split}"
            );
        }
        let mut none = OutputMasker::new(["ab"]);
        assert!(none.is_empty());
        assert_eq!(none.feed(b"abc"), b"abc");
    }
}
