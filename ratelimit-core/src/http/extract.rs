//! Who is calling: [`KeyExtractor`] and the extractors both adapters offer.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::RequestView;
use crate::Identity;
use crate::identity::ClientIp;

/// Why no identity could be found for a request. The adapters answer with
/// [`status`](Self::status) unless told otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    status: u16,
    reason: &'static str,
}

impl KeyError {
    /// A key error answered with the HTTP status `status`.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        Self { status, reason }
    }

    /// The HTTP status the request is answered with by default.
    pub const fn status(&self) -> u16 {
        self.status
    }

    /// What was missing or wrong.
    pub const fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for KeyError {}

/// Finds who makes a request. Any `Fn(&dyn RequestView) -> Result<Identity,
/// KeyError>` is one.
///
/// | extractor | identity |
/// |---|---|
/// | [`PeerIp`] | the client address: the TCP peer, or the forwarded client when the peer is a trusted proxy |
/// | [`HeaderId`] | a user or service id from a request header |
/// | [`ApiKey`] | an API key from a request header (a secret: stored and logged only as a digest) |
/// | [`UserServiceOrIp`] | `x-user-id` → that user; else `x-service-id` → that service; else the client address — with the address as a facet whenever it is known |
/// | [`ExtensionId`] | an [`Identity`] an earlier (authentication) layer attached |
/// | [`Everyone`] | one caller for all requests |
///
/// **Forwarding headers are spoofable.** `Forwarded`, `X-Forwarded-For` and
/// `X-Real-IP` are read only when the TCP peer is a proxy configured with
/// [`PeerIp::trust_proxy`]; otherwise any client could pick its own key.
/// IPv4-mapped IPv6 addresses are read as IPv4, and IPv6 clients are
/// grouped by prefix (default /64), so one host cannot escape its limit by
/// rotating addresses in its own subnet.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The identity of `request`, borrowing from it where it can.
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError>;
}

impl<F> KeyExtractor for F
where
    F: for<'r> Fn(&'r dyn RequestView) -> Result<Identity<'r>, KeyError> + Send + Sync + 'static,
{
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        self(request)
    }
}

impl<E: KeyExtractor + ?Sized> KeyExtractor for Arc<E> {
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        (**self).extract(request)
    }
}

/// One caller for every request (a single shared counter per rule).
#[derive(Debug, Clone, Copy, Default)]
pub struct Everyone;

impl KeyExtractor for Everyone {
    fn extract<'r>(&self, _: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        Ok(Identity::key(b"*"))
    }
}

/// The client's address (see the forwarding-header warning on
/// [`KeyExtractor`]). A request whose peer address is unknown gets 500: the
/// server is set up without it (axum: serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`).
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

    /// The client address of `request`, if its peer address is known.
    pub fn client_ip(&self, request: &dyn RequestView) -> Option<IpAddr> {
        let peer = request.peer_ip()?;
        Some(
            self.resolver
                .resolve(peer, |name| request.header_values(name)),
        )
    }
}

impl KeyExtractor for PeerIp {
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        self.client_ip(request)
            .map(Identity::ip)
            .ok_or(KeyError::new(500, PEER_UNKNOWN))
    }
}

/// Why [`PeerIp`] found no address: the server is set up without it.
const PEER_UNKNOWN: &str = "the peer's address is unknown (axum: serve with \
     into_make_service_with_connect_info::<SocketAddr>())";

/// Which facet a header's id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdKind {
    /// The header carries a user id.
    User,
    /// The header carries a service id.
    Service,
    /// The header carries a key of the application's own (a tenant, ...).
    Custom,
}

/// A caller id from a request header (e.g. `x-user-id` set by your gateway,
/// or `x-tenant` as a custom key).
/// A request without the header gets 400.
#[derive(Debug, Clone)]
pub struct HeaderId {
    name: Arc<str>,
    kind: IdKind,
}

impl HeaderId {
    /// Reads the header `name` as a user or service id.
    pub fn new(name: &str, kind: IdKind) -> Self {
        Self {
            name: name.to_ascii_lowercase().into(),
            kind,
        }
    }

    fn read<'r>(&self, request: &'r dyn RequestView) -> Option<Identity<'r>> {
        let value = request.header(&self.name).filter(|v| !v.is_empty())?;
        Some(match self.kind {
            IdKind::User => Identity::user(value),
            IdKind::Service => Identity::service(value),
            IdKind::Custom => Identity::custom(value),
        })
    }
}

impl KeyExtractor for HeaderId {
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        self.read(request).ok_or(KeyError::new(
            400,
            "the identity header is missing or empty",
        ))
    }
}

/// An API key from a request header (default `x-api-key`), with the client
/// address as a facet when it is known. The key is a secret: it is written
/// into store keys and logs only as a digest. A request without the header
/// gets 401.
#[derive(Debug, Clone)]
pub struct ApiKey {
    name: Arc<str>,
    ip: PeerIp,
}

impl ApiKey {
    /// Reads the key from the header `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_ascii_lowercase().into(),
            ip: PeerIp::new(),
        }
    }

    /// Finds the client address (a facet of the identity) with `ip`.
    #[must_use]
    pub fn client_ip(mut self, ip: PeerIp) -> Self {
        self.ip = ip;
        self
    }
}

impl Default for ApiKey {
    /// The `x-api-key` header.
    fn default() -> Self {
        Self::new("x-api-key")
    }
}

impl KeyExtractor for ApiKey {
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        let key = request
            .header(&self.name)
            .filter(|v| !v.is_empty())
            .ok_or(KeyError::new(401, "no API key"))?;
        let identity = Identity::key(key);
        Ok(match self.ip.client_ip(request) {
            Some(ip) => identity.with_ip(ip),
            None => identity,
        })
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
    /// With the default headers and `ip` for the client address.
    pub fn new(ip: PeerIp) -> Self {
        Self {
            user: HeaderId::new("x-user-id", IdKind::User),
            service: HeaderId::new("x-service-id", IdKind::Service),
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
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        let Some(id) = self
            .user
            .read(request)
            .or_else(|| self.service.read(request))
        else {
            return self.ip.extract(request);
        };
        Ok(match self.ip.client_ip(request) {
            Some(ip) => id.with_ip(ip),
            None => id,
        })
    }
}

/// An [`Identity`] an earlier layer (typically authentication) put in the
/// request extensions. A request without one gets 401.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtensionId;

impl KeyExtractor for ExtensionId {
    fn extract<'r>(&self, request: &'r dyn RequestView) -> Result<Identity<'r>, KeyError> {
        request
            .identity()
            .map(Identity::borrowed)
            .ok_or(KeyError::new(401, "no authenticated identity"))
    }
}
