//! [`Target`]: whom a rule limits.

use std::fmt;
use std::str::FromStr;

use crate::key::Subject;
use crate::{Caller, Error};

/// See [`Target::MAX_ID_LEN`].
const MAX_TARGET_ID_LEN: usize = Target::MAX_ID_LEN;

/// Whom a rule limits, and whether callers share its counter.
///
/// | target | written | counter |
/// |---|---|---|
/// | [`Target::Each`] | `*` | one per caller: every caller gets the full limit |
/// | [`Target::Global`] | `global` | one for everyone together |
/// | [`Target::User`] | `user:ID` | that user's own (applies to nobody else) |
/// | [`Target::Service`] | `service:ID` | that service's own |
///
/// ```
/// use ratelimit_core::Target;
///
/// let vip: Target = "user:42".parse()?;
/// assert_eq!(vip, Target::User("42".into()));
/// assert_eq!(Target::Each.to_string(), "*");
/// assert!("user:".parse::<Target>().is_err());
/// # Ok::<(), ratelimit_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every caller, each counted separately (the wildcard `*`).
    Each,
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

    /// Parses `*`, `global`, `user:ID` or `service:ID`. Ids are 1 to
    /// [`MAX_ID_LEN`](Self::MAX_ID_LEN) bytes without control characters.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let target = match input {
            "*" => Self::Each,
            "global" => Self::Global,
            _ => match input.split_once(':') {
                Some(("user", id)) => Self::User(id.to_owned()),
                Some(("service", id)) => Self::Service(id.to_owned()),
                _ => {
                    return Err(invalid(
                        input,
                        "expected \"*\", \"global\", \"user:ID\" or \"service:ID\"",
                    ));
                }
            },
        };
        target.validate()?;
        Ok(target)
    }

    /// Checks the id of a user or service target.
    pub fn validate(&self) -> Result<(), Error> {
        let id = match self {
            Self::Each | Self::Global => return Ok(()),
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

    /// Which counter a rule with this target uses for `caller`, or `None` if
    /// the rule does not apply to `caller`.
    pub(crate) fn subject_for<'c>(&self, caller: Caller<'c>) -> Option<Subject<'c>> {
        let applies = match (self, caller) {
            (Self::Each, _) => true,
            (Self::Global, _) => return Some(Subject::Global),
            (Self::User(id), Caller::User(c)) | (Self::Service(id), Caller::Service(c)) => {
                id.as_bytes() == c
            }
            _ => false,
        };
        applies.then_some(Subject::Caller(caller))
    }
}

fn invalid(input: &str, reason: &'static str) -> Error {
    Error::InvalidTarget {
        input: input
            .chars()
            .take(80)
            .collect::<String>()
            .escape_debug()
            .to_string(),
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
        for s in ["*", "global", "user:42", "service:billing", "user:a:b"] {
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
        let vip = Target::User("42".into());
        assert!(vip.subject_for(Caller::user("42")).is_some());
        assert!(vip.subject_for(Caller::user("43")).is_none());
        assert!(vip.subject_for(Caller::service("42")).is_none());
        assert_eq!(
            Target::Global.subject_for(Caller::user("1")),
            Some(Subject::Global)
        );
        assert_eq!(
            Target::Each.subject_for(Caller::key("k")),
            Some(Subject::Caller(Caller::key("k")))
        );
    }
}
