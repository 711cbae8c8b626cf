//! The actix-web demo: the same command line, routes, rules and identity
//! headers as `example-axum`.
//!
//! ```text
//! cargo run --release -p example-actix                      # in-memory store, 127.0.0.1:3000
//! cargo run --release -p example-actix -- --redis-url redis://127.0.0.1:6379/
//! cargo run --release -p example-actix -- --sentinel 10.0.0.5:26379 --sentinel-master mymaster
//! ```
//!
//! Instances of either demo started with the same `--redis-url` enforce one
//! shared limit, and share their rules.
#![allow(clippy::print_stdout)]

use clap::Parser;
use example_common::Args;

#[actix_web::main]
async fn main() -> Result<(), example_common::Fatal> {
    let args = Args::parse();
    example_common::init_logging();
    let limiter = example_common::limiter_for(&args).await?;
    let settings = example_common::Settings::from_args(&args, &limiter)?;
    example_common::spawn_metrics_upkeep();
    let admin = if settings.admin.is_some() {
        "on"
    } else {
        "off: no --admin-token"
    };
    let server =
        actix_web::HttpServer::new(move || example_actix::app(limiter.clone(), settings.clone()))
            .bind(args.listen)?;
    let store = args.store_kind();
    for addr in server.addrs() {
        println!("listening on http://{addr} ({store} store, /admin {admin})");
    }
    server.run().await?;
    Ok(())
}
