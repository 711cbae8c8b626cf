//! The rate-limit header fields of a response: made from a verdict by
//! core's `headers` and inserted into an http `HeaderMap`.

use http::{HeaderMap, HeaderName, HeaderValue, Response};
use ratelimit_core::Verdict;
use ratelimit_core::headers::{self, FieldValue};

use crate::settings::Settings;

#[inline]
pub(crate) fn add_headers<B>(response: &mut Response<B>, values: Option<Values>) {
    // Inlined down to this test: with `admitted_headers` off most admitted
    // responses carry no fields, and need not pay a call to find that out.
    if let Some(values) = values {
        insert_all(response.headers_mut(), values);
    }
}

/// The header values of a response, the `RateLimit-Policy` one already
/// a `HeaderValue`.
pub(crate) type Values = headers::HeaderValues<HeaderValue>;

/// The header values for `verdict` on this response, if any. The policy
/// value is made through core's per-thread memo: a clone of the one made
/// before, its bytes checked once per policy instead of on every response.
#[inline]
pub(crate) fn header_values(settings: &Settings, verdict: &Verdict) -> Option<Values> {
    settings.headers.values_with(verdict, |policy| {
        HeaderValue::from_maybe_shared(policy.into_bytes()).ok()
    })
}

fn insert_all(target: &mut HeaderMap, values: Values) {
    // The names are built at compile time (`from_static` at run time would
    // validate them on every request).
    const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static(headers::RATE_LIMIT_POLICY);
    const RATE_LIMIT: HeaderName = HeaderName::from_static(headers::RATE_LIMIT);
    const RETRY_AFTER: HeaderName = HeaderName::from_static(headers::RETRY_AFTER);
    const X_LIMIT: HeaderName = HeaderName::from_static(headers::X_RATE_LIMIT_LIMIT);
    const X_REMAINING: HeaderName = HeaderName::from_static(headers::X_RATE_LIMIT_REMAINING);
    const X_RESET: HeaderName = HeaderName::from_static(headers::X_RATE_LIMIT_RESET);

    // One by one, not through an array of `(name, Option<String>)`: the
    // admitted path sends two fields, and moving six through an array cost
    // more than inserting them.
    if let Some(value) = values.rate_limit_policy {
        target.insert(RATE_LIMIT_POLICY, value);
    }
    insert(target, RATE_LIMIT, values.rate_limit);
    insert(target, RETRY_AFTER, values.retry_after);
    if let Some(legacy) = values.legacy.map(|l| *l) {
        insert(target, X_LIMIT, Some(legacy.limit));
        insert(target, X_REMAINING, Some(legacy.remaining));
        insert(target, X_RESET, Some(legacy.reset));
    }
}

#[inline]
fn insert(target: &mut HeaderMap, name: HeaderName, value: Option<FieldValue>) {
    // `from_maybe_shared` keeps the value's buffer instead of copying it.
    // The values `headers::values` makes are always valid.
    if let Some(Ok(value)) = value.map(|v| HeaderValue::from_maybe_shared(v.into_bytes())) {
        target.insert(name, value);
    }
}
