//! [`Caller`]: the one facet of an identity that a counter counts.

use std::fmt;
use std::net::IpAddr;

/// Whose counter a per-caller rule uses: one facet of an
/// [`Identity`](crate::Identity), as its key is written.
///
/// The kind is part of it: `user:42` and `service:42` never share a
/// counter. A secret id ([`Hidden`](Self::Hidden)) is written into keys and
/// shown in logs only as a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Caller<'a> {
    /// An end user, by id.
    User(&'a [u8]),
    /// A service, by id.
    Service(&'a [u8]),
    /// A client address.
    Ip(IpAddr),
    /// A key of the application's own.
    Custom(&'a [u8]),
    /// A secret id: an API key (`b'k'`), or a user (`b'u'`), service
    /// (`b's'`) or custom (`b'c'`) id marked secret. The letter is the
    /// key's kind letter.
    Hidden(u8, &'a [u8]),
}

/// `user:ID`, `service:ID`, `ip:ADDR`, or `KIND:#DIGEST` for a secret (the
/// first 128 bits of its SHA-256, never the id).
impl fmt::Display for Caller<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{}", id.escape_ascii()),
            Self::Service(id) => write!(f, "service:{}", id.escape_ascii()),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Custom(id) => write!(f, "custom:{}", id.escape_ascii()),
            Self::Hidden(kind, id) => {
                let kind = match kind {
                    b'u' => "user",
                    b's' => "service",
                    b'c' => "custom",
                    _ => "key",
                };
                let digest = crate::key::secret_digest(id);
                write!(f, "{kind}:#{}", String::from_utf8_lossy(&digest))
            }
        }
    }
}
