//! [`ResponseFuture`]: a ready response, or the check and then the inner call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

/// The future of a [`RateLimit`](crate::RateLimit) service: a response
/// known at once (a request whose caller could not be found) needs no
/// allocation; otherwise one boxed future runs the check and then, if the
/// request is admitted, the inner service.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<B, E> {
    state: State<B, E>,
}

enum State<B, E> {
    Ready(Option<Response<B>>),
    Checking(Boxed<B, E>),
}

impl<B, E> ResponseFuture<B, E> {
    pub(crate) fn ready(response: Response<B>) -> Self {
        Self {
            state: State::Ready(Some(response)),
        }
    }

    pub(crate) fn checking(future: Boxed<B, E>) -> Self {
        Self {
            state: State::Checking(future),
        }
    }
}

impl<B, E> std::fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Ready(_) => "ready",
            State::Checking(_) => "checking",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

// Neither variant holds anything pinned in place (the boxed future is pinned
// on the heap), so the future is Unpin.
impl<B, E> Unpin for ResponseFuture<B, E> {}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
            State::Checking(future) => future.as_mut().poll(cx),
        }
    }
}
