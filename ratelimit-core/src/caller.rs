//! [`Caller`]: who is making the request.

use std::fmt;
use std::net::IpAddr;

use crate::Error;

/// Who makes a request: a user, a service, a client address, or an opaque key.
///
/// The kind is part of the identity: `user:42` and `service:42` are different
/// callers and never share a counter. Ids are bytes, so an identity taken from
/// an HTTP header that is not UTF-8 is kept exactly (two distinct ids can never
/// collapse into one).
///
/// ```
/// use ratelimit_core::Caller;
///
/// let caller = Caller::parse("user:42")?;
/// assert_eq!(caller, Caller::user("42"));
/// assert_ne!(caller, Caller::service("42"));
/// assert_eq!(caller.to_string(), "user:42");
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller<'a> {
    /// An end user, by id.
    User(&'a [u8]),
    /// A service (another program), by id.
    Service(&'a [u8]),
    /// A client address, for callers with no identity.
    Ip(IpAddr),
    /// An opaque key, as used by [`RateLimiter::allow`](crate::RateLimiter::allow).
    Key(&'a [u8]),
}

impl<'a> Caller<'a> {
    /// A user with this id.
    pub fn user(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::User(id.as_ref())
    }

    /// A service with this id.
    pub fn service(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::Service(id.as_ref())
    }

    /// An opaque key.
    pub fn key(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::Key(id.as_ref())
    }

    /// Parses `user:ID`, `service:ID`, `ip:ADDR` or `key:ID`. The id must not
    /// be empty; anything else in it is kept as given.
    pub fn parse(input: &'a str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidTarget {
            input: input.escape_debug().to_string(),
            reason,
        };
        let (kind, id) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected user:ID, service:ID, ip:ADDR or key:ID"))?;
        if id.is_empty() {
            return Err(invalid("the id is empty"));
        }
        match kind {
            "user" => Ok(Self::User(id.as_bytes())),
            "service" => Ok(Self::Service(id.as_bytes())),
            "key" => Ok(Self::Key(id.as_bytes())),
            "ip" => id
                .parse()
                .map(|ip: IpAddr| Self::Ip(ip.to_canonical()))
                .map_err(|_| invalid("not an IP address")),
            _ => Err(invalid("unknown kind (expected user, service, ip or key)")),
        }
    }
}

/// `user:ID`, `service:ID`, `ip:ADDR`, or `key:#DIGEST` — an opaque key may
/// be a secret (an API key), so logs and errors show the first 128 bits of
/// its SHA-256, never the key.
impl fmt::Display for Caller<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{}", id.escape_ascii()),
            Self::Service(id) => write!(f, "service:{}", id.escape_ascii()),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            // A key may be a secret: shown as its digest, never in clear.
            Self::Key(id) => write!(
                f,
                "key:#{}",
                String::from_utf8_lossy(&crate::key::secret_digest(id))
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(Caller::parse("user:a:b").unwrap(), Caller::user("a:b"));
        assert_eq!(Caller::parse("service:x").unwrap(), Caller::service("x"));
        assert_eq!(Caller::parse("key:k").unwrap(), Caller::key("k"));
        let shown = Caller::key("sk_live_secret").to_string();
        assert!(
            shown.starts_with("key:#") && !shown.contains("secret"),
            "{shown}"
        );
        assert_eq!(
            Caller::parse("ip:::ffff:1.2.3.4").unwrap(),
            Caller::Ip("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["", "42", "user:", "robot:1", "ip:nope", ":x"] {
            assert!(
                matches!(Caller::parse(bad), Err(Error::InvalidTarget { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn display_escapes_bytes() {
        assert_eq!(Caller::user(b"a\xff\n").to_string(), "user:a\\xff\\n");
    }
}
