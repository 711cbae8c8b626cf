//! [`RequestHead`]: what key extractors and cost functions see of a request.

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

/// A borrowed view of a request's head — method, URI, version, headers and
/// extensions — without its body.
///
/// The layer hands this to [`KeyExtractor`](crate::KeyExtractor)s and
/// [`cost`](crate::RateLimitLayer::cost) functions. It borrows the request
/// where it is, so a check does not split the request into its parts and
/// join them again (which moves the whole head twice).
///
/// ```
/// use http::Request;
/// use ratelimit_tower::RequestHead;
///
/// let request = Request::post("/upload").header("x-bulk", "1").body(()).unwrap();
/// let head = RequestHead::from(&request);
/// assert_eq!(head.method(), "POST");
/// assert!(head.headers().contains_key("x-bulk"));
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
    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

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
