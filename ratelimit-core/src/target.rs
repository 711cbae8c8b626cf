//! [`Target`]: whom a rule limits.

use std::fmt;
use std::str::FromStr;

use crate::identity::Facet;
use crate::key::Subject;
use crate::{Error, Identity};

/// What [`Target::parse`] accepts.
const EXPECTED: &str = "expected \"*\", \"global\", \"user:*\", \"service:*\", \"key:*\", \"ip:*\", \"custom:*\", \"user:ID\" or \"service:ID\"";

/// See [`Target::MAX_ID_LEN`].
const MAX_TARGET_ID_LEN: usize = Target::MAX_ID_LEN;

/// Whom a rule limits, and which [`Facet`] of a request's [`Identity`] it
/// counts.
///
/// | target | written | counter |
/// |---|---|---|
/// | [`Target::Each`] | `*` | one per caller, by the identity's primary facet |
/// | [`Target::Every`] | `user:*`, `service:*`, `key:*`, `ip:*`, `custom:*` | one per user, service, API key, client address or custom key; a request without that facet is not counted |
/// | [`Target::Global`] | `global` | one for everyone together |
/// | [`Target::User`] | `user:ID` | that user's own (applies to nobody else) |
/// | [`Target::Service`] | `service:ID` | that service's own |
///
/// ```
/// use ratelimit_core::{Target, identity::Facet};
///
/// let vip: Target = "user:42".parse()?;
/// assert_eq!(vip, Target::User("42".into()));
/// assert_eq!("ip:*".parse::<Target>()?, Target::Every(Facet::Ip));
/// assert_eq!(Target::Each.to_string(), "*");
/// assert!("user:".parse::<Target>().is_err());
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every caller, each counted separately by its primary facet (the
    /// wildcard `*`).
    Each,
    /// Every user, service, API key, client address or custom key, each
    /// counted separately (`user:*`, `service:*`, `key:*`, `ip:*`,
    /// `custom:*`).
    Every(Facet),
    /// All callers together, one shared counter.
    Global,
    /// One user.
    User(String),
    /// One service.
    Service(String),
}

impl Target {
    /// The longest user or service id a rule may target, in bytes.
    pub const MAX_ID_LEN: usize = 256;

    /// Parses `*`, `global`, `FACET:*` (`user`, `service`, `key`, `ip` or
    /// `custom`),
    /// `user:ID` or `service:ID`. Ids are 1 to
    /// [`MAX_ID_LEN`](Self::MAX_ID_LEN) bytes without control characters.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let target = match input {
            "*" => Self::Each,
            "global" => Self::Global,
            _ => match input.split_once(':') {
                Some((facet, "*")) => Facet::parse(facet)
                    .map(Self::Every)
                    .ok_or_else(|| invalid(input, EXPECTED))?,
                Some(("user", id)) => Self::User(id.to_owned()),
                Some(("service", id)) => Self::Service(id.to_owned()),
                _ => return Err(invalid(input, EXPECTED)),
            },
        };
        target.validate()?;
        Ok(target)
    }

    /// Checks the id of a user or service target.
    pub fn validate(&self) -> Result<(), Error> {
        let id = match self {
            Self::Each | Self::Global | Self::Every(_) => return Ok(()),
            Self::User(id) | Self::Service(id) => id,
        };
        if id.is_empty() {
            Err(invalid(id, "the id is empty"))
        } else if id.len() > MAX_TARGET_ID_LEN {
            Err(invalid(id, "the id is longer than 256 bytes"))
        } else if id.chars().any(char::is_control) {
            Err(invalid(id, "the id contains control characters"))
        } else {
            Ok(())
        }
    }

    /// Whether this target names one caller (as opposed to `*` or `global`).
    pub fn is_specific(&self) -> bool {
        matches!(self, Self::User(_) | Self::Service(_))
    }

    /// Which counter a rule with this target uses for `identity`, or `None`
    /// if the rule does not apply to it.
    #[inline]
    pub(crate) fn subject_for<'c>(&self, identity: &'c Identity<'_>) -> Option<Subject<'c>> {
        match self {
            Self::Each => Some(Subject::Caller(identity.caller())),
            Self::Global => Some(Subject::Global),
            Self::Every(facet) => identity.facet(*facet).map(Subject::Caller),
            Self::User(id) => (identity.user_id() == Some(id.as_bytes()))
                .then(|| identity.facet(Facet::User).map(Subject::Caller))
                .flatten(),
            Self::Service(id) => (identity.service_id() == Some(id.as_bytes()))
                .then(|| identity.facet(Facet::Service).map(Subject::Caller))
                .flatten(),
        }
    }
}

fn invalid(input: &str, reason: &'static str) -> Error {
    Error::InvalidTarget {
        input: crate::error::shown(input),
        reason,
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Each => f.write_str("*"),
            Self::Global => f.write_str("global"),
            Self::Every(facet) => write!(f, "{facet}:*"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Service(id) => write!(f, "service:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_strings() {
        for s in [
            "*",
            "global",
            "user:42",
            "service:billing",
            "user:a:b",
            "user:*",
            "service:*",
            "key:*",
            "ip:*",
            "custom:*",
        ] {
            assert_eq!(Target::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        let long = format!("user:{}", "x".repeat(MAX_TARGET_ID_LEN + 1));
        for bad in [
            "",
            "all",
            "user:",
            "service:",
            "user:a\nb",
            "ip:1.2.3.4",
            "key:abc",
            "robot:*",
            long.as_str(),
        ] {
            assert!(
                matches!(Target::parse(bad), Err(Error::InvalidTarget { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn specific_targets_apply_only_to_their_caller() {
        use crate::caller::Caller;
        let vip = Target::User("42".into());
        assert!(vip.subject_for(&Identity::user("42")).is_some());
        assert!(vip.subject_for(&Identity::user("43")).is_none());
        assert!(vip.subject_for(&Identity::service("42")).is_none());
        assert_eq!(
            Target::Global.subject_for(&Identity::user("1")),
            Some(Subject::Global)
        );
        assert_eq!(
            Target::Each.subject_for(&Identity::key("k")),
            Some(Subject::Caller(Caller::Hidden(b'k', b"k")))
        );
    }

    #[test]
    fn facet_targets_count_their_facet_or_do_not_apply() {
        use crate::caller::Caller;
        let ip = "10.0.0.1".parse().unwrap();
        let who = Identity::user("7").with_ip(ip);
        assert_eq!(
            Target::Every(Facet::Ip).subject_for(&who),
            Some(Subject::Caller(Caller::Ip(ip)))
        );
        assert_eq!(
            Target::Each.subject_for(&who),
            Some(Subject::Caller(Caller::User(b"7")))
        );
        assert_eq!(Target::Every(Facet::Key).subject_for(&who), None);
        // A named user is found by the user facet, whatever the primary.
        let by_key = Identity::key("k").with_user("7");
        assert!(Target::User("7".into()).subject_for(&by_key).is_some());
    }
}
