//! Tower middleware for `ratelimit`: `.layer(RateLimitLayer::new(limiter))`
//! on an axum `Router` or any tower stack.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Target};
//! use ratelimit_tower::RateLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
//! limiter.add_rule("default", Target::Each, 10, Duration::from_secs(1)).await?;
//! limiter.add_rule("login", Target::Each, 5, Duration::from_secs(60)).await?;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route(
//!         "/login",
//!         get(|| async { "welcome" })
//!             // This route: `login` and `default`, in one atomic check.
//!             .route_layer(RateLimitLayer::new(limiter.clone()).rules(["login", "default"])),
//!     )
//!     // Elsewhere: every rule that applies to the caller.
//!     .layer(RateLimitLayer::new(limiter));
//! // Serve with `app.into_make_service_with_connect_info::<SocketAddr>()` so
//! // anonymous callers are told apart by address.
//! # let _ = app.into_make_service_with_connect_info::<SocketAddr>();
//! # Ok(())
//! # }
//! ```
//!
//! Note: a request that passes both layers above is checked twice; give the
//! outer layer `.rules(["default"])` and let routes add theirs, or use
//! `check_all` semantics with the rules' priorities.
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
