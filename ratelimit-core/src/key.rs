//! Storage keys: how a (rule, counter) pair becomes the bytes a store keys on.
//!
//! A key is `PREFIX:{SUBJECT}:RULE`:
//!
//! - `PREFIX` is the configured [`KeyPrefix`] (printable ASCII, no braces);
//! - `SUBJECT` names the counter: `g` for a global rule, else a kind letter
//!   (`u` user, `s` service, `c` custom, `i` address, `k` API key) and the
//!   encoded id;
//! - `RULE` is the [`RuleId`] (its alphabet has no braces).
//!
//! An id made only of `[A-Za-z0-9._~@-]` and at most
//! [`KeyPrefix::MAX_PLAIN_ID_LEN`]
//! bytes is written as `=ID`; any other id as `#` and the hex SHA-256 of its
//! bytes. A secret id (an API key, or a user or service id marked
//! [`Identity::secret`]) is never written in clear: always as `!` and the first 128 bits
//! of its SHA-256 in hex, which every instance computes alike with no secret
//! to keep in step, and which keeps a counter's key as short as a plain id's.
//! So keys are injective (a plain id and a digest cannot meet, and the
//! fields are delimited by characters no field contains; two keys share a
//! truncated digest with a chance of 2^-128), no longer than about 200
//! bytes whatever the id, and the braces — which Redis Cluster reads as a
//! hash tag — are always ours: one caller's counters share a slot.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::caller::Caller;
use crate::{Error, Identity, Rule, RuleId};

/// Ids up to this many bytes of the plain alphabet are stored as they are.
const MAX_PLAIN_ID_LEN: usize = KeyPrefix::MAX_PLAIN_ID_LEN;

/// Whose counter a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject<'a> {
    /// The one counter a global rule shares among all callers.
    Global,
    /// One caller's own counter.
    Caller(Caller<'a>),
}

/// A validated prefix put in front of every storage key, so several
/// applications (or environments) can share one store.
///
/// ```
/// use ratelimit_core::config::KeyPrefix;
///
/// assert!(KeyPrefix::new("myapp:prod").is_ok());
/// assert!(KeyPrefix::new("bad{prefix}").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(
    /// The prefix followed by `:{`, the start of every key.
    Arc<str>,
);

impl KeyPrefix {
    /// The longest key prefix, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Ids up to this many bytes of the plain alphabet are written into keys
    /// as they are; longer ones (and any other) as a digest.
    pub const MAX_PLAIN_ID_LEN: usize = 64;

    /// Validates a prefix: 1 to [`MAX_LEN`](Self::MAX_LEN) bytes of printable ASCII
    /// other than `{`, `}` and space.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let ok = !prefix.is_empty()
            && prefix.len() <= Self::MAX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if ok {
            Ok(Self(Arc::from(format!("{prefix}:{{"))))
        } else {
            Err(Error::InvalidPrefix(crate::error::shown(prefix)))
        }
    }

    /// The prefix as a string.
    pub fn as_str(&self) -> &str {
        self.0.strip_suffix(":{").unwrap_or(&self.0)
    }

    /// The storage key of `rule`'s counter for `identity` (the one
    /// counter of a global rule whoever asks), or `None` when the rule does
    /// not apply to it — for tools that read or clear counters in a store
    /// directly.
    ///
    /// ```
    /// use ratelimit_core::{Identity, Quota, Rule, Target, config::KeyPrefix};
    ///
    /// let rule = Rule::new("api", Target::Each, Quota::per_second(5)?)?;
    /// let key = KeyPrefix::default().key(&rule, &Identity::user("42"));
    /// assert_eq!(key.as_deref(), Some(&b"rl:{u=42}:api"[..]));
    /// # Ok::<(), ratelimit_core::Error>(())
    /// ```
    pub fn key(&self, rule: &Rule, identity: &Identity<'_>) -> Option<Vec<u8>> {
        let subject = rule.target().subject_for(identity)?;
        Some(self.key_of(rule.id(), subject))
    }

    /// The storage key of `rule`'s counter for `subject`.
    pub(crate) fn key_of(&self, rule: &RuleId, subject: Subject<'_>) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.0.len() + rule.as_str().len() + 80);
        self.write_key_to(rule, subject, &mut key);
        key
    }

    /// [`write_key`](Self::write_key) into any [`KeyBytes`] buffer.
    pub(crate) fn write_key_to(
        &self,
        rule: &RuleId,
        subject: Subject<'_>,
        out: &mut impl KeyBytes,
    ) {
        out.extend_from_slice(self.0.as_bytes());
        match subject {
            Subject::Global => out.push(b'g'),
            Subject::Caller(Caller::User(id)) => push_id(out, b'u', id),
            Subject::Caller(Caller::Service(id)) => push_id(out, b's', id),
            Subject::Caller(Caller::Custom(id)) => push_id(out, b'c', id),
            Subject::Caller(Caller::Hidden(kind, id)) => push_secret(out, kind, id),
            Subject::Caller(Caller::Ip(ip)) => {
                out.push(b'i');
                push_ip(out, ip.to_canonical());
            }
        }
        out.extend_from_slice(b"}:");
        out.extend_from_slice(rule.as_str().as_bytes());
    }
}

/// A buffer keys are written into: a `Vec`, or the inline buffer a check
/// keeps on its stack.
pub(crate) trait KeyBytes {
    fn push(&mut self, byte: u8);
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl KeyBytes for Vec<u8> {
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
}

impl Default for KeyPrefix {
    /// `rl`.
    fn default() -> Self {
        Self(Arc::from("rl:{"))
    }
}

fn is_plain(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PLAIN_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'@' | b'-'))
}

