//! [`FieldSink`]: a framework's header map, as the shared code fills it.

use bytes::Bytes;

use super::FieldValue;
use super::fields::{
    HeaderValues, RATE_LIMIT, RATE_LIMIT_POLICY, RETRY_AFTER, X_RATE_LIMIT_LIMIT,
    X_RATE_LIMIT_REMAINING, X_RATE_LIMIT_RESET,
};

/// One of the rate-limit header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// `RateLimit-Policy`.
    RateLimitPolicy,
    /// `RateLimit`.
    RateLimit,
    /// `Retry-After`.
    RetryAfter,
    /// `X-RateLimit-Limit`.
    XRateLimitLimit,
    /// `X-RateLimit-Remaining`.
    XRateLimitRemaining,
    /// `X-RateLimit-Reset`.
    XRateLimitReset,
}

impl Field {
    /// Every field, in the order of [`Field`]'s variants (an adapter builds
    /// its header names from this once).
    pub const ALL: [Self; 6] = [
        Self::RateLimitPolicy,
        Self::RateLimit,
        Self::RetryAfter,
        Self::XRateLimitLimit,
        Self::XRateLimitRemaining,
        Self::XRateLimitReset,
    ];

    /// The field's name, lower case.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RateLimitPolicy => RATE_LIMIT_POLICY,
            Self::RateLimit => RATE_LIMIT,
            Self::RetryAfter => RETRY_AFTER,
            Self::XRateLimitLimit => X_RATE_LIMIT_LIMIT,
            Self::XRateLimitRemaining => X_RATE_LIMIT_REMAINING,
            Self::XRateLimitReset => X_RATE_LIMIT_RESET,
        }
    }

    /// The field's position in [`ALL`](Self::ALL).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A framework's header map, as the shared code fills it.
pub trait FieldSink {
    /// The framework's header value.
    type Value: Clone + 'static;

    /// `bytes` (visible ASCII) as a header value, keeping the buffer when
    /// the framework can.
    fn value(bytes: Bytes) -> Option<Self::Value>;

    /// Sets `field` to `value`, replacing what was there.
    fn insert(&mut self, field: Field, value: Self::Value);
}

/// Inserts every field of `values` into `sink`.
pub(super) fn insert_fields<S: FieldSink>(sink: &mut S, values: HeaderValues<S::Value>) {
    // One by one, not through an array: the admitted path sends two fields,
    // and moving six through an array costs more than inserting them.
    if let Some(value) = values.rate_limit_policy {
        sink.insert(Field::RateLimitPolicy, value);
    }
    insert(sink, Field::RateLimit, values.rate_limit);
    insert(sink, Field::RetryAfter, values.retry_after);
    if let Some(legacy) = values.legacy.map(|l| *l) {
        insert(sink, Field::XRateLimitLimit, Some(legacy.limit));
        insert(sink, Field::XRateLimitRemaining, Some(legacy.remaining));
        insert(sink, Field::XRateLimitReset, Some(legacy.reset));
    }
}

#[inline]
fn insert<S: FieldSink>(sink: &mut S, field: Field, value: Option<FieldValue>) {
    if let Some(value) = value.and_then(|v| S::value(v.into_bytes())) {
        sink.insert(field, value);
    }
}

/// A header value from bytes, for a [`FieldSink`] whose value type is
/// `Bytes` itself (tests, or a framework that takes bytes).
impl FieldSink for Vec<(&'static str, Bytes)> {
    type Value = Bytes;

    fn value(bytes: Bytes) -> Option<Bytes> {
        Some(bytes)
    }

    fn insert(&mut self, field: Field, value: Bytes) {
        self.retain(|(name, _)| *name != field.name());
        self.push((field.name(), value));
    }
}
