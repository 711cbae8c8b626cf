//! What a check answers: a [`Verdict`] (also at the crate root), one
//! [`RuleDecision`] per rule, and the [`Source`] that decided.

pub use crate::limiter::{RuleDecision, Source, Verdict};
