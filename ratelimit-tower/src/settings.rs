//! [`Settings`]: what a [`RateLimitLayer`](crate::RateLimitLayer) and its
//! services share.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::Response;
use ratelimit_core::headers::HeaderOptions;
use ratelimit_core::{DistributedRateLimiter, Rules, Verdict};

use crate::RequestHead;
use crate::key::{KeyError, KeyExtractor};

/// A denial's body is usually a constant: kept borrowed, it costs no
/// allocation and no copy per denied request.
type DenialFn = dyn Fn(&Verdict) -> Response<Cow<'static, str>> + Send + Sync;
type KeyErrorFn = dyn Fn(&KeyError) -> Response<String> + Send + Sync;
type CostFn = dyn Fn(&RequestHead<'_>) -> u32 + Send + Sync;

/// Everything a [`RateLimit`](crate::RateLimit) service needs, shared by its clones.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) limiter: DistributedRateLimiter,
    pub(crate) extractor: Arc<dyn KeyExtractor>,
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
