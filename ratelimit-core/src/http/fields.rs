//! The rate-limit header fields of a response, made from a [`Verdict`].

use std::time::Duration;

use crate::Verdict;

use super::field_value::FieldValue;
use super::list::{Item, list};
use super::policy_memo;

/// `RateLimit-Policy`.
pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit`.
pub const RATE_LIMIT: &str = "ratelimit";
/// `Retry-After`.
pub const RETRY_AFTER: &str = "retry-after";
/// `X-RateLimit-Limit` (legacy).
pub const X_RATE_LIMIT_LIMIT: &str = "x-ratelimit-limit";
/// `X-RateLimit-Remaining` (legacy).
pub const X_RATE_LIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// `X-RateLimit-Reset` (legacy, seconds from now).
pub const X_RATE_LIMIT_RESET: &str = "x-ratelimit-reset";

/// The header values for one verdict. `None` means "do not send".
///
/// `P` is the type of the `RateLimit-Policy` value: a [`FieldValue`] from
/// [`values`], or an adapter's own header type from [`values_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderValues<P = FieldValue> {
    /// `RateLimit-Policy`, when any enforced rule decided.
    pub rate_limit_policy: Option<P>,
    /// `RateLimit`, when any enforced rule decided.
    pub rate_limit: Option<FieldValue>,
    /// `Retry-After` (delay-seconds), for a denied request.
    pub retry_after: Option<FieldValue>,
    /// The legacy `X-RateLimit-*` trio, when asked for and a rule decided.
    /// Boxed: off by default, and inline it tripled the size of a value
    /// every admitted request carries to its response (so moves of it were
    /// calls to `memcpy`).
    pub legacy: Option<Box<LegacyValues>>,
}

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`, for the binding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyValues {
    /// `X-RateLimit-Limit`.
    pub limit: FieldValue,
    /// `X-RateLimit-Remaining`.
    pub remaining: FieldValue,
    /// `X-RateLimit-Reset`: seconds until the caller's counter is rested.
    pub reset: FieldValue,
}

impl<P> Default for HeaderValues<P> {
    fn default() -> Self {
        Self {
            rate_limit_policy: None,
            rate_limit: None,
            retry_after: None,
            legacy: None,
        }
    }
}

impl HeaderValues {
    /// Every header to send, owned, as `(lower-case name, value)` pairs, in
    /// the order of [`pairs`](Self::pairs).
    pub fn into_pairs(self) -> impl Iterator<Item = (&'static str, FieldValue)> {
        let (limit, remaining, reset) = match self.legacy.map(|l| *l) {
            Some(l) => (Some(l.limit), Some(l.remaining), Some(l.reset)),
            None => (None, None, None),
        };
        [
            (RATE_LIMIT_POLICY, self.rate_limit_policy),
            (RATE_LIMIT, self.rate_limit),
            (RETRY_AFTER, self.retry_after),
            (X_RATE_LIMIT_LIMIT, limit),
            (X_RATE_LIMIT_REMAINING, remaining),
            (X_RATE_LIMIT_RESET, reset),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
    }

    /// Every header to send, as `(lower-case name, value)` pairs, in a fixed
    /// order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let legacy = self.legacy.as_ref();
        [
            (RATE_LIMIT_POLICY, self.rate_limit_policy.as_deref()),
            (RATE_LIMIT, self.rate_limit.as_deref()),
            (RETRY_AFTER, self.retry_after.as_deref()),
            (X_RATE_LIMIT_LIMIT, legacy.map(|l| l.limit.as_str())),
            (X_RATE_LIMIT_REMAINING, legacy.map(|l| l.remaining.as_str())),
            (X_RATE_LIMIT_RESET, legacy.map(|l| l.reset.as_str())),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| (name, value)))
    }
}

/// Whole seconds, rounded up.
fn seconds_up(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Which header fields an adapter sends, and on which responses — the
/// settings every HTTP adapter keeps, so they decide alike.
///
/// By default both admitted and denied responses carry `RateLimit` and
/// `RateLimit-Policy` (clients see their budget before they run out), and the
/// legacy `X-RateLimit-*` trio is off.
///
/// ```
/// use std::sync::Arc;
/// use ratelimit_core::http::HeaderOptions;
/// use ratelimit_core::{DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
/// limiter.add_rule("default", Target::Each, 1, std::time::Duration::from_secs(60)).await?;
/// let denials_only = HeaderOptions::new().admitted(false);
///
/// let admitted = limiter.check(&Identity::user("1"), &Rules::one("default"), 1).await?;
/// assert_eq!(denials_only.values(&admitted), None);
/// assert!(HeaderOptions::new().values(&admitted).is_some());
///
/// let denied = limiter.check(&Identity::user("1"), &Rules::one("default"), 1).await?;
/// let values = denials_only.values(&denied).expect("a denial carries its fields");
/// assert_eq!(values.retry_after.as_deref(), Some("60"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderOptions {
    legacy: bool,
    admitted: bool,
}

