//! Cross-crate integration tests for the `ratelimit` workspace live in
//! `tests/tests/`. This library only carries the README's examples, so that
//! they are compiled (and run, unless marked `no_run`) as doctests.

/// The README's examples.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
