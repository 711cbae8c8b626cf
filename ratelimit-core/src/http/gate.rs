//! [`Gate`]: what a rate-limited route does with each request, written once
//! for every HTTP adapter.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::RequestView;
use super::extract::{KeyError, KeyExtractor, UserServiceOrIp};
use super::fields::{HeaderOptions, HeaderValues};
use super::sink::{FieldSink, insert_fields};
use crate::limiter::Waiting;
use crate::verdict::Source;
use crate::{DistributedRateLimiter, Error, Identity, Rules, Verdict};

type CostFn = dyn Fn(&dyn RequestView) -> u32 + Send + Sync;

/// What a rate-limited route does with each request: who asks (a
/// [`KeyExtractor`]), which [`Rules`] apply, what the request costs, which
/// header fields the response carries. The tower layer and the actix-web
/// middleware both take one (a [`DistributedRateLimiter`] converts into
/// the defaults) and add only their framework's glue, so they decide and
/// answer alike.
///
/// Defaults: callers found by [`UserServiceOrIp`]; every rule that applies
/// ([`Rules::applicable`]); cost 1; `RateLimit` and `RateLimit-Policy` on
/// every response; 429 with `Retry-After` when denied, 503 when the store
/// is down and the failure policy denies.
///
/// ```
/// use std::sync::Arc;
/// use ratelimit_core::http::{ApiKey, Gate};
/// use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore, Rules};
///
/// let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
/// let gate = Gate::new(limiter)
///     .key_extractor(ApiKey::default())
///     .rules(Rules::route(["api"]))
///     .cost(|request| if request.method() == "POST" { 2 } else { 1 })
///     .legacy_headers(true);
/// # let _ = gate;
/// ```
#[derive(Clone)]
#[must_use]
pub struct Gate {
    inner: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    limiter: DistributedRateLimiter,
    extractor: Arc<dyn KeyExtractor>,
    rules: Rules,
    cost: Option<Arc<CostFn>>,
    headers: HeaderOptions,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("limiter", &self.inner.limiter)
            .field("rules", &self.inner.rules)
            .field("headers", &self.inner.headers)
            .finish_non_exhaustive()
    }
}

impl From<DistributedRateLimiter> for Gate {
    fn from(limiter: DistributedRateLimiter) -> Self {
        Self::new(limiter)
    }
}

/// # Settings
impl Gate {
    /// Requests checked by `limiter`, with the defaults.
    pub fn new(limiter: DistributedRateLimiter) -> Self {
        Self {
            inner: Arc::new(Settings {
                limiter,
                extractor: Arc::new(UserServiceOrIp::default()),
                rules: Rules::applicable(),
                cost: None,
                headers: HeaderOptions::new(),
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        // Copies the settings only if this gate was cloned before.
        change(Arc::make_mut(&mut self.inner));
        self
    }

    /// How callers are found (default [`UserServiceOrIp`]).
    pub fn key_extractor(self, extractor: impl KeyExtractor) -> Self {
        self.with(|s| s.extractor = Arc::new(extractor))
    }

    /// Which rules a request is checked against (default
    /// [`Rules::applicable`]), e.g. `Rules::route(["login", "default"])` on
    /// one route. A rule the limiter does not have (its rule store lost it)
    /// is answered by the failure policy; a named rule that does not apply
    /// to the caller (a rule for another user) gets 500, a server
    /// misconfiguration.
    pub fn rules(self, rules: Rules) -> Self {
        self.with(|s| s.rules = rules)
    }

    /// The cost of a request (default 1), e.g. by method, path, or a header
    /// the client cannot forge.
    pub fn cost(self, cost: impl Fn(&dyn RequestView) -> u32 + Send + Sync + 'static) -> Self {
        self.with(|s| s.cost = Some(Arc::new(cost)))
    }

    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub fn legacy_headers(self, on: bool) -> Self {
        self.with(|s| s.headers = s.headers.legacy(on))
    }

    /// Whether admitted responses carry the rate-limit headers too (default
    /// `true`). With `false` only refusals carry them, and an admitted
    /// response goes out untouched.
    pub fn admitted_headers(self, on: bool) -> Self {
        self.with(|s| s.headers = s.headers.admitted(on))
    }

    /// The limiter requests are checked by.
    pub fn limiter(&self) -> &DistributedRateLimiter {
        &self.inner.limiter
    }
}

/// A request's identity and cost, ready to be checked.
#[derive(Debug, Clone)]
pub struct Entry<'r> {
    identity: Identity<'r>,
    cost: u32,
}

impl Entry<'_> {
    /// Who asks.
    pub fn identity(&self) -> &Identity<'_> {
        &self.identity
    }

    /// The request's cost.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The same entry owning its ids, for a check that outlives the request
    /// it was read from.
    pub fn into_owned(self) -> Entry<'static> {
        Entry {
            identity: self.identity.into_owned(),
            cost: self.cost,
        }
    }
}

