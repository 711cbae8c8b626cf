//! [`Identity`]: who makes a request, by every facet the request shows.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

pub use crate::client_ip::ClientIp;

use crate::Error;
use crate::caller::Caller;

/// One way a request can be told apart from others: its user, the service
/// it comes from, its API key, its client address, or a key of the
/// application's own (a tenant, an organisation, a device).
///
/// A rule counts one facet (see [`Target`](crate::Target)): `user:*` counts
/// every user, `ip:*` every client address, and so on; `*` counts the
/// identity's primary facet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Facet {
    /// An end user, by id.
    User,
    /// A service (another program), by id.
    Service,
    /// An API key or another opaque key. Always treated as a secret: never
    /// written in clear into store keys or logs.
    Key,
    /// The client address.
    Ip,
    /// A key of the application's own, e.g. a tenant or an organisation.
    Custom,
}

impl Facet {
    /// The facet's name in rule targets and identities (`user`, `service`,
    /// `key`, `ip`, `custom`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
            Self::Key => "key",
            Self::Ip => "ip",
            Self::Custom => "custom",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "service" => Some(Self::Service),
            "key" => Some(Self::Key),
            "ip" => Some(Self::Ip),
            "custom" => Some(Self::Custom),
            _ => None,
        }
    }
}

impl fmt::Display for Facet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who makes a request: a primary facet (what `*` rules count) and any
/// other facets the request shows.
///
/// One request may be counted per client address by a login rule, per user
/// by a `*` rule and together with everyone by a global rule, in one atomic
/// check. A rule counting a facet the identity lacks does not apply to it.
///
/// Ids are bytes, kept exactly (an id from a header that is not UTF-8 never
/// collapses into another). An identity borrows its ids where they are;
/// [`into_owned`](Self::into_owned) makes one that outlives them, as HTTP
/// extractors return and as an authentication layer puts in the request
/// extensions.
///
/// ```
/// use ratelimit_core::{Identity, identity::Facet};
///
/// let who = Identity::user("42").with_ip("203.0.113.9".parse().unwrap());
/// assert_eq!(who.primary(), Facet::User);
/// assert_eq!(who.to_string(), "user:42");
/// assert!(who.has(Facet::Ip));
/// assert!(!who.has(Facet::Key));
///
/// // API keys are never shown (nor stored) in clear.
/// let client = Identity::key("sk_live_secret");
/// assert!(!client.to_string().contains("secret"));
///
/// assert_eq!(Identity::parse("service:billing")?, Identity::service("billing"));
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity<'a> {
    primary: Facet,
    user: Option<Cow<'a, [u8]>>,
    service: Option<Cow<'a, [u8]>>,
    key: Option<Cow<'a, [u8]>>,
    custom: Option<Cow<'a, [u8]>>,
    ip: Option<IpAddr>,
    /// Whether the user, service and custom ids are secrets too (see
    /// [`secret`](Identity::secret)).
    secret: bool,
}

impl<'a> Identity<'a> {
    fn of(primary: Facet) -> Self {
        Self {
            primary,
            user: None,
            service: None,
            key: None,
            custom: None,
            ip: None,
            secret: false,
        }
    }

    /// A user, by id.
    pub fn user(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::of(Facet::User).with_user(id)
    }

    /// A service, by id.
    pub fn service(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::of(Facet::Service).with_service(id)
    }

    /// An API key or another opaque key (a secret).
    pub fn key(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::of(Facet::Key).with_key(id)
    }

    /// A client address. An IPv4-mapped IPv6 address is taken as IPv4.
    pub fn ip(ip: IpAddr) -> Self {
        Self::of(Facet::Ip).with_ip(ip)
    }

    /// A key of the application's own (a tenant, an organisation, ...).
    pub fn custom(id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self::of(Facet::Custom).with_custom(id)
    }

    /// The same identity, with this user id as its user facet.
    #[must_use]
    pub fn with_user(mut self, id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.user = Some(Cow::Borrowed(id.as_ref()));
        self
    }

    /// The same identity, with this service id as its service facet.
    #[must_use]
    pub fn with_service(mut self, id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.service = Some(Cow::Borrowed(id.as_ref()));
        self
    }

    /// The same identity, with this API key as its key facet.
    #[must_use]
    pub fn with_key(mut self, id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.key = Some(Cow::Borrowed(id.as_ref()));
        self
    }

    /// The same identity, with this key of the application's own as its
    /// custom facet.
    #[must_use]
    pub fn with_custom(mut self, id: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.custom = Some(Cow::Borrowed(id.as_ref()));
        self
    }

