//! [`Passing`]: the response future of a rate-limited service, in one of
//! three shapes, for every adapter.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::fields::HeaderValues;

/// How an adapter turns its inner service's output, for an admitted
/// request, into its own: adding the header fields to the response.
pub trait Admit<T> {
    /// The framework's header value.
    type Value;
    /// The adapter's output.
    type Output;

    /// The inner service's output `inner`, with `fields` added.
    fn admit(inner: T, fields: Option<HeaderValues<Self::Value>>) -> Self::Output;
}

pin_project! {
    /// The response future of a rate-limited service (`A` the adapter's
    /// [`Admit`], `F` the inner service's future, `C` the boxed future of a
    /// check that waits for its store).
    ///
    /// When the store answers in place (the in-memory store does), the
    /// decision is made before this future exists: a refusal is a ready
    /// response, and an admitted request is the inner service's own future,
    /// its response given the header fields — no allocation, no clone of the
    /// inner service. Only a check still waiting on its store (Redis) is
    /// boxed, together with the request it holds.
    #[must_use = "futures do nothing unless polled"]
    pub struct Passing<A, F, C>
    where
        A: Admit<F::Output>,
        F: Future,
    {
        #[pin]
        state: State<A, F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<A, F, C>
    where
        A: Admit<F::Output>,
        F: Future,
    {
        Ready { output: Option<A::Output> },
        Admitted { #[pin] future: F, fields: Option<HeaderValues<A::Value>>, adapter: PhantomData<A> },
        Checking { #[pin] future: C },
    }
}

impl<A, F, C> Passing<A, F, C>
where
    A: Admit<F::Output>,
    F: Future,
{
    /// A response decided already (a refusal, or no caller found).
    pub fn ready(output: A::Output) -> Self {
        Self {
            state: State::Ready {
                output: Some(output),
            },
        }
    }

    /// The inner service's future, admitted: its response gets `fields`.
    pub fn admitted(future: F, fields: Option<HeaderValues<A::Value>>) -> Self {
        Self {
            state: State::Admitted {
                future,
                fields,
                adapter: PhantomData,
            },
        }
    }

    /// A check waiting on its store, then the inner call.
    pub fn checking(future: C) -> Self {
        Self {
            state: State::Checking { future },
        }
    }
}

impl<A, F, C> fmt::Debug for Passing<A, F, C>
where
    A: Admit<F::Output>,
    F: Future,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready { .. } => "ready",
            State::Admitted { .. } => "admitted",
            State::Checking { .. } => "checking",
        };
        f.debug_struct("Passing").field("state", &state).finish()
    }
}

impl<A, F, C> Future for Passing<A, F, C>
where
    A: Admit<F::Output>,
    F: Future,
    C: Future<Output = A::Output>,
{
    type Output = A::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { output } => match output.take() {
                Some(output) => Poll::Ready(output),
                // Polled after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
            StateProj::Admitted { future, fields, .. } => {
                let inner = ready!(future.poll(cx));
                Poll::Ready(A::admit(inner, fields.take()))
            }
            StateProj::Checking { future } => future.poll(cx),
        }
    }
}
