//! The GCRA script and its encoding, for callers who run it themselves (in a
//! pipeline or a `MULTI` block); [`RedisStore`](crate::RedisStore) uses
//! exactly these.

use ratelimit_core::{CheckItem, Error, MAX_KEYS_PER_CHECK, Outcome, evaluate};
use redis::{Script, ScriptInvocation};
use smallvec::SmallVec;

/// The GCRA script (`gcra.lua`). Its SHA is computed once.
pub fn gcra_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("gcra.lua")))
}

/// The script call for a check of `items` (validated by the caller with
/// `ratelimit_core::validate_items`): charge them if `charge`, at `now`
/// microseconds, or at the server's `TIME` when `now` is `None`.
pub fn invocation(
    items: &[CheckItem<'_>],
    charge: bool,
    now: Option<u64>,
) -> ScriptInvocation<'static> {
    let mut invocation = gcra_script().prepare_invoke();
    for item in items {
        invocation.key(item.key);
    }
    invocation.arg(if charge { "1" } else { "0" });
    match now {
        Some(now) => invocation.arg(now),
        None => invocation.arg(""),
    };
    for item in items {
        let increment = item
            .quota
            .interval_micros()
            .saturating_mul(u64::from(item.cost));
        invocation
            .arg(increment)
            .arg(item.quota.tolerance_micros())
            .arg(if item.shadow { "1" } else { "0" });
    }
    invocation
}

/// Turns the script's reply — `{now, tat_1, …, tat_n}` — into the check's
/// outcome, with the same evaluation the script performed.
pub fn decode(items: &[CheckItem<'_>], reply: &[u64], charge: bool) -> Result<Outcome, Error> {
    let (&now, tats) = reply
        .split_first()
        .ok_or_else(|| Error::InvalidResponse("an empty reply".into()))?;
    if tats.len() != items.len() || now == 0 {
        return Err(Error::InvalidResponse(format!(
            "{} values for {} keys (time {now})",
            reply.len(),
            items.len()
        )));
    }
    let tats: SmallVec<[u64; MAX_KEYS_PER_CHECK]> = tats.iter().copied().collect();
    Ok(evaluate(items, &tats, now, charge).outcome)
}
