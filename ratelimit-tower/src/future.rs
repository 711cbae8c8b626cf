//! [`ResponseFuture`]: the response of a [`RateLimit`](crate::RateLimit)
//! service, in one of three shapes.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

/// The slow path: a check the store did not answer at once, then the inner
/// call.
pub(crate) type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// The future of a [`RateLimit`](crate::RateLimit) service.
    ///
    /// When the store answers at once (the in-memory store always does), the
    /// decision is made inside `call`: a rejection is a ready response, and
    /// an admitted request is the inner service's own future, with the
    /// rate-limit headers added to its response — no allocation, no clone of
    /// the inner service. Only a check still waiting on its store (Redis) is
    /// boxed, together with the request it holds.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Ready { response: Option<Response<B>> },
        Admitted { #[pin] future: F, headers: Option<crate::fields::Values> },
        Checking { future: Boxed<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn ready(response: Response<B>) -> Self {
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

    pub(crate) fn checking(future: Boxed<B, E>) -> Self {
        Self {
            state: State::Checking { future },
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
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

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

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
                Poll::Ready(Ok(response))
            }
            StateProj::Checking { future } => future.as_mut().poll(cx),
        }
    }
}
