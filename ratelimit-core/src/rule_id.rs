//! [`RuleId`]: a validated rule name.

use std::borrow::Borrow;
use std::fmt;

use smol_str::SmolStr;

use crate::Error;

/// A rule's name: 1 to [`RuleId::MAX_LEN`] bytes of ASCII letters, digits,
/// `_`, `-` and `.`. Cheap to clone: ids of up to 23 bytes are kept inline
/// and copied, longer ones are shared. No reference count is touched for a
/// short id, so verdicts naming a hot rule do not make every core write to
/// one cache line.
///
/// The narrow alphabet keeps ids safe everywhere they travel: storage keys,
/// metric labels, URLs and headers.
///
/// ```
/// use ratelimit_core::RuleId;
///
/// assert_eq!(RuleId::new("login")?.as_str(), "login");
/// assert!(RuleId::new("").is_err());
/// assert!(RuleId::new("a b").is_err());
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(SmolStr);

impl RuleId {
    /// The longest id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, Error> {
        if id.is_empty() {
            return Err(Error::EmptyRuleId);
        }
        let invalid = |reason| Error::InvalidRuleId {
            id: crate::error::shown(id),
            reason,
        };
        if id.len() > Self::MAX_LEN {
            return Err(invalid("longer than 64 bytes"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(invalid(
                "only ASCII letters, digits, '_', '-' and '.' are allowed",
            ));
        }
        Ok(Self(SmolStr::new(id)))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RuleId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RuleId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for RuleId {
    type Error = Error;

    fn try_from(id: &str) -> Result<Self, Self::Error> {
        Self::new(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert_eq!(RuleId::new(""), Err(Error::EmptyRuleId));
        for bad in ["a:b", "a{b}", "é", "a\0", &"x".repeat(65)] {
            assert!(
                matches!(RuleId::new(bad), Err(Error::InvalidRuleId { .. })),
                "{bad:?}"
            );
        }
        assert!(RuleId::new(&"x".repeat(64)).is_ok());
        assert!(RuleId::new("api.v2_login-1").is_ok());
    }
}
