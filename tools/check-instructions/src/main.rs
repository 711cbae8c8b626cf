//! Runs one of the limiter's check paths `N` times on the in-memory store
//! (rules that never deny), so that `run.sh` can count its instructions
//! per check under callgrind: the count repeats to within a few
//! instructions, where wall-clock times on a shared host do not.
//!
//! ```text
//! ratelimit-check-instructions PATH N
//! ```
//!
//! `PATH`: `one` (`try_check_now`, one rule), `choice` (`try_check_choice`
//! on a route: `default` and `global`, what the HTTP adapters run) or
//! `three` (`check_rules`, three rules, awaited). `N` 0 measures the set-up.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use ratelimit_core::{
    Caller, DistributedRateLimiter, Error, LimiterConfig, MemoryStore, Quota, Rule, RuleChoice,
    RuleSelection, Target,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        println!("usage: ratelimit-check-instructions one|choice|three N");
        return ExitCode::FAILURE;
    };
    match run(&path, n) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("unknown path {path:?}: one, choice or three");
            ExitCode::FAILURE
        }
        Err(error) => {
            println!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, n: u64) -> Result<bool, Error> {
    let hour = Duration::from_secs(3_600);
    let quota = Quota::new(1_000_000_000, hour)?;
    let limiter = DistributedRateLimiter::new(
        LimiterConfig::new(Arc::new(MemoryStore::new()))
            .rule(Rule::new("default", Target::Each, quota)?)
            .rule(Rule::new("global", Target::Global, quota)?)
            .rule(Rule::new("login", Target::Each, quota)?),
    );
    let caller = Caller::user("42");
    let route = RuleChoice::route(["default"]);
    let check = |path: &str| -> Option<Result<bool, Error>> {
        let verdict = match path {
            "one" => limiter.try_check_now(caller, RuleSelection::One("default"), 1)?,
            "choice" => limiter.try_check_choice(caller, &route, 1)?,
            "three" => limiter
                .check_rules(caller, &["default", "global", "login"], 1)
                .now_or_never()?,
            _ => return None,
        };
        Some(verdict.map(|v| v.allowed()))
    };
    if check(path).is_none() {
        return Ok(false);
    }
    for _ in 0..n {
        if let Some(answer) = check(path) {
            black_box(answer?);
        }
    }
    Ok(true)
}
