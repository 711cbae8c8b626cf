//! Tower layer for ratelimit, for axum and any tower stack (work in progress: see the project README).
//!
//! This crate is a placeholder in the workspace layout; it has no API yet.
//! Its capability is tracked as an open issue and lands in a later release.
