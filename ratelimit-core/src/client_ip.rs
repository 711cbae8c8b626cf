//! [`ClientIp`]: which address a request counts against, for every HTTP
//! adapter alike.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// How a request's client address is found from its TCP peer and headers.
///
/// **Forwarding headers are spoofable.** `Forwarded`, `X-Forwarded-For` and
/// `X-Real-IP` are read only when the TCP peer is one of the proxies
/// configured with [`ClientIp::trust_proxy`]; otherwise any client could
/// pick its own key by sending them. IPv4-mapped IPv6 addresses are
/// normalised to IPv4, and IPv6 clients are grouped by prefix (default /64),
/// so one host cannot escape its limit by rotating addresses in its subnet.
///
/// ```
/// use std::net::IpAddr;
/// use ratelimit_core::identity::ClientIp;
///
/// let direct = ClientIp::new();
/// let behind_lb = ClientIp::new().trust_proxy("10.0.0.0/8".parse().unwrap());
/// let peer: IpAddr = "10.1.2.3".parse().unwrap();
/// let headers = |name: &str| -> Vec<&[u8]> {
///     if name == "x-forwarded-for" { vec![b"203.0.113.9, 10.9.9.9"] } else { vec![] }
/// };
/// // Without trust the header is ignored; with it, the first untrusted hop
/// // from the nearest end is the client.
/// assert_eq!(direct.resolve(peer, headers), peer);
/// assert_eq!(behind_lb.resolve(peer, headers), "203.0.113.9".parse::<IpAddr>().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    ipv6_prefix: u8,
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIp {
    /// The TCP peer's address, no trusted proxies, IPv6 grouped by /64.
    pub fn new() -> Self {
        Self {
            trusted: Vec::new(),
            ipv6_prefix: 64,
        }
    }

    /// Trust forwarding headers from peers in `proxies` (e.g. your load
    /// balancers' subnet). Repeatable.
    #[must_use]
    pub fn trust_proxy(mut self, proxies: IpNet) -> Self {
        self.trusted.push(proxies);
        self
    }

    /// Group IPv6 clients by this prefix length (default 64; 128 keeps every
    /// address apart).
    #[must_use]
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request whose TCP peer is `peer`.
    /// `headers(name)` returns every value of the header `name` (lower
    /// case) as bytes, in order — any framework's header map can answer it.
    pub fn resolve<'h, F, I>(&self, peer: IpAddr, headers: F) -> IpAddr
    where
        F: Fn(&str) -> I,
        I: IntoIterator<Item = &'h [u8]>,
    {
        let peer = peer.to_canonical();
        // Most services trust no proxy: no forwarding header is read then.
        let client = if !self.trusted.is_empty() && self.is_trusted(peer) {
            self.forwarded_client(&headers).unwrap_or(peer)
        } else {
            peer
        };
        self.group(client)
    }

    /// Walks the forwarding chain from the nearest hop back, skipping
    /// trusted proxies: the first untrusted address is the client.
    fn forwarded_client<'h, F, I>(&self, headers: &F) -> Option<IpAddr>
    where
        F: Fn(&str) -> I,
        I: IntoIterator<Item = &'h [u8]>,
    {
        let hops = forwarded_for(headers("forwarded"))
            .or_else(|| address_list(headers("x-forwarded-for")))
            .or_else(|| address_list(headers("x-real-ip")))?;
        let mut last = None;
        for hop in hops.iter().rev() {
            let ip = hop.to_canonical();
            last = Some(ip);
            if !self.is_trusted(ip) {
                return Some(ip);
            }
        }
        last
    }

    fn group(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let bits = u32::from(self.ipv6_prefix);
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(bits))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

/// The addresses of comma-separated header values (`X-Forwarded-For`,
/// `X-Real-IP`), nearest hop last; `None` if absent or unreadable.
fn address_list<'h>(values: impl IntoIterator<Item = &'h [u8]>) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        for item in std::str::from_utf8(value).ok()?.split(',') {
            hops.push(parse_ip(item.trim())?);
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// The `for=` addresses of RFC 7239 `Forwarded`, nearest hop last.
fn forwarded_for<'h>(values: impl IntoIterator<Item = &'h [u8]>) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        for element in std::str::from_utf8(value).ok()?.split(',') {
            for pair in element.split(';') {
                let (key, value) = pair.trim().split_once('=')?;
                if key.trim().eq_ignore_ascii_case("for") {
                    hops.push(parse_ip(value.trim().trim_matches('"'))?);
                }
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// An address as forwarding headers write it: bare, `[v6]`, `[v6]:port` or
/// `v4:port`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|v6| v6.parse().ok())
}
