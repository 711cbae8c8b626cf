//! The scripts and their encoding, for callers who run them themselves (in a
//! pipeline or a `MULTI` block); [`RedisStore`](crate::RedisStore) uses
//! exactly these.
//!
//! Commands come in two forms: `EVALSHA` (the usual one) and `EVAL` with the
//! script's source, which a caller sends after a `NOSCRIPT` reply. Sending the
//! source to the one node that needs it (rather than `SCRIPT LOAD` to every
//! node) keeps recovery working while other nodes of a cluster are down.

use ratelimit_core::Error;
use ratelimit_core::gcra::Stored;
use ratelimit_core::store::{CheckItem, MAX_KEYS_PER_CHECK, Outcome, evaluate};
use redis::{Cmd, Script, Value};
use smallvec::SmallVec;

/// The GCRA check script (`gcra.lua`).
pub fn gcra_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(GCRA_SOURCE))
}

/// The refund script (`refund.lua`), used when a check spans several
/// cluster slots and a later slot denies.
pub fn refund_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(REFUND_SOURCE))
}

const GCRA_SOURCE: &str = include_str!("gcra.lua");
const REFUND_SOURCE: &str = include_str!("refund.lua");

/// How a script command names its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `EVALSHA sha …`: the script must be cached on the server.
    Sha,
    /// `EVAL source …`: always works, and caches the script on that server.
    Source,
}

/// A script command with room for `args` more arguments of `bytes` bytes
/// in all, so that filling it allocates nothing more: its two buffers are
/// sized once.
fn script_cmd(
    script: &Script,
    source: &str,
    form: Form,
    keys: usize,
    args: usize,
    bytes: usize,
) -> Cmd {
    let (name, body) = match form {
        Form::Sha => ("EVALSHA", script.get_hash()),
        Form::Source => ("EVAL", source),
    };
    let mut cmd = Cmd::with_capacity(
        args.saturating_add(3),
        bytes.saturating_add(name.len() + body.len() + 2),
    );
    cmd.arg(name).arg(body).arg(keys);
    cmd
}

/// The most bytes a number argument takes.
const NUMBER: usize = 20;

/// The command checking `items` (validated by the caller with
/// `ratelimit_core::store::validate_items`, all in one cluster slot): charge them if
/// `charge` (and reserve what their [`reserve`](CheckItem::reserve) asks),
/// at `now` microseconds, or at the server's `TIME` when `now` is `None`.
/// Its reply goes to [`decode`].
pub fn check_command(items: &[CheckItem<'_>], charge: bool, now: Option<u64>, form: Form) -> Cmd {
    let reserve = charge && items.iter().any(|item| item.reserve > 0 && !item.shadow);
    let lineage = items.iter().any(|item| !item.lineage.is_original());
    let per_item = match (lineage, reserve) {
        (true, _) => 7,
        (false, true) => 4,
        (false, false) => 2,
    };
    let keys: usize = items.iter().map(|item| item.key.len()).sum();
    let mut cmd = script_cmd(
        gcra_script(),
        GCRA_SOURCE,
        form,
        items.len(),
        items.len() * (1 + per_item) + 2,
        keys + (items.len() * per_item + 2) * NUMBER,
    );
    for item in items {
        cmd.arg(item.key);
    }
    // The mode says what to do and how many arguments each item has.
    cmd.arg(match (lineage, charge, reserve) {
        (false, false, _) => "0",
        (false, true, false) => "1",
        (false, true, true) => "2",
        (true, false, _) => "5",
        (true, true, false) => "6",
        (true, true, true) => "7",
    });
    for item in items {
        cmd.arg(increment(item));
        // A shadow counter's tolerance goes negated (tolerances are below
        // 2^48, so the i64 always holds it).
        let tolerance = i64::try_from(item.quota.tolerance_micros()).unwrap_or(i64::MAX);
        cmd.arg(if item.shadow { -tolerance } else { tolerance });
        if per_item >= 4 {
            cmd.arg(item.quota.interval_micros());
            cmd.arg(if item.shadow || !reserve {
                0
            } else {
                item.reserve
            });
        }
        if per_item == 7 {
            let lineage = &item.lineage;
            cmd.arg(lineage.revision());
            cmd.arg(lineage.previous_interval_micros().unwrap_or(0));
            cmd.arg(lineage.cap_micros(&item.quota));
        }
    }
    if let Some(now) = now {
        cmd.arg(now);
    }
    cmd
}

/// The command giving back what a check charged `items` (one slot).
pub fn refund_command(items: &[CheckItem<'_>], now: Option<u64>, form: Form) -> Cmd {
    let keys: usize = items.iter().map(|item| item.key.len()).sum();
    let mut cmd = script_cmd(
        refund_script(),
        REFUND_SOURCE,
        form,
        items.len(),
        items.len() * 2 + 1,
        keys + (items.len() + 1) * NUMBER,
    );
    for item in items {
        cmd.arg(item.key);
    }
    match now {
        Some(now) => cmd.arg(now),
        None => cmd.arg(""),
    };
    for item in items {
        cmd.arg(increment(item));
    }
    cmd
}

fn increment(item: &CheckItem<'_>) -> u64 {
    item.quota
        .interval_micros()
        .saturating_mul(u64::from(item.cost))
}

/// The check script's reply, checked for shape: how far each counter's
/// TAT was ahead of the script's clock before the check, as read under its
/// item's current revision (converted and capped, see
/// [`gcra::booked`](ratelimit_core::gcra::booked); 0 when absent
/// or rested), in item order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// One value per counter, µs.
    pub aheads: SmallVec<[u64; MAX_KEYS_PER_CHECK]>,
}

impl Reply {
    /// The check's outcome, by the same evaluation the script performed
    /// (GCRA depends only on how far each TAT is ahead of the clock, so it
    /// is evaluated at time 0).
    pub fn outcome(&self, items: &[CheckItem<'_>], charge: bool) -> Outcome {
        // The script read each counter under its item's current revision.
        let stored: SmallVec<[Stored; MAX_KEYS_PER_CHECK]> = items
            .iter()
            .zip(&self.aheads)
            .map(|(item, &ahead)| Stored {
                tat: ahead,
                revision: item.lineage.revision(),
            })
            .collect();
        evaluate(items, &stored, 0, charge).outcome
    }
}

/// Parses the check script's reply for a check of `keys` counters: one
/// integer for one counter, a list of `keys` integers otherwise.
pub fn parse(reply: &Value, keys: usize) -> Result<Reply, Error> {
    let number = |value: &Value| match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    };
    let aheads: Option<SmallVec<[u64; MAX_KEYS_PER_CHECK]>> = match reply {
        Value::Array(values) if keys != 1 && values.len() == keys => {
            values.iter().map(number).collect()
        }
        single if keys == 1 => number(single).map(|n| std::iter::once(n).collect()),
        _ => None,
    };
    aheads
        .map(|aheads| Reply { aheads })
        .ok_or_else(|| Error::InvalidResponse(format!("{reply:?} for {keys} keys")))
}

/// Turns the check script's reply into the check's outcome (see
/// [`Reply::outcome`]).
pub fn decode(items: &[CheckItem<'_>], reply: &Value, charge: bool) -> Result<Outcome, Error> {
    Ok(parse(reply, items.len())?.outcome(items, charge))
}
