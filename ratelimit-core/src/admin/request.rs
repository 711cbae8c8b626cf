//! The management API's inputs, validated field by field so that every
//! refusal names the field at fault: [`RuleSpec`] (PUT), [`RulePatch`]
//! (PATCH) and [`CallerQuery`] (status and reset).

use std::time::Duration;

use serde_json::{Map, Value};

use super::AdminError;
use crate::{FailurePolicy, Quota, Rule, Target};

/// The largest request body the API reads; every valid one is far smaller.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The body of `PUT /admin/rules/{id}`:
/// `{"target": "*" | "global" | "user:ID" | "service:ID", "limit": N,
/// "window_ms": M, "burst"?: B, "priority"?: P, "shadow"?: bool,
/// "failure_policy"?: "fail_open" | "fail_closed" | "local_fallback",
/// "batch"?: N}` (`batch`: see [`Rule::with_batch`]).
///
/// ```
/// use ratelimit_core::admin::RuleSpec;
/// let spec = RuleSpec::from_json(br#"{"target": "user:42", "limit": 100, "window_ms": 60000}"#)?;
/// let rule = spec.into_rule("vip")?;
/// assert_eq!(rule.quota().limit(), 100);
///
/// let refused = RuleSpec::from_json(br#"{"target": "*", "limit": 0, "window_ms": 1000}"#).unwrap_err();
/// assert_eq!((refused.status(), refused.field()), (400, Some("limit")));
/// # Ok::<(), ratelimit_core::admin::AdminError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleSpec {
    /// Whom the rule limits.
    pub target: Target,
    /// Requests per window.
    pub limit: u32,
    /// The window in milliseconds.
    pub window_ms: u64,
    /// The burst, if not the limit.
    pub burst: Option<u32>,
    /// The priority, if not the default for the target.
    pub priority: Option<i32>,
    /// Whether the rule only reports.
    pub shadow: bool,
    /// The rule's own failure policy, if any.
    pub failure_policy: Option<FailurePolicy>,
    /// Hot-key mode's batch size (0: off).
    pub batch: u32,
}

impl RuleSpec {
    /// Parses and validates a JSON body. Unknown fields are refused (a typo
    /// must not silently drop a setting).
    pub fn from_json(body: &[u8]) -> Result<Self, AdminError> {
        let mut fields = object(body)?;
        let target = required(&mut fields, "target")?;
        let target = target
            .as_str()
            .ok_or_else(|| AdminError::invalid("target", "must be a string"))?;
        let target =
            Target::parse(target).map_err(|e| AdminError::invalid("target", e.to_string()))?;
        let limit = limit(&required(&mut fields, "limit")?)?;
        let window_ms = window_ms(&required(&mut fields, "window_ms")?)?;
        let burst = optional(&mut fields, "burst")
            .map(|value| {
                integer(&value, "burst", 1, u64::from(u32::MAX))
                    .and_then(|n| u32::try_from(n).map_err(|_| out_of_range("burst")))
            })
            .transpose()?;
        let priority = optional(&mut fields, "priority")
            .map(|value| {
                value
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| AdminError::invalid("priority", "must be a 32-bit integer"))
            })
            .transpose()?;
        let shadow = optional(&mut fields, "shadow")
            .map(|value| {
                value
                    .as_bool()
                    .ok_or_else(|| AdminError::invalid("shadow", "must be true or false"))
            })
            .transpose()?
            .unwrap_or(false);
        let failure_policy = optional(&mut fields, "failure_policy")
            .map(|value| {
                value
                    .as_str()
                    .ok_or_else(|| AdminError::invalid("failure_policy", "must be a string"))?
                    .parse::<FailurePolicy>()
                    .map_err(|e| AdminError::invalid("failure_policy", e.to_string()))
            })
            .transpose()?;
        let batch = optional(&mut fields, "batch")
            .map(|value| {
                integer(&value, "batch", 0, u64::from(u32::MAX))
                    .and_then(|n| u32::try_from(n).map_err(|_| out_of_range("batch")))
            })
            .transpose()?
            .unwrap_or(0);
        no_more(&fields)?;
        Ok(Self {
            target,
            limit,
            window_ms,
            burst,
            priority,
            shadow,
            failure_policy,
            batch,
        })
    }

    /// The rule with id `id` this spec describes.
    pub fn into_rule(self, id: &str) -> Result<Rule, AdminError> {
        let quota = Quota::from_parts(
            self.limit,
            Duration::from_millis(self.window_ms),
            self.burst,
        )
        .map_err(|e| AdminError::from_limiter(&e))?;
        let mut rule = Rule::new(id, self.target, quota)
            .map_err(|e| AdminError::from_limiter(&e))?
            .with_shadow(self.shadow)
            .with_batch(self.batch);
        if let Some(priority) = self.priority {
            rule = rule.with_priority(priority);
        }
        if let Some(policy) = self.failure_policy {
            rule = rule.with_failure_policy(policy);
        }
        Ok(rule)
    }
}

