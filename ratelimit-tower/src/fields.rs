//! The rate-limit header fields of a response, inserted into an http
//! `HeaderMap` by core's shared code.

use http::{HeaderMap, HeaderName, HeaderValue};
use ratelimit_core::http::{Field, FieldSink};

/// A response's header map, as core fills it.
pub(crate) struct Fields<'a>(pub(crate) &'a mut HeaderMap);

/// The names, built at compile time (`from_static` at run time would check
/// every byte on every response).
static NAMES: [HeaderName; 6] = {
    let [a, b, c, d, e, f] = Field::ALL;
    [
        HeaderName::from_static(a.name()),
        HeaderName::from_static(b.name()),
        HeaderName::from_static(c.name()),
        HeaderName::from_static(d.name()),
        HeaderName::from_static(e.name()),
        HeaderName::from_static(f.name()),
    ]
};

impl FieldSink for Fields<'_> {
    type Value = HeaderValue;

    #[inline]
    fn value(bytes: bytes::Bytes) -> Option<HeaderValue> {
        // Keeps the buffer instead of copying it.
        HeaderValue::from_maybe_shared(bytes).ok()
    }

    #[inline]
    fn insert(&mut self, field: Field, value: HeaderValue) {
        if let Some(name) = NAMES.get(field.index()) {
            self.0.insert(name.clone(), value);
        }
    }
}
