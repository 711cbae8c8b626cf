//! actix-web middleware for ratelimit: [`RateLimit`] for `App::wrap`,
//! `Scope::wrap` and `Resource::wrap`, with the same behaviour as
//! `ratelimit-tower`'s layer — key extraction, per-scope rules checked
//! atomically with the core's prioritisation, cost, shadow rules, the IETF
//! `RateLimit` / `RateLimit-Policy` headers (byte-identical to the tower
//! adapter's: both come from `ratelimit_core::http`), an overridable
//! denial, and the limiter's failure policy and timeout.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use actix_web::{App, HttpServer, web};
//! use ratelimit_actix::RateLimit;
//! use ratelimit_core::http::Gate;
//! use ratelimit_core::identity::Facet;
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Quota, Rule, Rules, Target};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let quota = |n| Quota::new(n, Duration::from_secs(60));
//! let limiter = DistributedRateLimiter::new(
//!     LimiterConfig::new(Arc::new(MemoryStore::new()))
//!         .rule(Rule::new("default", Target::Each, quota(600)?)?)
//!         // 5 logins a minute per client address, whatever user a request claims.
//!         .rule(Rule::new("login", Target::Every(Facet::Ip), quota(5)?)?),
//! );
//! HttpServer::new(move || {
//!     let limit = |rules: &[&str]| RateLimit::new(Gate::new(limiter.clone()).rules(Rules::route(rules)));
//!     App::new()
//!         .service(
//!             web::resource("/login")
//!                 .wrap(limit(&["login", "default"]))
//!                 .route(web::post().to(|| async { "welcome" })),
//!         )
//!         .service(
//!             web::resource("/")
//!                 .wrap(limit(&["default"]))
//!                 .route(web::get().to(|| async { "hello" })),
//!         )
//! })
//! .bind(("127.0.0.1", 8080))?
//! .run()
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! What is decided, and how, is core's [`Gate`](ratelimit_core::http::Gate),
//! shared with the tower adapter: callers are found by a
//! [`KeyExtractor`](ratelimit_core::http::KeyExtractor), by default
//! [`UserServiceOrIp`](ratelimit_core::http::UserServiceOrIp) (`x-user-id`,
//! then `x-service-id`, then the client address, with forwarding headers
//! read only from trusted proxies).

#[cfg(feature = "admin")]
pub mod admin;

mod fields;
mod future;
mod middleware;
mod request;
mod service;
mod settings;

pub use future::ResponseFuture;
pub use middleware::RateLimit;
pub use service::RateLimitMiddleware;