/// A check its store must answer before the request can pass: the entry,
/// owned, and the rules and keys the attempt in place prepared, so the
/// awaited check builds neither again. Made by
/// [`Gate::try_pass`], finished by [`Gate::pass`].
#[derive(Debug)]
pub struct Pending(Box<(Entry<'static>, Option<Box<Waiting>>)>);

impl Pending {
    /// Kept out of line: only a check that waits for its store makes one.
    #[cold]
    fn new(entry: &Entry<'_>, waiting: Option<Box<Waiting>>) -> Self {
        Self(Box::new((entry.clone().into_owned(), waiting)))
    }
}

/// What becomes of a request once checked, with the header fields its
/// response carries (`V` is the framework's header value type).
#[derive(Debug)]
pub enum Passage<V> {
    /// Pass it on; add these fields to the response.
    Admit(Option<HeaderValues<V>>),
    /// Answer it with a refusal.
    Refuse(Refusal<V>),
}

/// A refused request: denied by the rules (or by the failure policy while
/// the store is down), or refused for a reason that is the server's.
#[derive(Debug)]
pub struct Refusal<V> {
    result: Result<Verdict, Error>,
    fields: Option<HeaderValues<V>>,
}

impl<V> Refusal<V> {
    /// The verdict of a denial; `None` when the server is misconfigured (an
    /// error the caller cannot fix: a named rule that does not apply, a
    /// cost above a rule's burst).
    pub fn verdict(&self) -> Option<&Verdict> {
        self.result.as_ref().ok()
    }

    /// The default status: 429 for a denial by the rules, 503 when the store
    /// is down and the failure policy denies, 500 for a misconfiguration.
    pub fn status(&self) -> u16 {
        match &self.result {
            Ok(verdict) if verdict.source() == Source::FailClosed => 503,
            Ok(_) => 429,
            Err(_) => 500,
        }
    }

    /// The default body, plain text.
    pub fn body(&self) -> Cow<'static, str> {
        match &self.result {
            Ok(verdict) if verdict.source() == Source::FailClosed => {
                Cow::Borrowed("Rate limiting is unavailable; try again later.\n")
            }
            Ok(_) => Cow::Borrowed("Too Many Requests\n"),
            Err(error) => Cow::Owned(format!("rate limiting is misconfigured: {error}\n")),
        }
    }

    /// The header fields the response carries (none for a
    /// misconfiguration), taken out of the refusal.
    pub fn take_fields(&mut self) -> Option<HeaderValues<V>> {
        self.fields.take()
    }
}

/// # The steps of a request
///
/// An adapter calls [`entry`](Self::entry), then [`try_pass`](Self::try_pass)
/// — answered in place when the store does (the in-memory one) — and only
/// when that returns a [`Pending`] check, [`pass`](Self::pass) in a future
/// it awaits.
impl Gate {
    /// Who makes `request`, and at what cost.
    #[inline]
    pub fn entry<'r>(&self, request: &'r dyn RequestView) -> Result<Entry<'r>, KeyError> {
        let identity = self.inner.extractor.extract(request)?;
        let cost = self.inner.cost.as_ref().map_or(1, |cost| cost(request));
        Ok(Entry { identity, cost })
    }

    /// The passage of `entry`, decided right here when the store answers in
    /// place; otherwise the [`Pending`] check to [`pass`](Self::pass) in a
    /// future (nothing was charged), holding what this attempt prepared.
    #[inline]
    pub fn try_pass<S: FieldSink>(&self, entry: &Entry<'_>) -> Result<Passage<S::Value>, Pending> {
        let limiter = &self.inner.limiter;
        match limiter.try_check_or_wait(&entry.identity, &self.inner.rules, entry.cost) {
            Ok(result) => Ok(self.passage::<S>(result)),
            Err(waiting) => Err(Pending::new(entry, waiting)),
        }
    }

    /// The passage of a [`Pending`] check, waiting for the store (never
    /// longer than the limiter's timeout).
    pub async fn pass<S: FieldSink>(&self, pending: Pending) -> Passage<S::Value> {
        let (entry, waiting) = *pending.0;
        let result = self
            .inner
            .limiter
            .check_waiting(&entry.identity, &self.inner.rules, entry.cost, waiting)
            .await;
        self.passage::<S>(result)
    }

    #[inline]
    fn passage<S: FieldSink>(&self, result: Result<Verdict, Error>) -> Passage<S::Value> {
        let verdict = match result {
            Ok(verdict) => verdict,
            Err(error) => {
                return Passage::Refuse(Refusal {
                    result: Err(error),
                    fields: None,
                });
            }
        };
        let fields = self
            .inner
            .headers
            .values_with(&verdict, |policy| S::value(policy.into_bytes()));
        if verdict.allowed() {
            Passage::Admit(fields)
        } else {
            Passage::Refuse(Refusal {
                result: Ok(verdict),
                fields,
            })
        }
    }

    /// Adds `fields` (from a [`Passage`]) to a response's headers.
    #[inline]
    pub fn add_fields<S: FieldSink>(sink: &mut S, fields: Option<HeaderValues<S::Value>>) {
        // Inlined down to this test: with `admitted_headers` off most
        // admitted responses carry no fields.
        if let Some(fields) = fields {
            insert_fields(sink, fields);
        }
    }
}
