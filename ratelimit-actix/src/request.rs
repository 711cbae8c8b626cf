//! [`RequestView`] for actix-web's `HttpRequest`.

use std::cell::Ref;
use std::net::IpAddr;

use actix_web::HttpMessage;
use actix_web::HttpRequest;
use actix_web::dev::Extensions;
use ratelimit_core::Identity;
use ratelimit_core::http::RequestView;

/// An actix-web request as the shared code reads it. Holds the request's
/// extensions borrowed: drop it before the request goes on.
pub(crate) struct ActixRequest<'a> {
    request: &'a HttpRequest,
    extensions: Ref<'a, Extensions>,
}

impl<'a> ActixRequest<'a> {
    pub(crate) fn new(request: &'a HttpRequest) -> Self {
        Self {
            request,
            extensions: request.extensions(),
        }
    }
}

impl RequestView for ActixRequest<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.request
            .headers()
            .get(name)
            .map(actix_web::http::header::HeaderValue::as_bytes)
    }

    fn header_values<'h>(&'h self, name: &str) -> Box<dyn Iterator<Item = &'h [u8]> + 'h> {
        Box::new(
            self.request
                .headers()
                .get_all(name)
                .map(actix_web::http::header::HeaderValue::as_bytes),
        )
    }

    fn peer_ip(&self) -> Option<IpAddr> {
        self.request.peer_addr().map(|peer| peer.ip())
    }

    fn identity(&self) -> Option<&Identity<'static>> {
        self.extensions.get::<Identity<'static>>()
    }

    fn method(&self) -> &str {
        self.request.method().as_str()
    }

    fn path(&self) -> &str {
        self.request.path()
    }
}
