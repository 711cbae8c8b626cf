//! [`Responders`]: an application's own answers to refused requests, in its
//! framework's response type.

use std::fmt;
use std::sync::Arc;

use super::extract::KeyError;
use super::gate::Refusal;
use crate::Verdict;

type DenialFn<R> = dyn Fn(&Verdict) -> R + Send + Sync;
type KeyErrorFn<R> = dyn Fn(&KeyError) -> R + Send + Sync;

/// An application's own answers to refused requests, made in its
/// framework's response type `R`, where the adapter's defaults (the
/// refusal's status and text, the key error's status and reason) do not
/// do. The adapters' `on_denied` and `on_missing_key` fill it.
pub struct Responders<R> {
    denied: Option<Arc<DenialFn<R>>>,
    missing_key: Option<Arc<KeyErrorFn<R>>>,
}

impl<R> Responders<R> {
    /// No responder: the adapter's defaults answer.
    pub fn new() -> Self {
        Self {
            denied: None,
            missing_key: None,
        }
    }

    /// Answers requests the rules deny with `respond` (the header fields are
    /// added to its response).
    pub fn set_denied(&mut self, respond: impl Fn(&Verdict) -> R + Send + Sync + 'static) {
        self.denied = Some(Arc::new(respond));
    }

    /// Answers requests whose caller cannot be found with `respond`.
    pub fn set_missing_key(&mut self, respond: impl Fn(&KeyError) -> R + Send + Sync + 'static) {
        self.missing_key = Some(Arc::new(respond));
    }

    /// The application's answer to `refusal`, if it has one (never for a
    /// misconfiguration, which has no verdict).
    pub fn denied<V>(&self, refusal: &Refusal<V>) -> Option<R> {
        let respond = self.denied.as_ref()?;
        refusal.verdict().map(|verdict| respond(verdict))
    }

    /// The application's answer to a request whose caller cannot be found,
    /// if it has one.
    pub fn missing_key(&self, error: &KeyError) -> Option<R> {
        self.missing_key.as_ref().map(|respond| respond(error))
    }
}

impl<R> Default for Responders<R> {
    fn default() -> Self {
        Self::new()
    }
}

// By hand: a derive would ask `R: Clone`, and only `Arc`s are held.
impl<R> Clone for Responders<R> {
    fn clone(&self) -> Self {
        Self {
            denied: self.denied.clone(),
            missing_key: self.missing_key.clone(),
        }
    }
}

impl<R> fmt::Debug for Responders<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responders")
            .field("denied", &self.denied.is_some())
            .field("missing_key", &self.missing_key.is_some())
            .finish()
    }
}
