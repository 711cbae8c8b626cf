//! [`FieldValue`]: one header field's value, ready to hand to any HTTP
//! library without a copy.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A header field's value: text in a [`Bytes`] buffer. The values
/// [`values`](super::values) makes are always visible ASCII; one made from
/// any other `String` is checked by the header type it is handed to (the
/// adapters skip a value their `HeaderValue` rejects).
///
/// Adapters take the buffer with [`into_bytes`](Self::into_bytes) (http's
/// and actix-web's `HeaderValue::from_maybe_shared` keep it without
/// copying). Cloning one shares its buffer, which is how a value
/// remembered between responses (the `RateLimit-Policy` list) is handed
/// out without being formatted or copied again. It reads as a `&str`.
///
/// ```
/// use ratelimit_core::http::FieldValue;
///
/// let value = FieldValue::from(String::from("\"default\";q=10;w=1"));
/// assert_eq!(&*value, "\"default\";q=10;w=1");
/// assert_eq!(value.into_bytes(), "\"default\";q=10;w=1".as_bytes());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FieldValue(Bytes);

impl FieldValue {
    /// The value as text.
    pub fn as_str(&self) -> &str {
        // Only made from `String`s (`From<String>`), so always UTF-8; the
        // check is kept instead of `unsafe`, and runs only when text is
        // asked for, never on an adapter's path.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The buffer, for a header type that takes [`Bytes`].
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<String> for FieldValue {
    fn from(text: String) -> Self {
        // Takes the `String`'s buffer; no copy.
        Self(Bytes::from(text))
    }
}

impl Deref for FieldValue {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for FieldValue {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for FieldValue {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Debug for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
