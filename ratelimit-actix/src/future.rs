//! [`ResponseFuture`]: the response of a
//! [`RateLimitMiddleware`](crate::RateLimitMiddleware), in one of three
//! shapes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_web::body::EitherBody;
use actix_web::dev::ServiceResponse;
use pin_project_lite::pin_project;

type Output<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

/// The slow path: a check waiting on its store, then the inner call.
pub(crate) type Boxed<B> = Pin<Box<dyn Future<Output = Output<B>>>>;

pin_project! {
    /// The future of a [`RateLimitMiddleware`](crate::RateLimitMiddleware):
    /// a ready response (denied, or no caller found), the inner service's
    /// future plus the headers (admitted by a store that answered in
    /// place), or one boxed future (a store that must be awaited).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Ready { response: Option<ServiceResponse<EitherBody<B>>> },
        Admitted { #[pin] future: F, headers: Option<crate::fields::Values> },
        Checking { future: Boxed<B> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn ready(response: ServiceResponse<EitherBody<B>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn admitted(future: F, headers: Option<crate::fields::Values>) -> Self {
        Self {
            state: State::Admitted { future, headers },
        }
    }

    pub(crate) fn checking(future: Boxed<B>) -> Self {
        Self {
            state: State::Checking { future },
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Ready { .. } => "ready",
            State::Admitted { .. } => "admitted",
            State::Checking { .. } => "checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = Output<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
            StateProj::Admitted { future, headers } => {
                let mut response = ready!(future.poll(cx))?;
                ratelimit_core::http::Gate::add_fields(
                    &mut crate::fields::Fields(response.headers_mut()),
                    headers.take(),
                );
                Poll::Ready(Ok(response.map_into_left_body()))
            }
            StateProj::Checking { future } => future.as_mut().poll(cx),
        }
    }
}
