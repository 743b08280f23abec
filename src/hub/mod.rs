//! The hub: connections, users, rooms, presence, history and fan-out, on one node.
//!
//! The hub knows nothing of wire formats. A front end registers each connection it accepts
//! ([`Hub::register`]) and gets back an [`Arc<Conn>`] whose [`Outbox`] it drains into its
//! socket; everything else (joins, publishes, pushes from the HTTP API or from library code
//! through a cloned [`Hub`]) goes through hub methods that build one [`Delivery`] per message
//! and push it to every recipient without awaiting anything.
//!
//! Locking: the conn, user and room maps are sharded `std::sync::Mutex<HashMap>`s held only
//! for a lookup or an insert. Each room has its own mutex, held while a publish assigns its
//! `seq` and pushes to every member, so members of a room see its messages in one order and a
//! join's replay can never be overtaken by a live message. Lock order: map shard, then room,
//! then a connection's outbox or room list. No lock is ever held across an `.await`.
//!
//! # Files
//!
//! One concern each, imports pointing one way: [`conn`] and [`room`] hold the state,
//! [`delivery`], [`outbox`] and [`history`] what moves through it; [`connections`],
//! [`users`], [`membership`], [`catalog`] and [`fanout`] are the hub's operations on it;
//! [`access`], [`expiry`], [`heartbeat`] and [`shutdown`] the policies around them;
//! [`hooks`] what applications plug in; [`persist`] the bridge to the durable store;
//! [`adapter`] the bridge to the other nodes of a cluster.

pub mod access;
pub mod adapter;
pub mod catalog;
pub mod config;
pub mod conn;
pub mod connections;
pub mod delivery;
pub mod durable;
pub mod emit;
mod everywhere;
pub mod expiry;
pub mod fanout;
pub mod grants;
pub mod heartbeat;
pub mod history;
pub mod hooks;
pub mod membership;
pub mod outbox;
pub mod persist;
pub mod room;
mod shards;
pub mod shared;
pub mod shutdown;
pub mod users;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

pub use adapter::{room_user, user_room, Adapter, Answers, CountReply, Query, Reach, RemoteCount};
pub use config::HubConfig;
pub use conn::{Closer, Conn, ConnId, ConnSpec, Frames};
pub use delivery::{now_ms, Body, Delivery, Message, MessageBody, Payload, SioArgs};
pub use durable::Commit;
pub use emit::{BroadcastOptions, Emitted, Emitter, Target};
pub use grants::{Grants, Right};
pub use heartbeat::heartbeat_loop;
pub use history::Replay;
pub use hooks::{Alias, OpCall, OpFuture, Recorder, RoomAliases, Schema};
pub use outbox::{CloseRequest, OutFrame, Outbox, Push};
pub use room::{is_internal, Joined, ReplayFrom, RoomInfo, RoomSettings};
pub use shared::{kept_key, split_kept_key, Kept, KeptMessages, KeptReply, KeptWait, Landed};
pub use users::{Device, OnlineUser, REPLACED};

use crate::stats::Stats;
use hooks::Hooks;
use room::Room;
use shards::{lock, Shards};

struct Inner {
    config: HubConfig,
    next_conn: AtomicU64,
    /// Connections accepted or being accepted (permits held).
    reserved: AtomicUsize,
    /// Permits held per client address, when `max_connections_per_ip` is set.
    per_address: Mutex<HashMap<IpAddr, u32>>,
    shutting_down: AtomicBool,
    idle: tokio::sync::Notify,
    conns: Shards<ConnId, Arc<Conn>>,
    users: Shards<Arc<str>, Vec<Arc<Conn>>>,
    rooms: Shards<Arc<str>, Arc<Room>>,
    stats: Stats,
    hooks: RwLock<Hooks>,
    expiries: Arc<expiry::Expiries>,
    /// Whether any `on_kept` hook is registered (read on every kept message).
    kept_hooks: AtomicBool,
    /// Whether any `on_membership` hook is registered (read on every join and leave).
    membership_hooks: AtomicBool,
    /// Room names the application maps onto internal rooms (direct messages).
    aliases: OnceLock<Arc<dyn hooks::RoomAliases>>,
    /// The durable tier of history and API-created rooms, when one is attached.
    store: OnceLock<Arc<dyn crate::store::Store>>,
    /// The other nodes of the cluster, when this hub is one of several.
    adapter: OnceLock<Arc<dyn adapter::Adapter>>,
    /// Connections by their id (socket.io's "a socket is the room named by its id").
    wire: Shards<Arc<str>, Arc<Conn>>,
}

/// A cloneable handle to the hub: emit from anywhere, inspect rooms and users.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A handle that does not keep the hub alive, for tasks that may outlive it.
#[derive(Clone, Debug)]
pub struct WeakHub(std::sync::Weak<Inner>);

impl WeakHub {
    /// The hub, while it is alive.
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.inner.config.node)
            .finish_non_exhaustive()
    }
}

/// A reserved connection slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit {
    hub: Hub,
    /// The client's address, when known.
    address: Option<IpAddr>,
    /// Whether `address` is counted against `max_connections_per_ip`.
    counted: bool,
}

impl ConnPermit {
    /// The client's address, when the front end gave it.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let (Some(ip), true) = (self.address, self.counted) {
            let mut counts = lock(&self.hub.inner.per_address);
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
        if self.hub.inner.reserved.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.hub.inner.idle.notify_waiters();
        }
    }
}

impl Hub {
    /// A hub with the given settings.
    pub fn new(config: HubConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                next_conn: AtomicU64::new(1),
                reserved: AtomicUsize::new(0),
                per_address: Mutex::default(),
                shutting_down: AtomicBool::new(false),
                idle: tokio::sync::Notify::new(),
                conns: Shards::new(),
                users: Shards::new(),
                rooms: Shards::new(),
                stats: Stats::new(),
                hooks: RwLock::new(Hooks::default()),
                expiries: Arc::default(),
                store: OnceLock::new(),
                adapter: OnceLock::new(),
                wire: Shards::new(),
                aliases: OnceLock::new(),
                kept_hooks: AtomicBool::new(false),
                membership_hooks: AtomicBool::new(false),
            }),
        }
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// A handle that does not keep the hub alive.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// The bytes a connection's outbox holds at most.
    pub fn queue_limit(&self) -> usize {
        self.inner.config.queue_limit
    }

    /// The hub's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }
}
