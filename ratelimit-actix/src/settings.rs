//! [`Settings`]: what a [`RateLimit`](crate::RateLimit) and its middleware
//! instances share, and the responses they make themselves.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use ratelimit_core::http::{Gate, KeyError, Refusal, Responders};

use crate::fields::Fields;

/// What a middleware and its instances share: the gate, and the
/// application's own refusals.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) gate: Gate,
    pub(crate) responders: Responders<HttpResponse>,
}

impl Settings {
    pub(crate) fn new(gate: Gate) -> Self {
        Self {
            gate,
            responders: Responders::new(),
        }
    }

    /// The response to a refused request, header fields included.
    pub(crate) fn refuse(&self, refusal: &mut Refusal<HeaderValue>) -> HttpResponse {
        let mut response = self
            .responders
            .denied(refusal)
            .unwrap_or_else(|| plain(refusal.status()).body(refusal.body()));
        Gate::add_fields(&mut Fields(response.headers_mut()), refusal.take_fields());
        response
    }

    /// The response to a request whose caller cannot be found.
    pub(crate) fn missing_key(&self, error: &KeyError) -> HttpResponse {
        self.responders
            .missing_key(error)
            .unwrap_or_else(|| plain(error.status()).body(format!("{}\n", error.reason())))
    }
}

/// A plain-text response builder with `status`.
fn plain(status: u16) -> actix_web::HttpResponseBuilder {
    // Made at compile time, so a refusal neither checks nor copies it.
    const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    builder.content_type(TEXT_PLAIN);
    builder
}
