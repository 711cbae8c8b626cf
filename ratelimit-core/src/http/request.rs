//! [`RequestView`]: what the shared adapter code reads of a request.

use std::net::IpAddr;

use crate::Identity;

/// A framework's request as the shared adapter code reads it: headers, the
/// peer's address, an identity an earlier (authentication) layer attached,
/// the method and the path. The tower adapter implements it for http 1.x
/// requests, the actix-web adapter for actix's; key extractors and cost
/// functions written against it work in both.
///
/// ```
/// use std::net::IpAddr;
/// use ratelimit_core::Identity;
/// use ratelimit_core::http::RequestView;
///
/// /// A request as a test writes it.
/// struct Fake(Vec<(&'static str, &'static str)>);
///
/// impl RequestView for Fake {
///     fn header(&self, name: &str) -> Option<&[u8]> {
///         self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes())
///     }
///     fn header_values<'a>(&'a self, name: &str) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
///         let name = name.to_owned();
///         Box::new(self.0.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_bytes()))
///     }
///     fn peer_ip(&self) -> Option<IpAddr> {
///         Some([127, 0, 0, 1].into())
///     }
///     fn identity(&self) -> Option<&Identity<'static>> {
///         None
///     }
///     fn method(&self) -> &str {
///         "GET"
///     }
///     fn path(&self) -> &str {
///         "/"
///     }
/// }
///
/// assert_eq!(Fake(vec![("x-user-id", "7")]).header("x-user-id"), Some(&b"7"[..]));
/// ```
pub trait RequestView {
    /// The first value of the header `name` (lower case).
    fn header(&self, name: &str) -> Option<&[u8]>;

    /// Every value of the header `name` (lower case), in order. Read only
    /// for forwarding headers from a trusted proxy.
    fn header_values<'a>(&'a self, name: &str) -> Box<dyn Iterator<Item = &'a [u8]> + 'a>;

    /// The TCP peer's address, if the framework knows it.
    fn peer_ip(&self) -> Option<IpAddr>;

    /// The identity an earlier layer put in the request's extensions.
    fn identity(&self) -> Option<&Identity<'static>>;

    /// The request method (`GET`, `POST`, ...).
    fn method(&self) -> &str;

    /// The request path, without the query.
    fn path(&self) -> &str;
}
