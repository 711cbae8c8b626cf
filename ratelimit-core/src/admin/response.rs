//! The management API's outputs: JSON views of rules and decisions, and
//! [`AdminResponse`], what an adapter sends.

use serde::Serialize;
use serde_json::Number;

use super::AdminError;
use crate::{Rule, Verdict};

/// A rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RuleView {
    /// The id.
    pub id: String,
    /// `*`, `global`, `user:ID` or `service:ID`.
    pub target: String,
    /// Requests per window.
    pub limit: u32,
    /// The window in milliseconds (fractional only for rules made in code
    /// with a sub-millisecond window).
    pub window_ms: Number,
    /// The burst in force (the limit unless set).
    pub burst: u32,
    /// The priority in force.
    pub priority: i32,
    /// Whether the rule only reports.
    pub shadow: bool,
    /// The rule's own failure policy (`null`: the limiter's default).
    pub failure_policy: Option<&'static str>,
    /// Hot-key mode's batch size; left out when off.
    #[serde(skip_serializing_if = "is_zero")]
    pub batch: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl From<&Rule> for RuleView {
    fn from(rule: &Rule) -> Self {
        let quota = rule.quota();
        let micros = quota.window_micros();
        let window_ms = if micros.is_multiple_of(1_000) {
            Number::from(micros / 1_000)
        } else {
            #[allow(clippy::cast_precision_loss)] // windows are at most a year
            let ms = micros as f64 / 1_000.0;
            Number::from_f64(ms).unwrap_or_else(|| Number::from(micros / 1_000))
        };
        Self {
            id: rule.id().to_string(),
            target: rule.target().to_string(),
            limit: quota.limit(),
            window_ms,
            burst: quota.burst(),
            priority: rule.priority(),
            shadow: rule.is_shadow(),
            failure_policy: rule.failure_policy().map(|p| p.as_str()),
            batch: rule.batch(),
        }
    }
}

/// `GET /admin/rules`: every rule, ordered by id, and the rules version.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RulesView {
    /// The version of the rules in force on the answering instance.
    pub version: u64,
    /// The rules.
    pub rules: Vec<RuleView>,
}

/// One rule and the rules version after the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RuleChanged {
    /// The version of the rules in force after the request.
    pub version: u64,
    /// The rule (for a deletion: the rule removed).
    pub rule: RuleView,
}

/// `GET /admin/status`: what a check of one request would answer now, for
/// one caller and rule, without charging it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StatusView {
    /// The caller, as asked.
    pub target: String,
    /// The rule.
    pub rule: String,
    /// Whether a request of cost 1 would be admitted now.
    pub allowed: bool,
    /// The rule's limit.
    pub limit: u32,
    /// Requests of cost 1 the caller could make now.
    pub remaining: u64,
    /// Until a request could be admitted (0 when it would be now), in
    /// milliseconds rounded up.
    pub retry_after_ms: u64,
    /// Until the caller's counter is fully rested, in milliseconds rounded
    /// up.
    pub reset_after_ms: u64,
}

impl StatusView {
    pub(crate) fn new(target: String, rule: String, verdict: &Verdict) -> Self {
        let decision = verdict.decisions().first().map(|d| d.decision);
        // Rounded up: a client that waits this long is never early.
        let ms = |d: std::time::Duration| {
            u64::try_from(d.as_micros().div_ceil(1_000)).unwrap_or(u64::MAX)
        };
        Self {
            target,
            rule,
            allowed: verdict.allowed(),
            limit: decision.map_or(0, |d| d.limit()),
            remaining: decision.map_or(0, |d| d.remaining()),
            retry_after_ms: decision.map_or(0, |d| ms(d.retry_after())),
            reset_after_ms: decision.map_or(0, |d| ms(d.reset_after())),
        }
    }
}

/// `POST /admin/reset`: the state cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResetView {
    /// The caller, as asked.
    pub target: String,
    /// The rule.
    pub rule: String,
    /// Always `true`: the caller's counter for the rule is gone.
    pub reset: bool,
}

/// What an adapter sends back: a status, JSON body and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    status: u16,
    body: String,
}

impl AdminResponse {
    pub(crate) fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_string(value) {
            Ok(mut body) => {
                body.push('\n');
                Self { status, body }
            }
            Err(error) => Self {
                status: 500,
                body: format!(
                    "{{\"error\":\"internal\",\"message\":{:?}}}\n",
                    error.to_string()
                ),
            },
        }
    }

    pub(crate) fn error(error: &AdminError) -> Self {
        Self::json(error.status(), error)
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The JSON body (one line, ending in a newline).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body, owned.
    pub fn into_body(self) -> String {
        self.body
    }

    /// The headers to send, as `(lower-case name, value)` pairs:
    /// `content-type`, and `www-authenticate` on a 401.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        let challenge = (self.status == 401).then_some(("www-authenticate", "Bearer"));
        std::iter::once(("content-type", "application/json")).chain(challenge)
    }
}
