//! Cross-crate integration tests for the `ratelimit` workspace live in
//! `tests/tests/`. This library is empty on purpose; shared test helpers
//! (such as the Redis server harness) will live here.
