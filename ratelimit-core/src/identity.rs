//! [`Identity`]: an owned caller, as HTTP adapters extract it from a request.

use crate::Caller;

/// A caller identity owned by a request's check — what key extractors
/// return, and what an authentication layer puts in the request extensions
/// for the adapters' `ExtensionId` extractor to find.
///
/// ```
/// use ratelimit_core::{Caller, Identity};
///
/// let id = Identity::User(b"42".to_vec());
/// assert_eq!(id.caller(), Caller::user("42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An end user, by id (bytes, kept exactly).
    User(Vec<u8>),
    /// A service, by id.
    Service(Vec<u8>),
    /// A client address.
    Ip(std::net::IpAddr),
    /// An opaque key.
    Key(Vec<u8>),
}

impl Identity {
    /// The identity as the limiter's [`Caller`].
    pub fn caller(&self) -> Caller<'_> {
        match self {
            Self::User(id) => Caller::User(id),
            Self::Service(id) => Caller::Service(id),
            Self::Ip(ip) => Caller::Ip(*ip),
            Self::Key(id) => Caller::Key(id),
        }
    }
}
