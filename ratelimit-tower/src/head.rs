//! [`RequestHead`]: a request as the shared code reads it.

use std::net::{IpAddr, SocketAddr};

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use ratelimit_core::Identity;
use ratelimit_core::http::RequestView;

/// A borrowed view of a request's head — method, URI, version, headers and
/// extensions — without its body: what key extractors and cost functions
/// read, through [`RequestView`].
///
/// The layer borrows the request where it is, so a check does not split the
/// request into its parts and join them again.
///
/// ```
/// use http::Request;
/// use ratelimit_core::http::RequestView;
/// use ratelimit_tower::RequestHead;
///
/// let request = Request::post("/upload").header("x-bulk", "1").body(()).unwrap();
/// let head = RequestHead::from(&request);
/// assert_eq!(head.method(), "POST");
/// assert_eq!(head.header("x-bulk"), Some(&b"1"[..]));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    version: Version,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The request URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions (axum's `ConnectInfo`, an identity an earlier
    /// layer stored, ...).
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

impl RequestView for RequestHead<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(http::HeaderValue::as_bytes)
    }

    fn header_values<'h>(&'h self, name: &str) -> Box<dyn Iterator<Item = &'h [u8]> + 'h> {
        Box::new(
            self.headers
                .get_all(name)
                .into_iter()
                .map(http::HeaderValue::as_bytes),
        )
    }

    fn peer_ip(&self) -> Option<IpAddr> {
        #[cfg(feature = "axum")]
        if let Some(info) = self
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(info.0.ip());
        }
        self.extensions.get::<SocketAddr>().map(SocketAddr::ip)
    }

    fn identity(&self) -> Option<&Identity<'static>> {
        self.extensions.get::<Identity<'static>>()
    }

    fn method(&self) -> &str {
        self.method.as_str()
    }

    fn path(&self) -> &str {
        self.uri.path()
    }
}

impl<'a, B> From<&'a Request<B>> for RequestHead<'a> {
    fn from(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            version: request.version(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

impl<'a> From<&'a Parts> for RequestHead<'a> {
    fn from(parts: &'a Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}
