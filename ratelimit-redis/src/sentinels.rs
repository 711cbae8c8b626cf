//! [`Sentinels`]: where to find the Redis primary when Redis Sentinel
//! watches it.

use std::fmt;

use redis::{
    Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError,
};

/// A Redis primary named by Redis Sentinel: the sentinels' addresses and
/// the name they know the primary by.
///
/// A store or rule store built on it asks the sentinels for the primary,
/// checks that the server found calls itself primary, and follows a
/// failover by itself: a lost connection, a `READONLY`, `LOADING` or
/// `MASTERDOWN` reply, or the sentinels' `+switch-master` announcement
/// makes it ask again and reconnect. Meanwhile each call fails at once
/// (or within the store's timeout) and the limiter answers by its failure
/// policy.
///
/// The sentinel URLs carry the sentinels' own user, password and TLS
/// (`rediss://`); the primary's are set apart, since the two often differ.
///
/// ```
/// use ratelimit_redis::Sentinels;
///
/// let sentinels = Sentinels::new(
///     &["redis://10.0.0.5:26379", "redis://10.0.0.6:26379", "redis://10.0.0.7:26379"],
///     "ratelimit",
/// )
/// .master_auth(None, "primary-password");
/// # let _ = sentinels;
/// ```
#[derive(Clone)]
#[must_use]
pub struct Sentinels {
    pub(crate) urls: Vec<String>,
    pub(crate) master: String,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    #[cfg(feature = "tls")]
    tls: bool,
}

impl fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|url| crate::lazy::redact(url))
            .collect();
        f.debug_struct("Sentinels")
            .field("urls", &urls)
            .field("master", &self.master)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Sentinels {
    /// The primary the sentinels at `sentinels` (`redis://host:port` each;
    /// any reachable subset of them) know as `master`.
    pub fn new<S: AsRef<str>>(sentinels: &[S], master: &str) -> Self {
        Self {
            urls: sentinels.iter().map(|s| s.as_ref().to_owned()).collect(),
            master: master.to_owned(),
            username: None,
            password: None,
            db: 0,
            #[cfg(feature = "tls")]
            tls: false,
        }
    }

    /// The user (`None` for Redis's default user) and password the primary
    /// expects (`AUTH`).
    pub fn master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.username = username.map(str::to_owned);
        self.password = Some(password.to_owned());
        self
    }

    /// The database to use on the primary (default 0).
    pub fn master_db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Whether the primary is reached with TLS, verified against the
    /// system's roots (default `false`).
    #[cfg(feature = "tls")]
    pub fn master_tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// A client per sentinel, failing for an empty list or a URL that
    /// cannot be parsed.
    pub(crate) fn clients(&self) -> Result<Vec<Client>, RedisError> {
        if self.urls.is_empty() {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "no sentinel addresses",
            )));
        }
        self.urls
            .iter()
            .map(|url| Client::open(url.as_str()))
            .collect()
    }

    /// A client for the server at `host:port`, with the primary's user,
    /// password, database and TLS.
    pub(crate) fn node_client(&self, host: String, port: u16) -> Result<Client, RedisError> {
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        #[cfg(feature = "tls")]
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        #[cfg(not(feature = "tls"))]
        let addr = ConnectionAddr::Tcp(host, port);
        Client::open(addr.into_connection_info()?.set_redis_settings(redis))
    }

    /// The master name and the sentinels, for messages (no passwords).
    pub(crate) fn describe(&self) -> String {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|url| crate::lazy::redact(url))
            .collect();
        format!(
            "the primary {:?} of the sentinels {}",
            self.master,
            urls.join(", ")
        )
    }
}
