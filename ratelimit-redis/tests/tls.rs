//! `rediss://` URLs reach a real TLS-enabled redis-server (with the `tls`
//! feature). The test certificate is self-signed, so the URL asks the client
//! not to verify it (`#insecure`); AUTH in the URL is passed through.
#![cfg(feature = "tls")]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ratelimit_core::Rules;
use std::sync::Arc;
use std::time::Duration;

use ratelimit_core::{DistributedRateLimiter, LimiterConfig, Target, verdict::Source};
use ratelimit_redis::RedisStore;
use ratelimit_test_support::RedisServer;

#[tokio::test]
async fn checks_run_over_tls_with_auth() {
    let (server, tls_port) = RedisServer::start_tls();
    assert_eq!(
        server.cli(&["CONFIG", "SET", "requirepass", "s3cret"]),
        "OK"
    );
    let url = format!("rediss://:s3cret@127.0.0.1:{tls_port}/#insecure");
    let store = RedisStore::builder(&url)
        .timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(store)));
    limiter
        .add_rule("r", Target::Each, 2, Duration::from_secs(60))
        .await
        .unwrap();
    let verdict = limiter
        .check(&ratelimit_core::Identity::user("1"), &Rules::one("r"), 1)
        .await
        .unwrap();
    assert_eq!(verdict.source(), Source::Store);
    assert!(limiter.is_allowed("user:1", "r").await);
    assert!(!limiter.is_allowed("user:1", "r").await);

    // A wrong password is a typed store error, not a hang.
    let wrong = format!("rediss://:nope@127.0.0.1:{tls_port}/#insecure");
    let error = RedisStore::connect(&wrong).await.unwrap_err();
    assert!(error.is_store_failure(), "{error}");
}
