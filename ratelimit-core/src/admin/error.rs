//! [`AdminError`]: what the management API answers when it refuses.

use serde::Serialize;

use crate::Error;

/// A refusal of the management API: an HTTP status and a JSON body
/// `{"error": CODE, "field": FIELD?, "message": TEXT}`.
///
/// `field` names the part of the request at fault — a body field (`limit`,
/// `window_ms`, ...), a path part (`id`), a query parameter (`target`,
/// `rule`), or `body` for the body as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminError {
    #[serde(skip)]
    status: u16,
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

impl AdminError {
    /// 400: the request is malformed; `field` says where.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_request",
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// 401: no token or the wrong one.
    pub(crate) fn unauthorized() -> Self {
        Self {
            status: 401,
            error: "unauthorized",
            field: None,
            message: "a valid `Authorization: Bearer TOKEN` header is required".to_owned(),
        }
    }

    /// 404: no such rule.
    pub(crate) fn unknown_rule(id: &str) -> Self {
        Self {
            status: 404,
            error: "not_found",
            field: Some("id".to_owned()),
            message: format!("no rule {id:?}"),
        }
    }

    /// 413: the body is larger than any valid request.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: 413,
            error: "payload_too_large",
            field: Some("body".to_owned()),
            message: format!("the body is larger than {limit} bytes"),
        }
    }

    /// Maps a limiter error: validation errors to 400 with their field, an
    /// unknown rule to 404, a concurrent change to 409, a store failure to
    /// 503.
    pub(crate) fn from_limiter(error: &Error) -> Self {
        let field = match error {
            Error::ZeroLimit | Error::RateTooHigh { .. } => Some("limit"),
            Error::WindowOutOfRange { .. } => Some("window_ms"),
            Error::ZeroBurst | Error::BurstTooLarge { .. } => Some("burst"),
            Error::EmptyRuleId | Error::InvalidRuleId { .. } => Some("id"),
            Error::InvalidTarget { .. } | Error::RuleNotApplicable { .. } => Some("target"),
            Error::InvalidPolicy(_) => Some("failure_policy"),
            _ => None,
        };
        if let Some(field) = field {
            return Self::invalid(field, error.to_string());
        }
        let (status, code) = match error {
            Error::UnknownRule(id) => return Self::unknown_rule(id),
            Error::RuleExists(_) | Error::RuleConflict(_) => (409, "conflict"),
            error if error.is_store_failure() => (503, "store_unavailable"),
            _ => (500, "internal"),
        };
        Self {
            status,
            error: code,
            field: None,
            message: error.to_string(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The machine-readable code (`invalid_request`, `unauthorized`,
    /// `not_found`, `conflict`, `payload_too_large`, `store_unavailable`,
    /// `internal`).
    pub fn code(&self) -> &'static str {
        self.error
    }

    /// The request part at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// A human-readable explanation.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.status, self.message),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

impl std::error::Error for AdminError {}
