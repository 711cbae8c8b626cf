//! [`Settings`]: what a [`RateLimitLayer`](crate::RateLimitLayer) and its
//! services share, and the responses they make themselves.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode};
use ratelimit_core::http::{Gate, KeyError, Refusal, Responders};

/// What a layer and its services share.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) gate: Gate,
    pub(crate) responders: Responders<Response<String>>,
}

impl Settings {
    pub(crate) fn new(gate: Gate) -> Self {
        Self {
            gate,
            responders: Responders::new(),
        }
    }

    /// The response to a refused request, without its header fields.
    pub(crate) fn refusal<B: From<String> + From<&'static str>>(
        &self,
        refusal: &Refusal<HeaderValue>,
    ) -> Response<B> {
        if let Some(response) = self.responders.denied(refusal) {
            return response.map(B::from);
        }
        let body = match refusal.body() {
            // The default denial's body: no allocation, no copy.
            Cow::Borrowed(text) => B::from(text),
            Cow::Owned(text) => B::from(text),
        };
        plain(refusal.status(), body)
    }

    /// The response to a request whose caller cannot be found.
    pub(crate) fn missing_key<B: From<String>>(&self, error: &KeyError) -> Response<B> {
        match self.responders.missing_key(error) {
            Some(response) => response.map(B::from),
            None => plain(error.status(), B::from(format!("{}\n", error.reason()))),
        }
    }
}

fn plain<B>(status: u16, body: B) -> Response<B> {
    // Checked at compile time: `from_static` at run time checks every byte
    // of it on every refusal.
    const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, TEXT_PLAIN);
    response
}
