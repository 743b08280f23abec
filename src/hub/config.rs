//! The hub's own settings ([`HubConfig`]), which the server fills from its configuration.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Settings the hub itself needs (the server's [`crate::Config`] fills them).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// Messages kept by a new room unless created with its own `history` (default 100).
    pub default_history: usize,
    /// How long a new room keeps a message, unless created with its own `history_ttl`;
    /// zero (the default) keeps it until it is one of too many.
    pub history_ttl: Duration,
    /// Outbound bytes queued per connection before a slow consumer is closed (default 1 MiB).
    pub queue_limit: usize,
    /// Connections accepted at once; more are refused with 503 at the upgrade (default 100,000).
    pub max_connections: usize,
    /// Connections at once from one client address; more are refused with 429 at the
    /// upgrade. Zero is no limit (the default: clients behind one NAT share an address).
    pub max_connections_per_ip: usize,
    /// How often the heartbeat pings every connection (default 25 s).
    pub heartbeat_interval: Duration,
    /// How long a pong may take before the connection is reaped (default 20 s).
    pub heartbeat_timeout: Duration,
    /// This node's name, unique in the cluster; prefixes connection ids.
    pub node: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            default_history: 100,
            history_ttl: Duration::ZERO,
            queue_limit: 1 << 20,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(20),
            node: random_node_id(),
        }
    }
}

impl HubConfig {
    /// Sets `default_history`.
    #[must_use]
    pub fn with_default_history(mut self, n: usize) -> Self {
        self.default_history = n;
        self
    }

    /// Sets `queue_limit` (bytes).
    #[must_use]
    pub fn with_queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit = bytes;
        self
    }

    /// Sets `max_connections`.
    #[must_use]
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets `max_connections_per_ip` (zero: no limit).
    #[must_use]
    pub fn with_max_connections_per_ip(mut self, n: usize) -> Self {
        self.max_connections_per_ip = n;
        self
    }

    /// Sets the heartbeat interval and timeout.
    #[must_use]
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }
}

pub(super) fn random_node_id() -> String {
    let seed = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{:08x}", seed as u32)
}