/// The body of `PATCH /admin/rules/{id}`: `{"limit"?: N, "window_ms"?: M}`,
/// at least one. The rest of the rule is kept (as
/// [`update_rule`](crate::DistributedRateLimiter::update_rule) does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RulePatch {
    /// The new limit, if it changes.
    pub limit: Option<u32>,
    /// The new window in milliseconds, if it changes.
    pub window_ms: Option<u64>,
}

impl RulePatch {
    /// Parses and validates a JSON body.
    pub fn from_json(body: &[u8]) -> Result<Self, AdminError> {
        let mut fields = object(body)?;
        let limit = optional(&mut fields, "limit")
            .map(|v| limit(&v))
            .transpose()?;
        let window_ms = optional(&mut fields, "window_ms")
            .map(|v| window_ms(&v))
            .transpose()?;
        no_more(&fields)?;
        if limit.is_none() && window_ms.is_none() {
            return Err(AdminError::invalid(
                "body",
                "nothing to change: give `limit`, `window_ms` or both",
            ));
        }
        Ok(Self { limit, window_ms })
    }

    /// `rule` with this patch applied (and its validation).
    pub fn apply(&self, rule: &Rule) -> Result<Rule, crate::Error> {
        let quota = rule.quota();
        let limit = self.limit.unwrap_or(quota.limit());
        let window = self.window_ms.map_or(quota.window(), Duration::from_millis);
        Ok(rule.clone().with_quota(quota.with_rate(limit, window)?))
    }
}

/// The query of `GET /admin/status` and `POST /admin/reset`:
/// `target=user:42&rule=login` (URL-encoded). `target` is a caller
/// (`user:ID`, `service:ID`, `ip:ADDR`, `key:ID`), or `global` for a global
/// rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallerQuery {
    /// The caller, as given.
    pub target: String,
    /// The rule id.
    pub rule: String,
}

impl CallerQuery {
    /// Parses a query string (without the `?`).
    pub fn parse(query: &str) -> Result<Self, AdminError> {
        let (mut target, mut rule) = (None, None);
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*name {
                "target" => &mut target,
                "rule" => &mut rule,
                other => return Err(AdminError::invalid(&printable(other), "unknown parameter")),
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(AdminError::invalid(&name, "given twice"));
            }
        }
        let missing = |field| AdminError::invalid(field, "required");
        Ok(Self {
            target: target.ok_or_else(|| missing("target"))?,
            rule: rule.ok_or_else(|| missing("rule"))?,
        })
    }
}

fn object(body: &[u8]) -> Result<Map<String, Value>, AdminError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(AdminError::too_large(MAX_BODY_BYTES));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(AdminError::invalid("body", "expected a JSON object")),
        Err(error) => Err(AdminError::invalid(
            "body",
            format!("malformed JSON: {error}"),
        )),
    }
}

/// Takes a field; `null` counts as absent.
fn optional(fields: &mut Map<String, Value>, name: &str) -> Option<Value> {
    fields.remove(name).filter(|value| !value.is_null())
}

fn required(fields: &mut Map<String, Value>, name: &str) -> Result<Value, AdminError> {
    optional(fields, name).ok_or_else(|| AdminError::invalid(name, "required"))
}

/// Refuses the first field nobody took.
fn no_more(fields: &Map<String, Value>) -> Result<(), AdminError> {
    match fields.keys().next() {
        Some(name) => Err(AdminError::invalid(&printable(name), "unknown field")),
        None => Ok(()),
    }
}

/// A name from the request, shortened and escaped to be safe to echo.
fn printable(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    short.escape_debug().to_string()
}

fn out_of_range(field: &str) -> AdminError {
    AdminError::invalid(field, "out of range")
}

fn integer(value: &Value, field: &str, min: u64, max: u64) -> Result<u64, AdminError> {
    value
        .as_u64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            AdminError::invalid(field, format!("must be an integer from {min} to {max}"))
        })
}

fn limit(value: &Value) -> Result<u32, AdminError> {
    let n = integer(value, "limit", 1, u64::from(u32::MAX))?;
    u32::try_from(n).map_err(|_| out_of_range("limit"))
}

