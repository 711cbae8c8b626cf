//! [`Topology`]: the shape of the Redis a store or rule store talks to.

use std::sync::Arc;

use crate::Sentinels;
use crate::lazy::redact;
use crate::primary::Primary;

/// One server, a cluster, or a primary named by Redis Sentinel.
#[derive(Debug, Clone)]
pub(crate) enum Topology {
    Single(String),
    Cluster(Vec<String>),
    Sentinel(Sentinels),
    /// A primary already followed, shared by a fleet's store and rules.
    Followed(Arc<Primary>),
}

impl Topology {
    pub(crate) fn cluster<S: AsRef<str>>(nodes: &[S]) -> Self {
        Self::Cluster(nodes.iter().map(|n| n.as_ref().to_owned()).collect())
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// What it reaches, for messages (no passwords).
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Single(url) => redact(url),
            Self::Cluster(nodes) => redact(nodes.first().map_or("", String::as_str)),
            Self::Sentinel(sentinels) => sentinels.describe(),
            Self::Followed(primary) => primary.describe(),
        }
    }
}
