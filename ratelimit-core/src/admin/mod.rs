//! The management API, framework-neutral (feature `admin`): authentication,
//! validation and the operations, answering with a status and a JSON body.
//! `ratelimit-tower` serves it as an axum `Router` and `ratelimit-actix` as
//! an actix-web `Scope`; both only map routes to an [`Operation`], so they
//! answer byte for byte alike.
//!
//! | route | operation |
//! |---|---|
//! | `GET /rules` | [`Operation::ListRules`] |
//! | `GET /rules/{id}` | [`Operation::GetRule`] |
//! | `PUT /rules/{id}` | [`Operation::PutRule`] (201 created, 200 replaced) |
//! | `PATCH /rules/{id}` | [`Operation::PatchRule`] |
//! | `DELETE /rules/{id}` | [`Operation::DeleteRule`] |
//! | `GET /status?target=..&rule=..` | [`Operation::Status`] |
//! | `POST /reset?target=..&rule=..` | [`Operation::Reset`] |
//!
//! Every request needs `Authorization: Bearer TOKEN`; the token is compared
//! in constant time, and a request without it (or with another) gets 401
//! and changes nothing. Refusals are JSON `{"error", "field"?, "message"}`:
//! 400 naming the field, 404 for an unknown rule, 409 for a conflict, 413
//! for an oversized body, 503 when the store does not answer. Every change
//! is validated whole before it is written in one step: never a partial
//! change.
//!
//! Changes go through the limiter, so with a shared rule store (Redis) they
//! reach every instance of the fleet; with the in-memory store they apply to
//! this instance only.
//!
//! ```
//! use std::sync::Arc;
//! use ratelimit_core::admin::{AdminApi, AdminRequest, Operation};
//! use ratelimit_core::{DistributedRateLimiter, LimiterConfig, MemoryStore};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ratelimit_core::Error> {
//! let limiter = DistributedRateLimiter::new(LimiterConfig::new(Arc::new(MemoryStore::new())));
//! let api = AdminApi::new(limiter.clone(), "s3cret")?;
//!
//! let put = Operation::PutRule {
//!     id: "api",
//!     body: br#"{"target": "*", "limit": 10, "window_ms": 1000}"#,
//! };
//! let response = api.handle(AdminRequest::new(Some(b"Bearer s3cret"), put)).await;
//! assert_eq!(response.status(), 201);
//! assert_eq!(limiter.rules().get("api").map(|r| r.quota().limit()), Some(10));
//!
//! let denied = api.handle(AdminRequest::new(Some(b"Bearer guess"), Operation::ListRules)).await;
//! assert_eq!(denied.status(), 401);
//! # Ok(())
//! # }
//! ```

mod error;
mod request;
mod response;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use error::AdminError;
pub use request::{CallerQuery, MAX_BODY_BYTES, RulePatch, RuleSpec};
pub use response::{AdminResponse, ResetView, RuleChanged, RuleView, RulesView, StatusView};

use crate::{DistributedRateLimiter, Error, Identity, Rules, Target};

/// One management request: what to do, and the `Authorization` header it
/// came with.
#[derive(Debug, Clone, Copy)]
pub struct AdminRequest<'a> {
    authorization: Option<&'a [u8]>,
    operation: Operation<'a>,
}

impl<'a> AdminRequest<'a> {
    /// A request with this `Authorization` header value (`None` if absent).
    pub fn new(authorization: Option<&'a [u8]>, operation: Operation<'a>) -> Self {
        Self {
            authorization,
            operation,
        }
    }
}

/// What a management request asks for (see the module docs for routes).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Operation<'a> {
    /// Every rule and the rules version.
    ListRules,
    /// One rule.
    GetRule {
        /// The rule id (from the path, decoded).
        id: &'a str,
    },
    /// Create or replace a rule from a [`RuleSpec`] body.
    PutRule {
        /// The rule id.
        id: &'a str,
        /// The JSON body.
        body: &'a [u8],
    },
    /// Change a rule's limit and/or window from a [`RulePatch`] body.
    PatchRule {
        /// The rule id.
        id: &'a str,
        /// The JSON body.
        body: &'a [u8],
    },
    /// Remove a rule.
    DeleteRule {
        /// The rule id.
        id: &'a str,
    },
    /// A caller's current state under a rule, not charged.
    Status {
        /// The query string ([`CallerQuery`]).
        query: &'a str,
    },
    /// Clear a caller's state under a rule.
    Reset {
        /// The query string ([`CallerQuery`]).
        query: &'a str,
    },
}

