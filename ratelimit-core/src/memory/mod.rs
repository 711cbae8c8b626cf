//! The in-memory store: see [`MemoryStore`].

mod store;
pub(crate) mod table;

pub use store::{MemoryStore, MemoryStoreBuilder};
