//! Tower middleware for `ratelimit`: `.layer(RateLimitLayer::new(limiter))`
//! on an axum `Router` or any tower stack.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{routing::{get, post}, Router};
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Rules, Target};
//! use ratelimit_core::identity::Facet;
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
//! let login = RateLimitLayer::new(limiter.clone()).rules(Rules::route(["login", "default"]));
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route_layer(RateLimitLayer::new(limiter).rules(Rules::route(["default"])))
//!     // Added after `route_layer`: `/login` is checked once, by its own layer.
//!     .route("/login", post(|| async { "welcome" }).route_layer(login));
//! // Serve with `app.into_make_service_with_connect_info::<SocketAddr>()` so
//! // callers are told apart by address.
//! # let _ = app.into_make_service_with_connect_info::<SocketAddr>();
//! # Ok(())
//! # }
//! ```
//!
//! What a response carries: `RateLimit` and `RateLimit-Policy` (from
//! `ratelimit_core::headers`, so the actix adapter sends the same bytes),
//! `Retry-After` when denied, and optionally `X-RateLimit-*`.

#[cfg(feature = "admin")]
pub mod admin;
mod fields;
mod future;
mod head;
pub mod key;
mod layer;
mod service;
mod settings;

pub use future::ResponseFuture;
pub use head::RequestHead;
pub use key::{Identity, KeyError, KeyExtractor};
pub use layer::RateLimitLayer;
pub use service::RateLimit;
