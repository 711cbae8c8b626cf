//! The in-memory store: see [`MemoryStore`].

mod store;
mod table;

pub use store::{MemoryStore, MemoryStoreBuilder};
