//! Who is calling: [`KeyExtractor`] and its ready implementations.
//!
//! | extractor | caller |
//! |---|---|
//! | [`PeerIp`] | the client address (axum's `ConnectInfo`), or the forwarded client address when the peer is a trusted proxy |
//! | [`HeaderId`] | a user or service id from a request header |
//! | [`UserServiceOrIp`] | `x-user-id` → that user; else `x-service-id` → that service; else [`PeerIp`] — with the client address as a facet whenever it is known |
//! | [`ExtensionId`] | an identity an earlier (authentication) layer put in the request extensions |
//! | [`Everyone`] | one caller for all requests |
//! | any `Fn(&RequestHead<'_>) -> Result<Identity<'static>, KeyError>` | your own |
//!
//! **Forwarding headers are spoofable.** `Forwarded`, `X-Forwarded-For` and
//! `X-Real-IP` are read only when the TCP peer is one of the proxies you
//! configured with [`PeerIp::trust_proxy`]; otherwise any client could pick
//! its own key by sending them. IPv4-mapped IPv6 addresses are normalised to
//! IPv4, and IPv6 clients are grouped by prefix (default /64), so one host
//! cannot escape its limit by rotating addresses in its own subnet.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, StatusCode};
use ipnet::IpNet;
use ratelimit_core::identity::ClientIp;

use crate::RequestHead;

pub use ratelimit_core::Identity;

/// Why no identity could be extracted. The layer answers with
/// [`status`](Self::status) (configurable with
/// [`RateLimitLayer::on_missing_key`](crate::RateLimitLayer::on_missing_key)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    status: StatusCode,
    reason: &'static str,
}

impl KeyError {
    /// A key error answered with `status`.
    pub const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }

    /// The status the request is answered with by default.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was missing or wrong.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for KeyError {}

/// Finds the caller of a request.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The caller of the request whose head is `request`.
    fn extract(&self, request: &RequestHead<'_>) -> Result<Identity<'static>, KeyError>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestHead<'_>) -> Result<Identity<'static>, KeyError> + Send + Sync + 'static,
{
    fn extract(&self, request: &RequestHead<'_>) -> Result<Identity<'static>, KeyError> {
        self(request)
    }
}

/// One caller for every request (a single shared counter per rule).
#[derive(Debug, Clone, Copy, Default)]
pub struct Everyone;

impl KeyExtractor for Everyone {
    fn extract(&self, _: &RequestHead<'_>) -> Result<Identity<'static>, KeyError> {
        Ok(Identity::key(b"*"))
    }
}

/// The client's address. See the [module docs](self) on forwarding headers;
/// the rules are core's [`ClientIp`], shared with the actix-web adapter.
#[derive(Debug, Clone, Default)]
pub struct PeerIp {
    resolver: ClientIp,
}

impl PeerIp {
    /// The TCP peer's address, no trusted proxies, IPv6 grouped by /64.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust forwarding headers from peers in `proxies` (e.g. your load
    /// balancers' subnet). Repeatable.
    #[must_use]
    pub fn trust_proxy(mut self, proxies: IpNet) -> Self {
        self.resolver = self.resolver.trust_proxy(proxies);
        self
    }

    /// Group IPv6 clients by this prefix length (default 64; 128 keeps every
    /// address apart).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.resolver = self.resolver.ipv6_prefix(bits);
        self
    }

    /// The client address for a request whose TCP peer is `peer`.
    pub fn client_ip(&self, peer: IpAddr, request: &RequestHead<'_>) -> IpAddr {
        self.resolver.resolve(peer, |name| {
            request
                .headers()
                .get_all(name)
                .into_iter()
                .map(|v| v.as_bytes())
        })
    }
}

/// The TCP peer of a request, from axum's `ConnectInfo<SocketAddr>`.
fn peer_of(request: &RequestHead<'_>) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    request.extensions().get::<SocketAddr>().map(SocketAddr::ip)
}

impl PeerIp {
    /// The client address of `request`, if its peer address is known.
    fn find(&self, request: &RequestHead<'_>) -> Option<IpAddr> {
        peer_of(request).map(|peer| self.client_ip(peer, request))
    }
}

impl KeyExtractor for PeerIp {
    fn extract(&self, request: &RequestHead<'_>) -> Result<Identity<'static>, KeyError> {
        let ip = self.find(request).ok_or(KeyError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no peer address: serve with into_make_service_with_connect_info::<SocketAddr>()",
        ))?;
        Ok(Identity::ip(ip))
    }
}

/// Whether a header names a user or a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// The header carries a user id.
    User,
    /// The header carries a service id.
    Service,
}

/// A caller id from a request header (e.g. `x-user-id` set by your gateway).
/// A request without the header gets the key error.
#[derive(Debug, Clone)]
pub struct HeaderId {
    name: HeaderName,
    kind: IdKind,
}

impl HeaderId {
    /// Reads `name` as a user or service id.
    pub fn new(name: HeaderName, kind: IdKind) -> Self {
        Self { name, kind }
    }

    fn read<'r>(&self, request: &RequestHead<'r>) -> Option<Identity<'r>> {
        let value = request.headers().get(&self.name)?.as_bytes();
        if value.is_empty() {
            return None;
        }
        Some(match self.kind {
            IdKind::User => Identity::user(value),
            IdKind::Service => Identity::service(value),
        })
    }
}

impl KeyExtractor for HeaderId {
    fn extract(&self, request: &RequestHead<'_>) -> Result<Identity<'static>, KeyError> {
        self.read(request)
            .map(Identity::into_owned)
            .ok_or(KeyError::new(
                StatusCode::BAD_REQUEST,
                "the identity header is missing or empty",
            ))
    }
}

/// `x-user-id` → that user; else `x-service-id` → that service; else the
/// client address ([`PeerIp`], whose proxy settings apply). The client
/// address is a facet of every identity it finds when the peer address is
/// known, so `ip:*` rules count users by address too (a login limit per
/// address, whatever user id a request claims).
#[derive(Debug, Clone)]
pub struct UserServiceOrIp {
    user: HeaderId,
    service: HeaderId,
    ip: PeerIp,
}

impl UserServiceOrIp {
    /// With the default headers and `ip` for anonymous callers.
    pub fn new(ip: PeerIp) -> Self {
        Self {
            user: HeaderId::new(HeaderName::from_static("x-user-id"), IdKind::User),
            service: HeaderId::new(HeaderName::from_static("x-service-id"), IdKind::Service),
            ip,
        }
    }
}

impl Default for UserServiceOrIp {
    fn default() -> Self {
        Self::new(PeerIp::new())
    }
}

impl KeyExtractor for UserServiceOrIp {
    fn extract(&self, request: &RequestHead<'_>) -> Result<Identity<'static>, KeyError> {
        let Some(id) = self
            .user
            .read(request)
            .or_else(|| self.service.read(request))
        else {
            return self.ip.extract(request);
        };
        let id = match self.ip.find(request) {
            Some(ip) => id.with_ip(ip),
            None => id,
        };
        Ok(id.into_owned())
    }
}

/// An [`Identity`] placed in the request extensions by an earlier layer
/// (typically authentication). A request without one gets 401.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionId;

impl KeyExtractor for ExtensionId {
    fn extract(&self, request: &RequestHead<'_>) -> Result<Identity<'static>, KeyError> {
        request
            .extensions()
            .get::<Identity<'static>>()
            .cloned()
            .ok_or(KeyError::new(
                StatusCode::UNAUTHORIZED,
                "no authenticated identity",
            ))
    }
}
