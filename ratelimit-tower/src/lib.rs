//! Tower middleware for `ratelimit`: `.layer(RateLimitLayer::new(limiter))`
//! on an axum `Router` or any tower stack.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{routing::{get, post}, Router};
//! use ratelimit_core::http::Gate;
//! use ratelimit_core::identity::Facet;
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Rules, Target};
//! use ratelimit_tower::RateLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
//! // Each caller (user, service, or address) 10 a second.
//! limiter.add_rule("default", Target::Each, 10, Duration::from_secs(1)).await?;
//! // 5 logins a minute per client address, whatever user a request claims.
//! limiter.add_rule("login", Target::Every(Facet::Ip), 5, Duration::from_secs(60)).await?;
//!
//! let limit = |rules: &[&str]| RateLimitLayer::new(Gate::new(limiter.clone()).rules(Rules::route(rules)));
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route_layer(limit(&["default"]))
//!     // Added after `route_layer`: `/login` is checked once, by its own layer.
//!     .route("/login", post(|| async { "welcome" }).route_layer(limit(&["login", "default"])));
//! // Serve with `app.into_make_service_with_connect_info::<SocketAddr>()` so
//! // callers are told apart by address.
//! # let _ = app.into_make_service_with_connect_info::<SocketAddr>();
//! # Ok(())
//! # }
//! ```
//!
//! What is decided, and how, is core's [`Gate`](ratelimit_core::http::Gate)
//! (who asks, which rules, what cost, which header fields), shared with the
//! actix-web adapter so both answer alike; the key extractors are in
//! [`ratelimit_core::http`]. A response carries `RateLimit` and
//! `RateLimit-Policy`, `Retry-After` when refused, and optionally
//! `X-RateLimit-*`.

#[cfg(feature = "admin")]
pub mod admin;
mod fields;
mod future;
mod head;
mod layer;
mod service;
mod settings;

pub use future::ResponseFuture;
pub use head::RequestHead;
pub use layer::RateLimitLayer;
pub use service::RateLimit;
