//! Runs one of the limiter's check paths `N` times on the in-memory store
//! (rules that never deny), so that `run.sh` can count its instructions
//! per check under callgrind: the count repeats to within a few
//! instructions, where wall-clock times on a shared host do not.
//!
//! ```text
//! ratelimit-check-instructions PATH N
//! ```
//!
//! `PATH`: `one` (`try_check`, one rule), `choice` (`try_check` on a route:
//! `default` and `global`, what the HTTP adapters run), `facets` (`try_check`
//! on a route that also counts the client address: three rules, two facets
//! of one identity) or `three` (`check`, three named rules, awaited). The
//! selections are made once, as an adapter makes them. `N` 0 measures the
//! set-up.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use ratelimit_core::identity::Facet;
use ratelimit_core::{
    DistributedRateLimiter, Error, Identity, LimiterConfig, MemoryStore, Quota, Rule, Rules, Target,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        println!("usage: ratelimit-check-instructions one|choice|facets|three N");
        return ExitCode::FAILURE;
    };
    match run(&path, n) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("unknown path {path:?}: one, choice, facets or three");
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
            .rule(Rule::new("login", Target::Each, quota)?)
            .rule(Rule::new("per-ip", Target::Every(Facet::Ip), quota)?),
    );
    let caller = Identity::user("42");
    let with_ip = Identity::user("42").with_ip(std::net::Ipv4Addr::new(203, 0, 113, 9).into());
    let one = Rules::one("default");
    let route = Rules::route(["default"]);
    let facets = Rules::route(["per-ip", "default"]);
    let three = Rules::named(["default", "global", "login"]);
    let check = |path: &str| -> Option<Result<bool, Error>> {
        let verdict = match path {
            "one" => limiter.try_check(&caller, &one, 1)?,
            "choice" => limiter.try_check(&caller, &route, 1)?,
            "facets" => limiter.try_check(&with_ip, &facets, 1)?,
            "three" => limiter.check(&caller, &three, 1).now_or_never()?,
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
