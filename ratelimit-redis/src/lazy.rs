//! [`Lazy`]: a connection made on first use, so that an application can
//! start while Redis is down.
//!
//! Until a connection attempt succeeds, every call makes one (bounded by the
//! caller's timeout) and fails with an error naming the address; the
//! limiter answers those with its failure policy, and its circuit breaker
//! spaces the attempts out. Once made, the connection reconnects by itself
//! (redis-rs's `ConnectionManager` and cluster connection both do).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ratelimit_core::Error;
use redis::RedisError;
use tokio::sync::OnceCell;

type Connect<C> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<C, RedisError>> + Send>> + Send + Sync>;

/// A connection of type `C`, made by `connect` on first use.
pub(crate) struct Lazy<C> {
    cell: OnceCell<C>,
    connect: Connect<C>,
    /// What the connection reaches, for error messages (no password).
    address: String,
}

impl<C: Clone + Send + Sync> Lazy<C> {
    /// A connection to `address` (as shown in errors), made by `connect`.
    pub(crate) fn new<F, Fut>(address: String, connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, RedisError>> + Send + 'static,
    {
        Self {
            cell: OnceCell::new(),
            connect: Box::new(move || Box::pin(connect())),
            address,
        }
    }

    /// A connection that is made already (one that makes its own
    /// connections, as a Sentinel [`Primary`](crate::primary::Primary) does).
    pub(crate) fn ready(address: String, connection: C) -> Self {
        Self {
            cell: OnceCell::new_with(Some(connection)),
            connect: Box::new(|| {
                Box::pin(async {
                    Err(RedisError::from((
                        redis::ErrorKind::Client,
                        "a ready connection is never made again",
                    )))
                })
            }),
            address,
        }
    }

    /// The connection, made now if it was not yet.
    #[inline]
    pub(crate) async fn get(&self) -> Result<&C, Error> {
        if let Some(connection) = self.cell.get() {
            return Ok(connection);
        }
        self.make().await
    }

    #[cold]
    async fn make(&self) -> Result<&C, Error> {
        self.cell
            .get_or_try_init(|| (self.connect)())
            .await
            .map_err(|error| {
                Error::Store(format!("cannot connect to Redis at {}: {error}", self.address).into())
            })
    }

    /// Makes the connection now, failing (with an error naming the address)
    /// if it is not made within `limit`.
    pub(crate) async fn connect_within(&self, limit: Duration) -> Result<(), Error> {
        match tokio::time::timeout(limit, self.get()).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(Error::Store(
                format!(
                    "cannot connect to Redis at {}: no answer within {limit:?}",
                    self.address
                )
                .into(),
            )),
        }
    }

    /// The connection if it is made.
    pub(crate) fn made(&self) -> Option<&C> {
        self.cell.get()
    }

    /// What the connection reaches.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

impl<C> fmt::Debug for Lazy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lazy")
            .field("address", &self.address)
            .field("connected", &self.cell.initialized())
            .finish()
    }
}

/// `url` without the password of its user information, for messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{user_info}@{host}"),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:s3cret@127.0.0.1:6379/0"),
            "redis://user:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("rediss://:s3cret@[::1]:6379/"),
            "rediss://:***@[::1]:6379/"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact("redis://alice@host/"), "redis://alice@host/");
    }
}
