//! [`Settings`]: what a [`RateLimit`](crate::RateLimit) and its middleware
//! instances share.

use std::fmt;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use ratelimit_core::headers::HeaderOptions;
use ratelimit_core::{DistributedRateLimiter, Rules, Verdict};

use crate::key::{KeyError, KeyExtractor};

type DenialFn = dyn Fn(&Verdict) -> HttpResponse + Send + Sync;
type KeyErrorFn = dyn Fn(&KeyError) -> HttpResponse + Send + Sync;
type CostFn = dyn Fn(&HttpRequest) -> u32 + Send + Sync;

/// Everything a middleware instance needs, shared by every worker's.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) limiter: DistributedRateLimiter,
    pub(crate) extractor: Arc<dyn KeyExtractor + Send + Sync>,
    pub(crate) rules: Rules,
    pub(crate) cost: Option<Arc<CostFn>>,
    pub(crate) headers: HeaderOptions,
    pub(crate) on_denied: Arc<DenialFn>,
    pub(crate) on_missing_key: Arc<KeyErrorFn>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("limiter", &self.limiter)
            .field("rules", &self.rules)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}