fn window_ms(value: &Value) -> Result<u64, AdminError> {
    let min = u64::try_from(Quota::MIN_WINDOW.as_millis()).unwrap_or(1);
    let max = u64::try_from(Quota::MAX_WINDOW.as_millis()).unwrap_or(u64::MAX);
    integer(value, "window_ms", min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (u16, String) {
        let error = RuleSpec::from_json(body.as_bytes()).unwrap_err();
        (error.status(), error.field().unwrap_or_default().to_owned())
    }

    #[test]
    fn every_bad_field_is_named() {
        let ok = r#""target":"*","limit":5,"window_ms":1000"#;
        for (body, field) in [
            ("{", "body"),
            ("[1]", "body"),
            ("", "body"),
            (r#"{"limit":5,"window_ms":1000}"#, "target"),
            (r#"{"target":"all","limit":5,"window_ms":1000}"#, "target"),
            (r#"{"target":"user:","limit":5,"window_ms":1000}"#, "target"),
            (r#"{"target":7,"limit":5,"window_ms":1000}"#, "target"),
            (r#"{"target":"*","window_ms":1000}"#, "limit"),
            (r#"{"target":"*","limit":0,"window_ms":1000}"#, "limit"),
            (r#"{"target":"*","limit":-1,"window_ms":1000}"#, "limit"),
            (r#"{"target":"*","limit":1.5,"window_ms":1000}"#, "limit"),
            (r#"{"target":"*","limit":"5","window_ms":1000}"#, "limit"),
            (
                r#"{"target":"*","limit":4294967296,"window_ms":1000}"#,
                "limit",
            ),
            (r#"{"target":"*","limit":5}"#, "window_ms"),
            (r#"{"target":"*","limit":5,"window_ms":0}"#, "window_ms"),
            (
                r#"{"target":"*","limit":5,"window_ms":99999999999999}"#,
                "window_ms",
            ),
            (&format!(r#"{{{ok},"burst":0}}"#), "burst"),
            (&format!(r#"{{{ok},"priority":2147483648}}"#), "priority"),
            (&format!(r#"{{{ok},"shadow":"yes"}}"#), "shadow"),
            (
                &format!(r#"{{{ok},"failure_policy":"maybe"}}"#),
                "failure_policy",
            ),
            (&format!(r#"{{{ok},"limt":5}}"#), "limt"),
        ] {
            assert_eq!(refused(body), (400, field.to_owned()), "{body}");
        }
        // More than one per microsecond is caught by the quota.
        let spec =
            RuleSpec::from_json(br#"{"target":"*","limit":4000000000,"window_ms":1}"#).unwrap();
        assert_eq!(spec.into_rule("x").unwrap_err().field(), Some("limit"));
        let spec = RuleSpec::from_json(format!("{{{ok}}}").as_bytes()).unwrap();
        assert_eq!(
            spec.clone().into_rule("a\nb").unwrap_err().field(),
            Some("id")
        );
        assert_eq!(
            spec.into_rule(&"x".repeat(65)).unwrap_err().field(),
            Some("id")
        );
        let huge = format!("{{\"target\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(refused(&huge), (413, "body".to_owned()));
    }

    #[test]
    fn a_full_spec_builds_the_rule_it_says() {
        let spec = RuleSpec::from_json(
            br#"{"target":"service:billing","limit":10,"window_ms":2000,"burst":20,
                 "priority":5,"shadow":true,"failure_policy":"fail_closed"}"#,
        )
        .unwrap();
        let rule = spec.into_rule("billing").unwrap();
        assert_eq!(rule.target(), &Target::Service("billing".to_owned()));
        assert_eq!(rule.quota().limit(), 10);
        assert_eq!(rule.quota().window(), Duration::from_secs(2));
        assert_eq!(rule.quota().burst(), 20);
        assert_eq!(rule.priority(), 5);
        assert!(rule.is_shadow());
        assert_eq!(rule.failure_policy(), Some(FailurePolicy::FailClosed));
        // Nulls are absent.
        let spec = RuleSpec::from_json(
            br#"{"target":"*","limit":1,"window_ms":1,"burst":null,"shadow":null}"#,
        )
        .unwrap();
        assert_eq!((spec.burst, spec.shadow), (None, false));
        // Hot-key mode's batch.
        let spec =
            RuleSpec::from_json(br#"{"target":"global","limit":1000,"window_ms":1000,"batch":32}"#)
                .unwrap();
        assert_eq!(spec.into_rule("all").unwrap().batch(), 32);
        let refused = RuleSpec::from_json(br#"{"target":"*","limit":1,"window_ms":1,"batch":-1}"#)
            .unwrap_err();
        assert_eq!(refused.field(), Some("batch"));
    }

    #[test]
    fn patches_need_something_and_keep_the_rest() {
        assert_eq!(
            RulePatch::from_json(b"{}").unwrap_err().field(),
            Some("body")
        );
        assert_eq!(
            RulePatch::from_json(br#"{"limit":0}"#).unwrap_err().field(),
            Some("limit")
        );
        assert_eq!(
            RulePatch::from_json(br#"{"target":"*"}"#)
                .unwrap_err()
                .field(),
            Some("target")
        );
        let rule = Rule::new("a", Target::Global, Quota::per_second(5).unwrap())
            .unwrap()
            .with_priority(3);
        let patched = RulePatch::from_json(br#"{"limit":7}"#)
            .unwrap()
            .apply(&rule)
            .unwrap();
        assert_eq!(patched.quota().limit(), 7);
        assert_eq!(patched.quota().window(), Duration::from_secs(1));
        assert_eq!((patched.target(), patched.priority()), (&Target::Global, 3));
    }

    #[test]
    fn queries_are_decoded_and_checked() {
        let query = CallerQuery::parse("target=user%3A42&rule=login").unwrap();
        assert_eq!(
            (query.target.as_str(), query.rule.as_str()),
            ("user:42", "login")
        );
        for (query, field) in [
            ("rule=login", "target"),
            ("target=user:1", "rule"),
            ("target=user:1&rule=a&rule=b", "rule"),
            ("target=user:1&rule=a&who=x", "who"),
        ] {
            assert_eq!(
                CallerQuery::parse(query).unwrap_err().field(),
                Some(field),
                "{query}"
            );
        }
    }
}