    /// The same identity, with this client address as its address facet.
    #[must_use]
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip.to_canonical());
        self
    }

    /// The same identity with its user, service and custom ids treated as
    /// secrets,
    /// like API keys: written into store keys and logs only as the first
    /// 128 bits of their SHA-256. Every instance computes the same digest,
    /// with no secret to share; mark an id the same way on every instance,
    /// or its counters differ.
    #[must_use]
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// Parses `user:ID`, `service:ID`, `key:ID`, `custom:ID` or `ip:ADDR`
    /// into an identity with that one facet. The id must not be empty;
    /// anything else in it is kept as given.
    pub fn parse(input: &'a str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidTarget {
            input: crate::error::shown(input),
            reason,
        };
        let (kind, id) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected user:ID, service:ID, ip:ADDR, key:ID or custom:ID"))?;
        if id.is_empty() {
            return Err(invalid("the id is empty"));
        }
        match Facet::parse(kind) {
            Some(Facet::User) => Ok(Self::user(id)),
            Some(Facet::Service) => Ok(Self::service(id)),
            Some(Facet::Key) => Ok(Self::key(id)),
            Some(Facet::Custom) => Ok(Self::custom(id)),
            Some(Facet::Ip) => id
                .parse()
                .map(Self::ip)
                .map_err(|_| invalid("not an IP address")),
            None => Err(invalid(
                "unknown kind (expected user, service, ip, key or custom)",
            )),
        }
    }

    /// The facet `*` rules count.
    pub fn primary(&self) -> Facet {
        self.primary
    }

    /// Whether the request shows this facet.
    pub fn has(&self, facet: Facet) -> bool {
        match facet {
            Facet::User => self.user.is_some(),
            Facet::Service => self.service.is_some(),
            Facet::Key => self.key.is_some(),
            Facet::Ip => self.ip.is_some(),
            Facet::Custom => self.custom.is_some(),
        }
    }

    /// The user id, if the request has one.
    pub fn user_id(&self) -> Option<&[u8]> {
        self.user.as_deref()
    }

    /// The service id, if the request has one.
    pub fn service_id(&self) -> Option<&[u8]> {
        self.service.as_deref()
    }

    /// The client address, if the request has one.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The same identity, borrowing its ids from this one (no copy).
    pub fn borrowed(&self) -> Identity<'_> {
        fn borrow<'s>(id: &'s Option<Cow<'_, [u8]>>) -> Option<Cow<'s, [u8]>> {
            id.as_deref().map(Cow::Borrowed)
        }
        Identity {
            primary: self.primary,
            user: borrow(&self.user),
            service: borrow(&self.service),
            key: borrow(&self.key),
            custom: borrow(&self.custom),
            ip: self.ip,
            secret: self.secret,
        }
    }

    /// The same identity owning its ids.
    pub fn into_owned(self) -> Identity<'static> {
        let own = |id: Option<Cow<'a, [u8]>>| id.map(|id| Cow::Owned(id.into_owned()));
        Identity {
            primary: self.primary,
            user: own(self.user),
            service: own(self.service),
            key: own(self.key),
            custom: own(self.custom),
            ip: self.ip,
            secret: self.secret,
        }
    }

    /// The counter identity of one facet, as keys are written from it.
    #[inline]
    pub(crate) fn facet(&self, facet: Facet) -> Option<Caller<'_>> {
        match facet {
            Facet::User if self.secret => self.user.as_deref().map(|id| Caller::Hidden(b'u', id)),
            Facet::Service if self.secret => {
                self.service.as_deref().map(|id| Caller::Hidden(b's', id))
            }
            Facet::User => self.user.as_deref().map(Caller::User),
            Facet::Service => self.service.as_deref().map(Caller::Service),
            Facet::Key => self.key.as_deref().map(|id| Caller::Hidden(b'k', id)),
            Facet::Custom if self.secret => {
                self.custom.as_deref().map(|id| Caller::Hidden(b'c', id))
            }
            Facet::Custom => self.custom.as_deref().map(Caller::Custom),
            Facet::Ip => self.ip.map(Caller::Ip),
        }
    }

    /// The counter identity of the primary facet.
    #[inline]
    pub(crate) fn caller(&self) -> Caller<'_> {
        // The constructors set the primary facet, and no method clears one.
        self.facet(self.primary)
            .unwrap_or(Caller::Hidden(b'k', b""))
    }
}

/// The primary facet: `user:ID`, `service:ID`, `ip:ADDR`; a key (and an id
/// marked [`secret`](Identity::secret)) as `KIND:#DIGEST`, never in clear.
impl fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.caller().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(Identity::parse("user:a:b").unwrap(), Identity::user("a:b"));
        assert_eq!(
            Identity::parse("service:x").unwrap(),
            Identity::service("x")
        );
        assert_eq!(Identity::parse("key:k").unwrap(), Identity::key("k"));
        assert_eq!(
            Identity::parse("custom:acme").unwrap(),
            Identity::custom("acme")
        );
        assert_eq!(
            Identity::parse("ip:::ffff:1.2.3.4").unwrap(),
            Identity::ip("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["", "42", "user:", "robot:1", "ip:nope", ":x"] {
            assert!(
                matches!(Identity::parse(bad), Err(Error::InvalidTarget { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn secrets_are_shown_as_digests() {
        let shown = Identity::key("sk_live_secret").to_string();
        assert!(
            shown.starts_with("key:#") && !shown.contains("secret"),
            "{shown}"
        );
        let shown = Identity::user("alice@example.com").secret().to_string();
        assert!(
            shown.starts_with("user:#") && !shown.contains("alice"),
            "{shown}"
        );
        assert_eq!(Identity::user(b"a\xff\n").to_string(), "user:a\\xff\\n");
    }

    #[test]
    fn facets_are_kept_apart() {
        let who = Identity::user("7").with_ip("10.0.0.1".parse().unwrap());
        assert_eq!(who.facet(Facet::User), Some(Caller::User(b"7")));
        assert_eq!(
            who.facet(Facet::Ip),
            Some(Caller::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(who.facet(Facet::Service), None);
        assert_eq!(who.clone().into_owned(), who);
    }
}
