//! Serving the demos on real loopback sockets, for the tests of fleets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;

use example_common::Settings;
use ratelimit_core::DistributedRateLimiter;
use tokio::net::TcpListener;

/// The actix-web demo on a free loopback port (one worker), until the test
/// ends.
pub fn serve_actix(limiter: DistributedRateLimiter, settings: Settings) -> SocketAddr {
    let server =
        actix_web::HttpServer::new(move || example_actix::app(limiter.clone(), settings.clone()))
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    addr
}

/// The axum demo on a free loopback port; aborting the returned task stops
/// it (as a crashed instance).
pub async fn serve_axum_stoppable(
    limiter: DistributedRateLimiter,
    settings: &Settings,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example_axum::app(limiter, settings);
    let task = actix_web::rt::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, task)
}

/// The axum demo on a free loopback port, until the test ends.
pub async fn serve_axum(limiter: DistributedRateLimiter, settings: &Settings) -> SocketAddr {
    serve_axum_stoppable(limiter, settings).await.0
}