/// The management API over one limiter.
#[derive(Clone)]
pub struct AdminApi {
    limiter: DistributedRateLimiter,
    /// SHA-256 of the token: comparing digests takes the same time whatever
    /// the length of the token offered.
    token_digest: [u8; 32],
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The API over `limiter`, for requests bearing `token`. The token must
    /// be non-empty visible ASCII (it travels in a header); with no token
    /// configured, do not serve the API at all.
    pub fn new(limiter: DistributedRateLimiter, token: &str) -> Result<Self, Error> {
        if token.is_empty() {
            return Err(Error::InvalidAdminToken("the token is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidAdminToken(
                "the token must be visible ASCII without spaces",
            ));
        }
        Ok(Self {
            limiter,
            token_digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The limiter it manages.
    pub fn limiter(&self) -> &DistributedRateLimiter {
        &self.limiter
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn is_authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        // `Bearer` is case-insensitive (RFC 9110 §11.1); one or more spaces.
        let Some((scheme, token)) = value.split_at_checked(6) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") || !token.starts_with(b" ") {
            return false;
        }
        let token = token.trim_ascii();
        let digest: [u8; 32] = Sha256::digest(token).into();
        bool::from(digest.ct_eq(&self.token_digest))
    }

    /// Answers one request: 401 unless authorized, else the operation's
    /// result or refusal.
    pub async fn handle(&self, request: AdminRequest<'_>) -> AdminResponse {
        if !self.is_authorized(request.authorization) {
            tracing::warn!("admin API request refused: missing or wrong token");
            return AdminResponse::error(&AdminError::unauthorized());
        }
        match self.run(request.operation).await {
            Ok(response) => response,
            Err(error) => AdminResponse::error(&error),
        }
    }

    /// Answers a request the adapter could not even read (an oversized
    /// body, a malformed path): 401 unless authorized — a caller without
    /// the token learns nothing — else `error`.
    pub fn refuse(&self, authorization: Option<&[u8]>, error: &AdminError) -> AdminResponse {
        if self.is_authorized(authorization) {
            AdminResponse::error(error)
        } else {
            AdminResponse::error(&AdminError::unauthorized())
        }
    }

    async fn run(&self, operation: Operation<'_>) -> Result<AdminResponse, AdminError> {
        let limiter = &self.limiter;
        let failed = |error: Error| AdminError::from_limiter(&error);
        match operation {
            Operation::ListRules => {
                let rules = limiter.rules();
                let view = RulesView {
                    version: rules.version(),
                    rules: rules.iter().map(RuleView::from).collect(),
                };
                Ok(AdminResponse::json(200, &view))
            }
            Operation::GetRule { id } => {
                let rules = limiter.rules();
                let rule = rules.get(id).ok_or_else(|| AdminError::unknown_rule(id))?;
                Ok(self.changed(200, rule))
            }
            Operation::PutRule { id, body } => {
                let rule = RuleSpec::from_json(body)?.into_rule(id)?;
                let previous = limiter.insert_rule(rule.clone()).await.map_err(failed)?;
                tracing::info!(rule = id, "rule put through the admin API");
                Ok(self.changed(if previous.is_some() { 200 } else { 201 }, &rule))
            }
            Operation::PatchRule { id, body } => {
                let patch = RulePatch::from_json(body)?;
                let rule = limiter
                    .modify_rule(id, |rule| patch.apply(rule))
                    .await
                    .map_err(failed)?;
                tracing::info!(rule = id, "rule patched through the admin API");
                Ok(self.changed(200, &rule))
            }
            Operation::DeleteRule { id } => {
                let rule = limiter.remove_rule(id).await.map_err(failed)?;
                tracing::info!(rule = id, "rule deleted through the admin API");
                Ok(self.changed(200, &rule))
            }
            Operation::Status { query } => {
                let query = CallerQuery::parse(query)?;
                let caller = self.caller(&query)?;
                let verdict = limiter
                    .peek(&caller, &Rules::one(query.rule.as_str()))
                    .await
                    .map_err(failed)?;
                let view = StatusView::new(query.target.clone(), query.rule.clone(), &verdict);
                Ok(AdminResponse::json(200, &view))
            }
            Operation::Reset { query } => {
                let query = CallerQuery::parse(query)?;
                let caller = self.caller(&query)?;
                limiter
                    .reset(&caller, &Rules::one(query.rule.as_str()))
                    .await
                    .map_err(failed)?;
                tracing::info!(rule = %query.rule, "caller state reset through the admin API");
                let view = ResetView {
                    target: query.target.clone(),
                    rule: query.rule.clone(),
                    reset: true,
                };
                Ok(AdminResponse::json(200, &view))
            }
        }
    }

    /// A rule and the version now in force.
    fn changed(&self, status: u16, rule: &crate::Rule) -> AdminResponse {
        let view = RuleChanged {
            version: self.limiter.rules().version(),
            rule: RuleView::from(rule),
        };
        AdminResponse::json(status, &view)
    }

    /// The caller a query names. `global` stands for "any caller" and is
    /// accepted only for a global rule (whose one counter all share).
    fn caller<'q>(&self, query: &'q CallerQuery) -> Result<Identity<'q>, AdminError> {
        let rule = self
            .limiter
            .rules()
            .get(&query.rule)
            .cloned()
            .ok_or_else(|| AdminError::unknown_rule(&query.rule))?;
        if query.target == "global" {
            return if *rule.target() == Target::Global {
                Ok(Identity::key("global"))
            } else {
                Err(AdminError::invalid(
                    "target",
                    "`global` names the caller of a global rule only",
                ))
            };
        }
        Identity::parse(&query.target).map_err(|e| AdminError::invalid("target", e.to_string()))
    }
}
