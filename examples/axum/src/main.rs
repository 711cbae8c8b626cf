//! The main demo: an axum app rate limited by `ratelimit`.
//!
//! ```text
//! cargo run --release -p example-axum                      # in-memory store, 127.0.0.1:3000
//! cargo run --release -p example-axum -- --redis-url redis://127.0.0.1:6379/
//! cargo run --release -p example-axum -- --sentinel 10.0.0.5:26379 --sentinel-master mymaster
//! curl -i http://127.0.0.1:3000/            # RateLimit headers; 429 after 10 in a second
//! curl -i -X POST -H 'x-user-id: 42' http://127.0.0.1:3000/login
//! ```
//!
//! Several instances started with the same `--redis-url` enforce one shared
//! limit, and share their rules.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;

use clap::Parser;
use example_common::Args;

#[tokio::main]
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
    let app = example_axum::app(limiter, &settings);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let store = args.store_kind();
    println!(
        "listening on http://{} ({store} store, /admin {admin})",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