fn push_id(key: &mut impl KeyBytes, kind: u8, id: &[u8]) {
    key.push(kind);
    if is_plain(id) {
        key.extend_from_slice(b"=");
        key.extend_from_slice(id);
    } else {
        key.extend_from_slice(b"#");
        let mut hex = [0_u8; 64];
        for (byte, pair) in Sha256::digest(id).into_iter().zip(hex.chunks_exact_mut(2)) {
            pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
        }
        key.extend_from_slice(&hex);
    }
}

/// `kind`, `!` and the first 128 bits of `id`'s SHA-256 in hex: an id that
/// may be a secret, written so that it cannot be read back.
fn push_secret(key: &mut impl KeyBytes, kind: u8, id: &[u8]) {
    key.push(kind);
    key.extend_from_slice(b"!");
    key.extend_from_slice(&secret_digest(id));
}

/// The first 128 bits of `id`'s SHA-256, in hex.
pub(crate) fn secret_digest(id: &[u8]) -> [u8; 32] {
    let mut hex = [0_u8; 32];
    for (byte, pair) in Sha256::digest(id).into_iter().zip(hex.chunks_exact_mut(2)) {
        pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
    }
    hex
}

/// An address as `Display` writes it; IPv4 (the common case) without
/// `core::fmt`, which costs more than the rest of the key.
fn push_ip(key: &mut impl KeyBytes, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Dotted decimal into one stack buffer, then one copy. Each
            // octet's digits come from a table: three bytes are written and
            // the length advances by the digit count.
            let mut text = [0_u8; 18];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                let [a, b, c, digits] = OCTETS[usize::from(octet)];
                text[len..len + 3].copy_from_slice(&[a, b, c]);
                len += usize::from(digits);
                if i < 3 {
                    text[len] = b'.';
                    len += 1;
                }
            }
            key.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            // The longest IPv6 text is 39 bytes (45 with an embedded IPv4).
            let mut text = [0_u8; 48];
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            // Cannot fail: the buffer holds the longest form.
            let _ = write!(cursor, "{v6}");
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            key.extend_from_slice(text.get(..len).unwrap_or_default());
        }
    }
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Every octet's decimal digits (left-aligned, zero-padded) and their count.
static OCTETS: [[u8; 4]; 256] = octets();

const fn octets() -> [[u8; 4]; 256] {
    let mut table = [[0_u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        // `n < 256`, so each digit fits a u8.
        #[allow(clippy::cast_possible_truncation)]
        let (hundreds, tens, ones) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = if n >= 100 {
            [b'0' + hundreds, b'0' + tens, b'0' + ones, 3]
        } else if n >= 10 {
            [b'0' + tens, b'0' + ones, 0, 2]
        } else {
            [b'0' + ones, 0, 0, 1]
        };
        n += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subject: Subject<'_>) -> String {
        let rule = RuleId::new("login").unwrap();
        String::from_utf8(KeyPrefix::default().key_of(&rule, subject)).unwrap()
    }

    #[test]
    fn layout() {
        assert_eq!(key(Subject::Global), "rl:{g}:login");
        assert_eq!(key(Subject::Caller(Caller::User(b"42"))), "rl:{u=42}:login");
        assert_eq!(
            key(Subject::Caller(Caller::Service(b"42"))),
            "rl:{s=42}:login"
        );
        assert_eq!(
            key(Subject::Caller(Caller::Ip(
                "::ffff:10.0.0.1".parse().unwrap()
            ))),
            "rl:{i10.0.0.1}:login"
        );
        let hashed = key(Subject::Caller(Caller::User(b"a}b")));
        assert!(hashed.starts_with("rl:{u#"), "{hashed}");
        assert_eq!(hashed.len(), "rl:{u#}:login".len() + 64);
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "10.0.0.1",
            "255.255.255.255",
            "203.0.113.97",
            "2001:db8::",
            "::1",
            "2001:db8:0:1:2:3:4:5",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(
                key(Subject::Caller(Caller::Ip(ip))),
                format!("rl:{{i{ip}}}:login")
            );
        }
        for o in 0..=255_u8 {
            let ip = IpAddr::from([o, 255 - o, o / 2, o % 10]);
            assert_eq!(
                key(Subject::Caller(Caller::Ip(ip))),
                format!("rl:{{i{ip}}}:login")
            );
        }
    }

    #[test]
    fn opaque_keys_are_never_written_in_clear() {
        let secret = "sk_live_0123456789abcdef";
        let k = key(Subject::Caller(Caller::Hidden(b'k', secret.as_bytes())));
        assert!(!k.contains(secret), "{k}");
        assert!(k.starts_with("rl:{k!"), "{k}");
        assert_eq!(k.len(), "rl:{k!}:login".len() + 32);
        // The same on every instance, distinct per key.
        assert_eq!(
            k,
            key(Subject::Caller(Caller::Hidden(b'k', secret.as_bytes())))
        );
        assert_ne!(
            k,
            key(Subject::Caller(Caller::Hidden(
                b'k',
                b"sk_live_0123456789abcdeg"
            )))
        );
        // A key whose text is a digest is digested again.
        let digest = &k["rl:{k!".len().."rl:{k!".len() + 32];
        assert_ne!(
            k,
            key(Subject::Caller(Caller::Hidden(b'k', digest.as_bytes())))
        );
    }

    #[test]
    fn hostile_ids_stay_bounded_and_distinct() {
        let huge = vec![b'{'; 1 << 20];
        let k = key(Subject::Caller(Caller::User(&huge)));
        assert!(k.len() < 200);
        assert_eq!(k.matches('{').count(), 1);
        assert_ne!(
            key(Subject::Caller(Caller::User(b"a"))),
            key(Subject::Caller(Caller::User(b"a\0")))
        );
    }
}
