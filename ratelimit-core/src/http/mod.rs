//! What both HTTP adapters share, written once: the [`RequestView`] they
//! read a request through, the key extractors, the [`Gate`] a request
//! passes (identity, rules, cost, the verdict's header fields, the refusal),
//! and the header values of a [`Verdict`](crate::Verdict) — so the tower layer and the
//! actix-web middleware decide alike and send byte-identical headers.
//!
//! The fields follow draft-ietf-httpapi-ratelimit-headers (revision 11):
//! structured-field lists with one item per enforced rule, named by rule id.
//!
//! ```text
//! RateLimit-Policy: "default";q=10;w=1, "global";q=1000;w=1
//! RateLimit: "default";r=7;t=1, "global";r=990;t=1
//! Retry-After: 1                       (denied requests only)
//! X-RateLimit-Limit: 10                (optional, the binding rule)
//! X-RateLimit-Remaining: 7
//! X-RateLimit-Reset: 1                 (seconds from now)
//! ```
//!
//! - `q` is the rule's limit and `w` its window in whole seconds (rounded
//!   up; the draft has no sub-second windows, so a 500 ms window reads 1).
//! - `r` is what the caller can still spend now. `t` is, for an admitting
//!   rule, the seconds until the caller's counter is fully rested (rounded
//!   up), and for a denying rule the seconds until a retry can succeed — so
//!   `Retry-After` is never earlier than the end of any `t`, as the draft
//!   asks.
//! - Shadow rules are not advertised: they do not limit the caller.
//!
//! ```
//! use std::sync::Arc;
//! use ratelimit_core::{http as headers, DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
//! limiter.add_rule("default", Target::Each, 10, std::time::Duration::from_secs(1)).await?;
//! let verdict = limiter.check(&Identity::user("1"), &Rules::one("default"), 1).await?;
//! let values = headers::values(&verdict, false);
//! assert_eq!(values.rate_limit_policy.as_deref(), Some("\"default\";q=10;w=1"));
//! assert_eq!(values.rate_limit.as_deref(), Some("\"default\";r=9;t=1"));
//! assert_eq!(values.retry_after, None);
//! # Ok(())
//! # }
//! ```

mod extract;
mod field_value;
mod fields;
mod future;
mod gate;
mod list;
mod policy_memo;
mod request;
mod responders;
mod sink;

pub use extract::{
    ApiKey, Everyone, ExtensionId, HeaderId, IdKind, KeyError, KeyExtractor, PeerIp,
    UserServiceOrIp,
};
pub use field_value::FieldValue;
pub use fields::{
    HeaderOptions, HeaderValues, LegacyValues, RATE_LIMIT, RATE_LIMIT_POLICY, RETRY_AFTER,
    X_RATE_LIMIT_LIMIT, X_RATE_LIMIT_REMAINING, X_RATE_LIMIT_RESET, values, values_with,
};
pub use future::{Admit, Passing};
pub use gate::{Entry, Gate, Passage, Pending, Refusal};
pub use request::RequestView;
pub use responders::Responders;
pub use sink::{Field, FieldSink};
