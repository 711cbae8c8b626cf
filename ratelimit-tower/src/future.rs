//! [`ResponseFuture`]: the response of a [`RateLimit`](crate::RateLimit)
//! service — core's [`Passing`], admitted requests' responses given their
//! header fields here.

use std::future::Future;
use std::pin::Pin;

use http::{HeaderValue, Response};
use ratelimit_core::http::{Admit, Gate, HeaderValues, Passing};

use crate::RateLimitLayer;
use crate::fields::Fields;

/// The slow path: a check the store did not answer at once, then the inner
/// call.
pub(crate) type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

/// The future of a [`RateLimit`](crate::RateLimit) service (`F` the inner
/// service's future). See [`Passing`] for its three shapes.
pub type ResponseFuture<F, B, E> = Passing<RateLimitLayer, F, Boxed<B, E>>;

impl<B, E> Admit<Result<Response<B>, E>> for RateLimitLayer {
    type Value = HeaderValue;
    type Output = Result<Response<B>, E>;

    #[inline]
    fn admit(
        inner: Result<Response<B>, E>,
        fields: Option<HeaderValues<HeaderValue>>,
    ) -> Self::Output {
        inner.map(|mut response| {
            Gate::add_fields(&mut Fields(response.headers_mut()), fields);
            response
        })
    }
}
