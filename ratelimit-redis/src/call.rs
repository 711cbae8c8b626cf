//! Sending a command: server errors made errors, a script sent again after
//! `NOSCRIPT`, Redis errors made the crate's.

use ratelimit_core::Error;
use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use crate::script::Form;

/// Sends `cmd` on `connection` and decodes the reply.
pub(crate) async fn query_on<T: redis::FromRedisValue>(
    mut connection: impl ConnectionLike,
    cmd: &Cmd,
) -> Result<T, RedisError> {
    // Server errors arrive as values: turn them into errors first, so that
    // NOSCRIPT is seen as such.
    let value = connection.req_packed_command(cmd).await?.extract_error()?;
    redis::from_redis_value(value).map_err(RedisError::from)
}

/// Sends a script command on `connection`; after `NOSCRIPT`, sends it
/// again with the script's source.
pub(crate) async fn send_script_on<T: redis::FromRedisValue, C: ConnectionLike + Clone>(
    connection: &C,
    command: &impl Fn(Form) -> Cmd,
) -> Result<T, RedisError> {
    match query_on(connection.clone(), &command(Form::Sha)).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            query_on(connection.clone(), &command(Form::Source)).await
        }
        result => result,
    }
}

/// The crate's error for a Redis error: a reply it cannot decode is
/// [`Error::InvalidResponse`], anything else [`Error::Store`].
pub(crate) fn store_error(error: RedisError) -> Error {
    if matches!(
        error.kind(),
        ErrorKind::UnexpectedReturnType | ErrorKind::Parse
    ) {
        Error::InvalidResponse(error.to_string())
    } else {
        Error::Store(Box::new(error))
    }
}