impl Default for HeaderOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderOptions {
    /// The defaults: the draft's fields on every response, no legacy trio.
    pub const fn new() -> Self {
        Self {
            legacy: false,
            admitted: true,
        }
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    #[must_use]
    pub const fn legacy(mut self, on: bool) -> Self {
        self.legacy = on;
        self
    }

    /// Whether admitted responses carry the fields too (default `true`).
    /// With `false` only denials do, and an admitted response goes out as
    /// the application made it: no header to format, insert or send (as
    /// `tower_governor` and `actix-governor` behave by default).
    #[must_use]
    pub const fn admitted(mut self, on: bool) -> Self {
        self.admitted = on;
        self
    }

    /// The header values to add to the response for `verdict`, or `None`
    /// when this response carries none.
    #[inline]
    pub fn values(&self, verdict: &Verdict) -> Option<HeaderValues> {
        self.values_with(verdict, Some)
    }

    /// [`values`](Self::values) with the `RateLimit-Policy` value made by
    /// `make_policy`, as in [`values_with`].
    #[inline]
    pub fn values_with<P: Clone + 'static>(
        &self,
        verdict: &Verdict,
        make_policy: impl FnOnce(FieldValue) -> Option<P>,
    ) -> Option<HeaderValues<P>> {
        (self.admitted || !verdict.allowed())
            .then(|| values_with(verdict, self.legacy, make_policy))
    }
}

/// The header values for `verdict`; `legacy` adds the `X-RateLimit-*` trio.
pub fn values(verdict: &Verdict, legacy: bool) -> HeaderValues {
    values_with(verdict, legacy, Some)
}

/// [`values`], with the `RateLimit-Policy` value turned into an adapter's
/// header type by `make_policy`.
///
/// The policy depends only on the enforced rules, so each thread remembers
/// the last few — the text, and what `make_policy` made of it — and a
/// response whose policy was seen before gets a clone of the value made
/// then: `make_policy` runs once per policy and thread (and again only if
/// it refused, or was last asked for another type). An HTTP library's
/// header type checks every byte it is given; this way it checks the
/// policy's once.
///
/// ```
/// use std::sync::Arc;
/// use ratelimit_core::{http as headers, DistributedRateLimiter, Identity, LimiterConfig, MemoryStore, Rules, Target};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ratelimit_core::Error> {
/// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
/// limiter.add_rule("api", Target::Each, 10, std::time::Duration::from_secs(1)).await?;
/// let mut made = 0;
/// for _ in 0..3 {
///     let verdict = limiter.check(&Identity::user("1"), &Rules::one("api"), 1).await?;
///     let values = headers::values_with(&verdict, false, |policy| {
///         made += 1;
///         Some(policy.into_bytes()) // an HTTP library's `HeaderValue` here
///     });
///     assert_eq!(values.rate_limit_policy.as_deref(), Some(&b"\"api\";q=10;w=1"[..]));
/// }
/// assert_eq!(made, 1);
/// # Ok(())
/// # }
/// ```
pub fn values_with<P: Clone + 'static>(
    verdict: &Verdict,
    legacy: bool,
    make_policy: impl FnOnce(FieldValue) -> Option<P>,
) -> HeaderValues<P> {
    let enforced = verdict.decisions().iter().filter(|d| !d.shadow);
    let policy = enforced.clone().map(|d| Item {
        rule: d.rule.as_str(),
        a: ("\";q=", u64::from(d.decision.limit())),
        b: (";w=", seconds_up(d.decision.window()).max(1)),
    });
    let limit = enforced.map(|d| {
        let decision = &d.decision;
        let t = if decision.allowed() {
            decision.reset_after()
        } else {
            decision.retry_after()
        };
        Item {
            rule: d.rule.as_str(),
            a: ("\";r=", decision.remaining()),
            b: (";t=", seconds_up(t)),
        }
    });
    let number = |n: u64| FieldValue::from(itoa::Buffer::new().format(n).to_owned());
    let retry_after = (!verdict.allowed()).then(|| number(seconds_up(verdict.retry_after())));
    let legacy = if legacy {
        verdict.binding().map(|d| {
            Box::new(LegacyValues {
                limit: number(u64::from(d.decision.limit())),
                remaining: number(d.decision.remaining()),
                reset: number(seconds_up(d.decision.reset_after())),
            })
        })
    } else {
        None
    };
    HeaderValues {
        rate_limit_policy: policy_memo::policy(policy, make_policy),
        rate_limit: list(limit).map(FieldValue::from),
        retry_after,
        legacy,
    }
}
