//! [`ResponseFuture`]: the response of a
//! [`RateLimitMiddleware`](crate::RateLimitMiddleware) — core's
//! [`Passing`], admitted requests' responses given their header fields
//! here.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::EitherBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::HeaderValue;
use ratelimit_core::http::{Admit, Gate, HeaderValues, Passing};

use crate::RateLimit;
use crate::fields::Fields;

type Output<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

/// The slow path: a check waiting on its store, then the inner call.
pub(crate) type Boxed<B> = Pin<Box<dyn Future<Output = Output<B>>>>;

/// The future of a [`RateLimitMiddleware`](crate::RateLimitMiddleware)
/// (`F` the inner service's future). See [`Passing`] for its three shapes.
pub type ResponseFuture<F, B> = Passing<RateLimit, F, Boxed<B>>;

impl<B> Admit<Result<ServiceResponse<B>, actix_web::Error>> for RateLimit {
    type Value = HeaderValue;
    type Output = Output<B>;

    #[inline]
    fn admit(
        inner: Result<ServiceResponse<B>, actix_web::Error>,
        fields: Option<HeaderValues<HeaderValue>>,
    ) -> Self::Output {
        inner.map(|mut response| {
            Gate::add_fields(&mut Fields(response.headers_mut()), fields);
            response.map_into_left_body()
        })
    }
}
