//! Stores that misbehave on purpose, to test failure policies: they stand
//! in for a store that is down, hangs, or answers garbage.

use async_trait::async_trait;
use ratelimit_core::store::{CheckItem, Outcome};
use ratelimit_core::{Error, Store};

/// Fails every call, as a store whose server refuses connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailingStore;

fn refused() -> Error {
    Error::Store("connection refused".into())
}

#[async_trait]
impl Store for FailingStore {
    async fn check(&self, _: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        Err(refused())
    }
    async fn peek(&self, _: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        Err(refused())
    }
    async fn reset(&self, _: &[&[u8]]) -> Result<(), Error> {
        Err(refused())
    }
}

/// Never answers, as a frozen server.
#[derive(Debug, Clone, Copy, Default)]
pub struct HangingStore;

#[async_trait]
impl Store for HangingStore {
    async fn check(&self, _: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        std::future::pending().await
    }
    async fn peek(&self, _: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        std::future::pending().await
    }
    async fn reset(&self, _: &[&[u8]]) -> Result<(), Error> {
        std::future::pending().await
    }
}

/// Answers every check "allowed" with no decisions: garbage.
#[derive(Debug, Clone, Copy, Default)]
pub struct GarbageStore;

#[async_trait]
impl Store for GarbageStore {
    async fn check(&self, _: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        Ok(Outcome {
            allowed: true,
            decisions: Default::default(),
        })
    }
    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.check(items).await
    }
    async fn reset(&self, _: &[&[u8]]) -> Result<(), Error> {
        Ok(())
    }
}

/// An in-memory store that never answers in place: each call is a future,
/// as a remote store's are (with none of its latency), so the awaited check
/// path runs with the in-memory store's exact answers.
#[derive(Debug, Clone, Default)]
pub struct AwaitedStore(pub ratelimit_core::MemoryStore);

#[async_trait]
impl Store for AwaitedStore {
    async fn check(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        tokio::task::yield_now().await;
        self.0.check(items).await
    }
    async fn peek(&self, items: &[CheckItem<'_>]) -> Result<Outcome, Error> {
        self.0.peek(items).await
    }
    async fn reset(&self, keys: &[&[u8]]) -> Result<(), Error> {
        self.0.reset(keys).await
    }
}
