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

pub mod delivery;
pub mod expiry;
pub mod grants;
pub mod history;
pub mod outbox;
pub mod persist;

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use delivery::{now_ms, Body, Delivery, Message, MessageBody, Payload, SioArgs};
pub use grants::{Grants, Right};
use history::HistoryLog;
pub use history::Replay;
pub use outbox::{CloseRequest, OutFrame, Outbox, Push};

use crate::error::{ErrorCode, HubError};
use crate::stats::{RejectReason, Stats, Transport};

const SHARDS: usize = 16;

/// Settings the hub itself needs (the server's [`crate::Config`] fills them).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// Messages kept by a new room unless created with its own `history` (default 100).
    pub default_history: usize,
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

fn random_node_id() -> String {
    let seed = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("{:08x}", seed as u32)
}

/// The close code for connections replaced by a newer session of their user (the
/// single-session policy).
pub const REPLACED: u16 = 4409;

/// A connection's key inside this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// How a front end ends one of its connections (Socket.IO: a namespace DISCONNECT for
/// 4000, the whole session otherwise).
pub type Closer = Box<dyn Fn(u16, &str) + Send + Sync>;

/// One client connection as the hub sees it: a v1 WebSocket, or one Socket.IO socket (a
/// namespace of an Engine.IO session, whose sockets share the session's outbox).
pub struct Conn {
    key: ConnId,
    wire_id: Arc<str>,
    user: Arc<str>,
    ns: Arc<str>,
    transport: Transport,
    outbox: Arc<Outbox>,
    rooms: Mutex<Vec<Arc<str>>>,
    awaiting_pong: AtomicBool,
    /// When the credentials expire, ms since the epoch; 0 when they do not.
    expires_at: AtomicU64,
    /// What the credentials allow; unset means unrestricted (auth mode `none`).
    grants: OnceLock<Arc<Grants>>,
    closer: OnceLock<Closer>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.wire_id)
            .field("user", &self.user)
            .field("ns", &self.ns)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What a front end tells the hub about a connection it accepted.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnSpec {
    /// The user, anonymous when `None`.
    pub user: Option<String>,
    /// The front end.
    pub transport: Transport,
    /// The namespace (`/` for v1).
    pub ns: Arc<str>,
    /// The outbox to share (Socket.IO sockets of one session); a new one when `None`.
    pub outbox: Option<Arc<Outbox>>,
    /// The connection id to use; generated when `None`.
    pub wire_id: Option<Arc<str>>,
}

impl ConnSpec {
    /// A connection of `transport` in the main namespace.
    pub fn new(user: Option<&str>, transport: Transport) -> Self {
        Self {
            user: user.map(str::to_string),
            transport,
            ns: "/".into(),
            outbox: None,
            wire_id: None,
        }
    }

    /// Puts the connection in namespace `ns`.
    #[must_use]
    pub fn in_ns(mut self, ns: Arc<str>) -> Self {
        self.ns = ns;
        self
    }

    /// Shares an existing outbox.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Arc<Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Uses a given connection id.
    #[must_use]
    pub fn with_wire_id(mut self, id: Arc<str>) -> Self {
        self.wire_id = Some(id);
        self
    }
}

impl Conn {
    /// The key of this connection on this node.
    pub fn id(&self) -> ConnId {
        self.key
    }

    /// The connection id sent to clients, unique in the cluster.
    pub fn wire_id(&self) -> &str {
        &self.wire_id
    }

    /// The user this connection belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The user as a shared string.
    pub fn user_arc(&self) -> Arc<str> {
        self.user.clone()
    }

    /// The front end that accepted this connection.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The namespace (`/` for v1 connections).
    pub fn ns(&self) -> &Arc<str> {
        &self.ns
    }

    /// Sets how the front end closes this connection (once).
    pub fn set_closer(&self, closer: Closer) {
        let _ = self.closer.set(closer);
    }

    /// The outbound queue the front end drains.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Rooms this connection has joined.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.rooms).iter().map(|r| r.to_string()).collect()
    }

    /// Pushes a delivery, encoded for this connection's wire format.
    pub fn deliver(&self, d: &Delivery, volatile: bool) -> Push {
        match self.transport {
            Transport::Ws => self.outbox.push(d.v1_frame(), volatile),
            Transport::SocketIo => self.outbox.push_many(d.sio_frames(), volatile),
        }
    }

    fn deliver_unbounded(&self, d: &Delivery) {
        match self.transport {
            Transport::Ws => {
                self.outbox.push_unbounded(d.v1_frame());
            }
            Transport::SocketIo => {
                for f in d.sio_frames() {
                    self.outbox.push_unbounded(f.clone());
                }
            }
        }
    }

    /// Asks the connection to close with `code` and `reason`, the way its front end does.
    pub fn close(&self, code: u16, reason: &str) {
        match self.closer.get() {
            Some(close) => close(code, reason),
            None => self.outbox.close(CloseRequest::Close(code, reason.into())),
        }
    }

    /// Records a pong (or any proof of life the front end accepts).
    pub fn pong_received(&self) {
        self.awaiting_pong.store(false, Ordering::Relaxed);
    }
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every connection.
    All,
    /// The members of a room.
    Room(Arc<str>),
    /// Every connection of a user.
    User(Arc<str>),
    /// One connection.
    Conn(ConnId),
    /// The members of any of these rooms, and these connections, each once.
    Many {
        /// Rooms.
        rooms: Vec<Arc<str>>,
        /// Connections.
        conns: Vec<ConnId>,
    },
}

/// How a message is delivered: the target and its modifiers. Serializable, so that the same
/// options can travel to the other nodes of a cluster unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastOptions {
    /// The namespace (`/` is shared by v1 and Socket.IO's main namespace).
    pub ns: Arc<str>,
    /// Who receives it.
    pub target: Target,
    /// Members of these rooms are left out.
    pub except_rooms: Vec<Arc<str>>,
    /// Connections left out (typically the sender).
    pub except: Vec<ConnId>,
    /// The sender's user id, shown to recipients as `from`.
    pub from: Option<Arc<str>>,
    /// Drop rather than close a recipient whose queue is full.
    pub volatile: bool,
}

/// The outcome of an emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Emitted {
    /// Connections the message was queued for.
    pub delivered: usize,
    /// The room seq, when the room keeps history.
    pub seq: Option<u64>,
    /// For a user target: whether the user had any connection.
    pub online: Option<bool>,
}

/// Builds an emit: `hub.to_room("lobby").except(me).emit("chat", data)`.
#[derive(Debug)]
#[must_use = "an emitter does nothing until `emit` is called"]
pub struct Emitter<'a> {
    hub: &'a Hub,
    opts: BroadcastOptions,
}

impl Emitter<'_> {
    /// Leaves a connection out.
    pub fn except(mut self, conn: ConnId) -> Self {
        self.opts.except.push(conn);
        self
    }

    /// Names the sender.
    pub fn from(mut self, user: impl Into<Arc<str>>) -> Self {
        self.opts.from = Some(user.into());
        self
    }

    /// Makes the message volatile: dropped for recipients whose queue is full.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// Emits in namespace `ns` instead of `/`.
    pub fn ns(mut self, ns: impl Into<Arc<str>>) -> Self {
        self.opts.ns = ns.into();
        self
    }

    /// Leaves out the members of `room`.
    pub fn except_room(mut self, room: impl Into<Arc<str>>) -> Self {
        self.opts.except_rooms.push(room.into());
        self
    }

    /// Sends `event` with `data` exactly as given: Socket.IO clients get `(event, data)`,
    /// v1 clients a `message`.
    pub fn emit(self, event: &str, data: impl Into<Payload>) -> Result<Emitted, HubError> {
        let args = match data.into() {
            Payload::Json(raw) => SioArgs::one(raw.to_value()),
            Payload::Binary(b) => SioArgs {
                values: vec![crate::protocol::socketio::placeholder(0)],
                bin: vec![b],
            },
        };
        self.emit_args(event, args)
    }

    /// Sends `event` with several Socket.IO arguments (v1 clients get them as an array).
    pub fn emit_args(self, event: &str, args: SioArgs) -> Result<Emitted, HubError> {
        self.hub
            .dispatch(&self.opts, event.into(), MessageBody::Args(args))
    }

    /// Publishes `event` with `data` as a hub message (what v1 ops and the HTTP API send):
    /// Socket.IO clients get `(event, data, {room, from, seq, ts})`.
    pub fn publish(self, event: &str, data: impl Into<Payload>) -> Result<Emitted, HubError> {
        self.hub
            .dispatch(&self.opts, event.into(), MessageBody::Hub(data.into()))
    }
}

/// The settings of a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// The room name.
    pub name: String,
    /// At most this many users (not connections) may be members; `None` is unlimited.
    pub max_users: Option<usize>,
    /// Private rooms need an explicit grant to join (enforced when auth is on).
    #[serde(default)]
    pub private: bool,
    /// Messages kept for replay; 0 keeps none and numbers nothing.
    pub history: usize,
    /// Whether members hear `presence` events. On by default; a broadcast channel with
    /// thousands of subscribers turns it off, since every join would reach every member.
    #[serde(default = "yes")]
    pub presence: bool,
}

fn yes() -> bool {
    true
}

/// A room as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// The room name.
    pub name: String,
    /// Users in the room.
    pub members: usize,
    /// The user limit, `null` when unlimited.
    pub max_users: Option<usize>,
    /// Whether joining needs a grant.
    pub private: bool,
    /// Messages kept.
    pub history: usize,
    /// Whether members hear presence events.
    pub presence: bool,
}

/// What a join returns; the front end turns it into its ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: Arc<str>,
    /// The last seq, for history rooms.
    pub seq: Option<u64>,
    /// Users in the room after the join.
    pub members: usize,
    /// Some requested history was no longer kept.
    pub gap: bool,
}

/// Which history a join replays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Nothing.
    #[default]
    None,
    /// Messages after this seq.
    Since(u64),
    /// The n latest.
    Latest(u64),
}

#[derive(Debug)]
struct RoomState {
    dead: bool,
    /// Created through the API: lives until deleted, even when empty.
    pinned: bool,
    settings: RoomSettings,
    members: HashMap<ConnId, Arc<Conn>>,
    /// Connections per user in this room.
    users: HashMap<Arc<str>, usize>,
    log: HistoryLog,
}

impl RoomState {
    fn removable(&self) -> bool {
        !self.pinned && self.members.is_empty() && self.log.is_empty()
    }

    fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.settings.name.clone(),
            members: self.users.len(),
            max_users: self.settings.max_users,
            private: self.settings.private,
            history: self.settings.history,
            presence: self.settings.presence,
        }
    }
}

#[derive(Debug)]
struct Room {
    /// The name clients see.
    name: Arc<str>,
    /// The map key: the name in `/`, `ns` + NUL + name elsewhere.
    key: Arc<str>,
    ns: Arc<str>,
    state: Mutex<RoomState>,
}

/// The rooms map key of `room` in `ns` (names cannot contain NUL, so keys never collide).
fn room_key(ns: &str, room: &str) -> Arc<str> {
    if ns == "/" {
        room.into()
    } else {
        format!("{ns}\0{room}").into()
    }
}

/// A `HashMap` split into independently locked shards.
#[derive(Debug)]
struct Shards<K, V> {
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<K, V>>]>,
}

impl<K: Hash + Eq, V> Shards<K, V> {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, HashMap<K, V>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        lock(&self.shards[i])
    }

    fn all(&self) -> impl Iterator<Item = MutexGuard<'_, HashMap<K, V>>> {
        self.shards.iter().map(lock)
    }
}

/// Locks a mutex, ignoring poison: every critical section in the hub leaves its data
/// consistent at each step, so a panic elsewhere does not make it unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The future an op handler returns: the ack fields (an object), or an error.
pub type OpFuture =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, HubError>> + Send>>;
type OpHandler = Arc<dyn Fn(OpCall) -> OpFuture + Send + Sync>;
type ConnHook = Arc<dyn Fn(&Hub, &Arc<Conn>) + Send + Sync>;
type ShutdownHook = Arc<dyn Fn(u16, &str) + Send + Sync>;

/// Keeps what a namespace delivered so reconnecting clients can catch up (Socket.IO's
/// connection state recovery).
pub trait Recorder: Send + Sync {
    /// The offset of the next recorded message.
    fn next_offset(&self) -> Arc<str>;
    /// Stores a delivery made with `opts`.
    fn record(&self, hub: &Hub, opts: &BroadcastOptions, d: &Arc<Delivery>);
}

/// A call to an application-defined op.
#[derive(Clone, Debug)]
pub struct OpCall {
    /// The hub, to emit from the handler.
    pub hub: Hub,
    /// The calling connection.
    pub conn: Arc<Conn>,
    /// The op name.
    pub op: String,
    /// The whole client frame.
    pub frame: serde_json::Value,
}

#[derive(Default)]
struct Hooks {
    ops: HashMap<String, OpHandler>,
    on_connect: Vec<ConnHook>,
    on_disconnect: Vec<ConnHook>,
    on_shutdown: Vec<ShutdownHook>,
    recorders: HashMap<Arc<str>, Arc<dyn Recorder>>,
}

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
    /// The durable tier of history and API-created rooms, when one is attached.
    store: OnceLock<Arc<dyn crate::store::Store>>,
}

/// A cloneable handle to the hub: emit from anywhere, inspect rooms and users.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
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
    /// The client address counted against `max_connections_per_ip`, if any.
    address: Option<IpAddr>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.address {
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
            }),
        }
    }

    /// The hub's settings.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    /// The hub's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    // ---- connections -------------------------------------------------------------------

    /// Reserves a connection slot, or `server_full` / shutting down. Call before the
    /// upgrade, so a refused client never becomes a WebSocket.
    pub fn try_reserve(&self) -> Result<ConnPermit, HubError> {
        self.try_reserve_from(None)
    }

    /// [`Self::try_reserve`] for a client at `address`, which also counts against
    /// `max_connections_per_ip`: `rate_limited` when that address holds as many already.
    /// Refusals are counted in the stats (`upgrade_rejected`).
    pub fn try_reserve_from(&self, address: Option<IpAddr>) -> Result<ConnPermit, HubError> {
        let refuse = |reason: RejectReason, e: HubError| {
            self.inner.stats.upgrade_rejected(reason);
            Err(e)
        };
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return refuse(
                RejectReason::ShuttingDown,
                HubError::new(ErrorCode::ServerFull, "the server is shutting down"),
            );
        }
        let max = self.inner.config.max_connections;
        let mut n = self.inner.reserved.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return refuse(
                    RejectReason::ServerFull,
                    HubError::new(
                        ErrorCode::ServerFull,
                        format!("the server is at its limit of {max} connections"),
                    ),
                );
            }
            match self.inner.reserved.compare_exchange_weak(
                n,
                n + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => n = actual,
            }
        }
        // From here on dropping the permit gives the slot back.
        let mut permit = ConnPermit {
            hub: self.clone(),
            address: None,
        };
        let per_ip = self.inner.config.max_connections_per_ip;
        if let (Some(ip), true) = (address, per_ip > 0) {
            let mut counts = lock(&self.inner.per_address);
            let held = counts.entry(ip).or_insert(0);
            if *held as usize >= per_ip {
                drop(counts);
                return refuse(
                    RejectReason::RateLimited,
                    HubError::new(
                        ErrorCode::RateLimited,
                        format!("this address already has {per_ip} connections open"),
                    ),
                );
            }
            *held += 1;
            permit.address = Some(ip);
        }
        Ok(permit)
    }

    /// A fresh connection id, unique in the cluster.
    pub fn new_wire_id(&self) -> (ConnId, Arc<str>) {
        let key = ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed));
        (
            key,
            format!("{}-{:x}", self.inner.config.node, key.0).into(),
        )
    }

    /// Registers an accepted v1 connection of `user` (anonymous when `None`) in `/`.
    /// `greeting` builds the front end's first frame (the v1 `welcome`), queued before
    /// anything the `on_connect` hooks or other connections may send.
    pub fn register(
        &self,
        user: Option<&str>,
        transport: Transport,
        greeting: impl FnOnce(&Conn) -> Option<OutFrame>,
    ) -> Arc<Conn> {
        self.register_with(ConnSpec::new(user, transport), greeting)
    }

    /// Registers an accepted connection as `spec` says.
    pub fn register_with(
        &self,
        spec: ConnSpec,
        greeting: impl FnOnce(&Conn) -> Option<OutFrame>,
    ) -> Arc<Conn> {
        let (key, generated) = self.new_wire_id();
        let wire_id = spec.wire_id.unwrap_or(generated);
        let user: Arc<str> = match spec.user {
            Some(u) if !u.is_empty() => u.into(),
            _ => format!("anon-{wire_id}").into(),
        };
        let conn = Arc::new(Conn {
            key,
            wire_id,
            user: user.clone(),
            ns: spec.ns,
            transport: spec.transport,
            outbox: spec
                .outbox
                .unwrap_or_else(|| Arc::new(Outbox::new(self.inner.config.queue_limit))),
            rooms: Mutex::new(Vec::new()),
            awaiting_pong: AtomicBool::new(false),
            expires_at: AtomicU64::new(0),
            grants: OnceLock::new(),
            closer: OnceLock::new(),
        });
        if let Some(frame) = greeting(&conn) {
            conn.outbox.push_unbounded(frame);
        }
        self.inner.conns.shard(&key).insert(key, conn.clone());
        self.inner
            .users
            .shard(&user)
            .entry(user)
            .or_default()
            .push(conn.clone());
        if conn.transport == Transport::Ws {
            // Socket.IO counts Engine.IO sessions, not namespace sockets.
            self.inner.stats.connection_opened(conn.transport);
        }
        let hooks: Vec<ConnHook> = self.hooks().on_connect.clone();
        for h in hooks {
            h(self, &conn);
        }
        conn
    }

    /// Removes a connection: it leaves its rooms (presence follows) and its user.
    pub fn unregister(&self, conn: &Arc<Conn>) {
        if self
            .inner
            .conns
            .shard(&conn.key)
            .remove(&conn.key)
            .is_none()
        {
            return;
        }
        let rooms = std::mem::take(&mut *lock(&conn.rooms));
        for room in rooms {
            self.leave_room(conn, &room, false);
        }
        {
            let mut users = self.inner.users.shard(&conn.user);
            if let Some(list) = users.get_mut(&conn.user) {
                list.retain(|c| c.key != conn.key);
                if list.is_empty() {
                    users.remove(&conn.user);
                }
            }
        }
        if conn.transport == Transport::Ws {
            self.inner.stats.connection_closed(conn.transport);
        }
        let hooks: Vec<ConnHook> = self.hooks().on_disconnect.clone();
        for h in hooks {
            h(self, conn);
        }
    }

    /// A connection by key.
    pub fn conn(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.inner.conns.shard(&id).get(&id).cloned()
    }

    /// Open connections on this node (v1 connections and Socket.IO sockets).
    pub fn connection_count(&self) -> usize {
        self.inner.conns.all().map(|s| s.len()).sum()
    }

    /// Users with at least one connection, sorted.
    pub fn users_online(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .inner
            .users
            .all()
            .flat_map(|s| s.keys().map(|u| u.to_string()).collect::<Vec<_>>())
            .collect();
        users.sort();
        users
    }

    /// Connections per online user, sorted by user.
    pub fn connections_per_user(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .inner
            .users
            .all()
            .flat_map(|s| {
                s.iter()
                    .map(|(u, c)| (u.to_string(), c.len()))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    }

    /// Whether a user has any connection.
    pub fn is_online(&self, user: &str) -> bool {
        self.inner.users.shard(user).contains_key(user)
    }

    /// Closes every connection of `user` with `code`; returns how many.
    pub fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> usize {
        let conns = self.user_conns(user);
        for c in &conns {
            c.close(code, reason);
        }
        conns.len()
    }

    fn user_conns(&self, user: &str) -> Vec<Arc<Conn>> {
        self.inner
            .users
            .shard(user)
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    fn all_conns(&self) -> Vec<Arc<Conn>> {
        self.inner
            .conns
            .all()
            .flat_map(|s| s.values().cloned().collect::<Vec<_>>())
            .collect()
    }

    // ---- hooks -------------------------------------------------------------------------

    fn hooks(&self) -> std::sync::RwLockReadGuard<'_, Hooks> {
        self.inner.hooks.read().unwrap_or_else(|p| p.into_inner())
    }

    fn hooks_mut(&self) -> std::sync::RwLockWriteGuard<'_, Hooks> {
        self.inner.hooks.write().unwrap_or_else(|p| p.into_inner())
    }

    /// What `conn`'s credentials allow in rooms, when they were restricted.
    pub fn grants(&self, conn: &Conn) -> Option<Arc<Grants>> {
        conn.grants.get().cloned()
    }

    /// Restricts `conn` to what `grants` allow (set once, from its credentials). Grants
    /// with `single_session` close the user's other connections with 4409.
    pub fn set_grants(&self, conn: &Arc<Conn>, grants: Grants) {
        let single = grants.single_session;
        let _ = conn.grants.set(Arc::new(grants));
        if single {
            self.close_others(conn, REPLACED, "replaced by a newer session");
        }
    }

    /// `Ok` when `conn` has `right` in `room` (of its namespace); `forbidden` otherwise.
    pub fn authorize(&self, conn: &Conn, room: &str, right: Right) -> Result<(), HubError> {
        let Some(g) = conn.grants.get() else {
            return Ok(());
        };
        let private = self
            .room_in(&conn.ns, room)
            .is_some_and(|r| lock(&r.state).settings.private);
        if g.allows(room, private, right) {
            Ok(())
        } else {
            Err(forbidden_in(room, right))
        }
    }

    /// `Ok` when `conn` may broadcast to its whole namespace.
    pub fn authorize_broadcast(&self, conn: &Conn) -> Result<(), HubError> {
        match conn.grants.get() {
            Some(g) if !g.broadcast => Err(HubError::new(
                ErrorCode::Forbidden,
                "broadcasting needs the `broadcast` claim",
            )),
            _ => Ok(()),
        }
    }

    /// Closes the other connections of `conn`'s user with `code` (the single-session
    /// policy), except those sharing its outbox (the other namespaces of one Socket.IO
    /// session). Returns how many were closed.
    pub fn close_others(&self, conn: &Arc<Conn>, code: u16, reason: &str) -> usize {
        let others: Vec<Arc<Conn>> = self
            .user_conns(conn.user())
            .into_iter()
            .filter(|c| c.key != conn.key && !Arc::ptr_eq(&c.outbox, &conn.outbox))
            .collect();
        for c in &others {
            c.close(code, reason);
        }
        others.len()
    }

    /// Registers a handler for an application op (`{"op": "<name>", ...}` on `/ws`). The
    /// handler's `Ok(Some(object))` becomes the ack's fields; `Err` becomes an `error`.
    pub fn on_op<F, Fut>(&self, op: &str, handler: F)
    where
        F: Fn(OpCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<serde_json::Value>, HubError>> + Send + 'static,
    {
        let h: OpHandler = Arc::new(move |call| Box::pin(handler(call)));
        self.hooks_mut().ops.insert(op.to_string(), h);
    }

    /// The handler registered for `op`, if any.
    pub fn op_handler(&self, op: &str) -> Option<impl Fn(OpCall) -> OpFuture> {
        self.hooks().ops.get(op).cloned().map(|h| move |c| h(c))
    }

    /// Records the deliveries of namespace `ns` (not volatile ones).
    pub fn set_recorder(&self, ns: &str, recorder: Arc<dyn Recorder>) {
        self.hooks_mut().recorders.insert(ns.into(), recorder);
    }

    fn recorder(&self, ns: &str) -> Option<Arc<dyn Recorder>> {
        self.hooks().recorders.get(ns).cloned()
    }

    /// Runs `f` for each new connection, after it is registered.
    pub fn on_connect(&self, f: impl Fn(&Hub, &Arc<Conn>) + Send + Sync + 'static) {
        self.hooks_mut().on_connect.push(Arc::new(f));
    }

    /// Runs `f` for each connection that ends, after it left its rooms.
    pub fn on_disconnect(&self, f: impl Fn(&Hub, &Arc<Conn>) + Send + Sync + 'static) {
        self.hooks_mut().on_disconnect.push(Arc::new(f));
    }

    // ---- emitting ----------------------------------------------------------------------

    /// Emits to a room's members.
    pub fn to_room(&self, room: &str) -> Emitter<'_> {
        self.emitter(Target::Room(room.into()))
    }

    /// Emits to every connection of a user.
    pub fn to_user(&self, user: &str) -> Emitter<'_> {
        self.emitter(Target::User(user.into()))
    }

    /// Emits to every connection.
    pub fn to_all(&self) -> Emitter<'_> {
        self.emitter(Target::All)
    }

    /// Emits to one connection.
    pub fn to_conn(&self, conn: ConnId) -> Emitter<'_> {
        self.emitter(Target::Conn(conn))
    }

    fn emitter(&self, target: Target) -> Emitter<'_> {
        Emitter {
            hub: self,
            opts: BroadcastOptions {
                ns: "/".into(),
                target,
                except_rooms: Vec::new(),
                except: Vec::new(),
                from: None,
                volatile: false,
            },
        }
    }

    /// The connections `opts` reaches, each once (for broadcasts that collect acks).
    pub fn recipients(&self, opts: &BroadcastOptions) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        self.for_each_recipient(opts, |c| out.push(c.clone()));
        out
    }

    /// Calls `f` for each connection `opts` reaches (no history room semantics).
    fn for_each_recipient(&self, opts: &BroadcastOptions, mut f: impl FnMut(&Arc<Conn>)) {
        let keep = |c: &Arc<Conn>| {
            *c.ns == *opts.ns
                && !opts.except.contains(&c.key)
                && !self.in_rooms(c, &opts.except_rooms)
        };
        match &opts.target {
            Target::All => {
                for shard in self.inner.conns.all() {
                    shard.values().filter(|c| keep(c)).for_each(&mut f);
                }
            }
            Target::User(user) => self.user_conns(user).iter().filter(|c| keep(c)).for_each(f),
            Target::Conn(id) => self.conn(*id).iter().filter(|c| keep(c)).for_each(f),
            Target::Room(room) => self.for_each_recipient(
                &BroadcastOptions {
                    target: Target::Many {
                        rooms: vec![room.clone()],
                        conns: Vec::new(),
                    },
                    ..opts.clone()
                },
                f,
            ),
            Target::Many { rooms, conns } => {
                let mut seen = std::collections::HashSet::new();
                for room in rooms {
                    if let Some(r) = self.room_in(&opts.ns, room) {
                        let members: Vec<Arc<Conn>> =
                            lock(&r.state).members.values().cloned().collect();
                        for c in members.iter().filter(|c| keep(c)) {
                            if seen.insert(c.key) {
                                f(c);
                            }
                        }
                    }
                }
                for id in conns {
                    if let Some(c) = self.conn(*id) {
                        if keep(&c) && seen.insert(c.key) {
                            f(&c);
                        }
                    }
                }
            }
        }
    }

    fn in_rooms(&self, conn: &Conn, rooms: &[Arc<str>]) -> bool {
        !rooms.is_empty() && lock(&conn.rooms).iter().any(|r| rooms.contains(r))
    }

    /// Delivers `event` with `body` as `opts` says.
    pub fn dispatch(
        &self,
        opts: &BroadcastOptions,
        event: Arc<str>,
        body: MessageBody,
    ) -> Result<Emitted, HubError> {
        let recorder = if opts.volatile {
            None
        } else {
            self.recorder(&opts.ns)
        };
        let made = std::cell::RefCell::new(None::<Arc<Delivery>>);
        let message = |room: Option<Arc<str>>, seq: Option<u64>| {
            let d = Delivery::new(Body::Message(Message {
                ns: opts.ns.clone(),
                room,
                event: event.clone(),
                body: body.clone(),
                from: opts.from.clone(),
                seq,
                ts: now_ms(),
                offset: recorder.as_ref().map(|r| r.next_offset()),
            }));
            *made.borrow_mut() = Some(d.clone());
            d
        };
        let out = match &opts.target {
            Target::Room(room) if opts.except_rooms.is_empty() => {
                self.publish_room(room, opts, message)?
            }
            Target::User(_) => {
                let d = message(None, None);
                let mut delivered = 0;
                let mut online = false;
                self.for_each_recipient(opts, |c| {
                    online = true;
                    delivered += self.push_one(c, &d, opts.volatile);
                });
                Emitted {
                    delivered,
                    seq: None,
                    online: Some(online),
                }
            }
            Target::Room(room) => {
                check_name(room, "room")?;
                let d = message(Some(room.clone()), None);
                self.fan_out_all(opts, &d)
            }
            Target::All | Target::Conn(_) | Target::Many { .. } => {
                let d = message(None, None);
                self.fan_out_all(opts, &d)
            }
        };
        self.inner.stats.messages_out(out.delivered as u64);
        if let (Some(r), Some(d)) = (recorder, made.into_inner()) {
            r.record(self, opts, &d);
        }
        Ok(out)
    }

    fn fan_out_all(&self, opts: &BroadcastOptions, d: &Delivery) -> Emitted {
        let mut delivered = 0;
        self.for_each_recipient(opts, |c| delivered += self.push_one(c, d, opts.volatile));
        Emitted {
            delivered,
            ..Emitted::default()
        }
    }

    fn push_one(&self, c: &Conn, d: &Delivery, volatile: bool) -> usize {
        match c.deliver(d, volatile) {
            Push::Queued => 1,
            Push::Dropped => {
                self.inner.stats.volatile_dropped();
                0
            }
            Push::Overflow => {
                self.inner.stats.slow_consumer();
                0
            }
            Push::Closed => 0,
        }
    }

    /// Pushes `d` to each member not excluded; returns how many queued it.
    fn fan_out<'c>(
        &self,
        conns: impl Iterator<Item = &'c Arc<Conn>>,
        d: &Delivery,
        except: &[ConnId],
        volatile: bool,
    ) -> usize {
        conns
            .filter(|c| !except.contains(&c.key))
            .map(|c| self.push_one(c, d, volatile))
            .sum()
    }

    fn publish_room(
        &self,
        room: &Arc<str>,
        opts: &BroadcastOptions,
        message: impl Fn(Option<Arc<str>>, Option<u64>) -> Arc<Delivery>,
    ) -> Result<Emitted, HubError> {
        check_name(room, "room")?;
        loop {
            let r = self.room_or_create(&opts.ns, room);
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            let seq = st.log.enabled().then(|| st.log.next_seq());
            let d = message(Some(r.name.clone()), seq);
            if let Some(seq) = seq {
                st.log.append(seq, d.clone());
                if let (Some(store), Some(row)) = (self.inner.store.get(), persist::row_of(&d)) {
                    if !store.append(row, st.log.capacity()) {
                        self.inner.stats.store_dropped();
                    }
                }
            }
            let delivered = self.fan_out(st.members.values(), &d, &opts.except, opts.volatile);
            let removable = st.removable();
            drop(st);
            if removable {
                self.remove_if_removable(&r);
            }
            return Ok(Emitted {
                delivered,
                seq,
                online: None,
            });
        }
    }

    // ---- rooms -------------------------------------------------------------------------

    fn default_settings(&self, name: &str) -> RoomSettings {
        RoomSettings {
            name: name.to_string(),
            max_users: None,
            private: false,
            history: self.inner.config.default_history,
            presence: true,
        }
    }

    fn room_or_create(&self, ns: &Arc<str>, name: &str) -> Arc<Room> {
        let key = room_key(ns, name);
        let mut rooms = self.inner.rooms.shard(&*key);
        rooms
            .entry(key.clone())
            .or_insert_with(|| {
                let settings = self.default_settings(name);
                Arc::new(Room {
                    name: name.into(),
                    key,
                    ns: ns.clone(),
                    state: Mutex::new(RoomState {
                        dead: false,
                        pinned: false,
                        log: HistoryLog::new(settings.history),
                        settings,
                        members: HashMap::new(),
                        users: HashMap::new(),
                    }),
                })
            })
            .clone()
    }

    fn room_in(&self, ns: &str, name: &str) -> Option<Arc<Room>> {
        let key = room_key(ns, name);
        self.inner.rooms.shard(&*key).get(&key).cloned()
    }

    fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.room_in("/", name)
    }

    fn remove_if_removable(&self, room: &Arc<Room>) {
        let mut rooms = self.inner.rooms.shard(&*room.key);
        let mut st = lock(&room.state);
        if st.removable() && !st.dead {
            st.dead = true;
            rooms.remove(&room.key);
        }
    }

    /// Attaches the durable store: from now on history messages, API-created rooms and
    /// deletions are written to it. Call once, after [`Self::restore`] and before serving;
    /// false if a store was attached already.
    pub fn set_store(&self, store: Arc<dyn crate::store::Store>) -> bool {
        self.inner.store.set(store).is_ok()
    }

    /// The attached store, if any.
    pub fn store(&self) -> Option<&Arc<dyn crate::store::Store>> {
        self.inner.store.get()
    }

    /// Brings back rooms read from the store: their settings (the defaults for rooms that
    /// were not created through the API), `seq` counters and kept messages. Rooms that
    /// exist already and damaged messages are skipped; returns how many rooms came back.
    pub fn restore(&self, rows: Vec<crate::store::RoomRow>) -> usize {
        let mut restored = 0;
        for row in rows {
            let pinned = row.settings.is_some();
            let settings = match row.settings.as_deref().map(serde_json::from_str) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    tracing::warn!("store: room `{}` has unreadable settings ({e})", row.name);
                    self.default_settings(&row.name)
                }
                None => self.default_settings(&row.name),
            };
            let total = row.messages.len();
            let entries: Vec<(u64, Arc<Delivery>)> = row
                .messages
                .into_iter()
                .filter_map(|m| {
                    let seq = m.seq;
                    persist::delivery_of(m).map(|d| (seq, d))
                })
                .collect();
            if entries.len() < total {
                tracing::warn!(
                    "store: room `{}`: {} damaged messages skipped",
                    row.name,
                    total - entries.len()
                );
            }
            let log = HistoryLog::restored(settings.history, row.last_seq, entries);
            if !pinned && log.is_empty() {
                continue;
            }
            let ns: Arc<str> = row.ns.as_str().into();
            let key = room_key(&ns, &row.name);
            let mut rooms = self.inner.rooms.shard(&*key);
            if rooms.contains_key(&key) {
                continue;
            }
            rooms.insert(
                key.clone(),
                Arc::new(Room {
                    name: row.name.as_str().into(),
                    key,
                    ns,
                    state: Mutex::new(RoomState {
                        dead: false,
                        pinned,
                        log,
                        settings,
                        members: HashMap::new(),
                        users: HashMap::new(),
                    }),
                }),
            );
            restored += 1;
        }
        restored
    }

    /// Creates a room of `/` with its own settings; `room_exists` if it exists.
    pub fn create_room(&self, settings: RoomSettings) -> Result<RoomInfo, HubError> {
        check_name(&settings.name, "name")?;
        let name: Arc<str> = settings.name.as_str().into();
        let mut rooms = self.inner.rooms.shard(&*name);
        if rooms.contains_key(&name) {
            return Err(HubError::new(
                ErrorCode::RoomExists,
                format!("room `{name}` already exists"),
            ));
        }
        let st = RoomState {
            dead: false,
            pinned: true,
            log: HistoryLog::new(settings.history),
            settings,
            members: HashMap::new(),
            users: HashMap::new(),
        };
        let info = st.info();
        if let Some(store) = self.inner.store.get() {
            let json = serde_json::to_string(&st.settings).unwrap_or_default();
            if !store.save_room("/", &name, json) {
                self.inner.stats.store_dropped();
            }
        }
        rooms.insert(
            name.clone(),
            Arc::new(Room {
                name: name.clone(),
                key: name,
                ns: "/".into(),
                state: Mutex::new(st),
            }),
        );
        Ok(info)
    }

    /// A room's settings and member count (`/`).
    pub fn room_info(&self, name: &str) -> Option<RoomInfo> {
        self.room(name).map(|r| lock(&r.state).info())
    }

    /// Every room of `/`, sorted by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self
            .inner
            .rooms
            .all()
            .flat_map(|s| {
                s.values()
                    .filter(|r| &*r.ns == "/")
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut infos: Vec<RoomInfo> = rooms.iter().map(|r| lock(&r.state).info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Deletes a room of `/` and its history; its members are unsubscribed. False if unknown.
    pub fn delete_room(&self, name: &str) -> bool {
        // The map's shard, then the room: the order `remove_if_removable` takes them in.
        // The store hears of the deletion while both are held, so every write of the old
        // room is queued before it and every write of a room of the same name made later
        // (which needs the shard) after it.
        let mut shard = self.inner.rooms.shard(name);
        let Some(room) = shard.remove(name) else {
            return false;
        };
        let members: Vec<Arc<Conn>> = {
            let mut st = lock(&room.state);
            st.dead = true;
            st.log.clear();
            st.users.clear();
            if let Some(store) = self.inner.store.get() {
                if !store.delete_room("/", name) {
                    self.inner.stats.store_dropped();
                }
            }
            st.members.drain().map(|(_, c)| c).collect()
        };
        drop(shard);
        for c in members {
            lock(&c.rooms).retain(|r| **r != *name);
        }
        true
    }

    /// Users in a room of `/`, sorted; `None` if the room does not exist.
    pub fn presence(&self, room: &str) -> Option<Vec<String>> {
        let r = self.room(room)?;
        let st = lock(&r.state);
        let mut users: Vec<String> = st.users.keys().map(|u| u.to_string()).collect();
        users.sort();
        Some(users)
    }

    /// A page of a room's history, newest first, and the `before` of the next page.
    pub fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Option<(Vec<Arc<Delivery>>, Option<u64>)> {
        let r = self.room(room)?;
        let st = lock(&r.state);
        Some(st.log.before(before, limit))
    }

    /// Subscribes `conn` to `room` (in the connection's namespace), replaying history as
    /// asked. Replayed messages are queued first, then whatever `ack` returns (the front
    /// end's ack frames), both while the room is locked, so no live message can come
    /// between them.
    pub fn join(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        replay: ReplayFrom,
        ack: impl FnOnce(&Joined) -> Option<OutFrame>,
    ) -> Result<Joined, HubError> {
        self.join_with(conn, room, replay, |j| ack(j).into_iter().collect())
    }

    /// Like [`Self::join`], with an ack of several frames.
    pub fn join_with(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        replay: ReplayFrom,
        ack: impl FnOnce(&Joined) -> Vec<OutFrame>,
    ) -> Result<Joined, HubError> {
        check_name(room, "room")?;
        loop {
            let r = self.room_or_create(&conn.ns, room);
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            if let Some(g) = conn.grants.get() {
                let private = st.settings.private;
                let wanted: &[Right] = match replay {
                    ReplayFrom::None => &[Right::Join],
                    _ => &[Right::Join, Right::History],
                };
                if let Some(&missing) = wanted.iter().find(|r| !g.allows(room, private, **r)) {
                    let removable = st.removable();
                    drop(st);
                    if removable {
                        self.remove_if_removable(&r);
                    }
                    return Err(forbidden_in(room, missing));
                }
            }
            let already_user = st.users.contains_key(&conn.user);
            if let Some(max) = st.settings.max_users {
                if !already_user && st.users.len() >= max {
                    let removable = st.removable();
                    drop(st);
                    if removable {
                        self.remove_if_removable(&r);
                    }
                    return Err(HubError::new(
                        ErrorCode::RoomFull,
                        format!("room `{room}` is full ({max} users)"),
                    ));
                }
            }
            let newly = st.members.insert(conn.key, conn.clone()).is_none();
            if newly {
                *st.users.entry(conn.user.clone()).or_insert(0) += 1;
                lock(&conn.rooms).push(r.name.clone());
            }
            let replayed = match replay {
                ReplayFrom::None => Replay::default(),
                ReplayFrom::Since(s) => st.log.since(s),
                ReplayFrom::Latest(n) => st.log.latest(n as usize),
            };
            for d in &replayed.messages {
                conn.deliver_unbounded(d);
            }
            self.inner
                .stats
                .messages_out(replayed.messages.len() as u64);
            let joined = Joined {
                room: r.name.clone(),
                seq: st.log.enabled().then(|| st.log.last_seq()),
                members: st.users.len(),
                gap: replayed.gap,
            };
            for frame in ack(&joined) {
                conn.outbox.push_unbounded(frame);
            }
            if newly && !already_user && st.settings.presence {
                let d = Delivery::new(Body::Presence {
                    ns: conn.ns.clone(),
                    room: r.name.clone(),
                    user: conn.user.clone(),
                    joined: true,
                    count: st.users.len() as u64,
                });
                let private = st.settings.private;
                let watchers = st
                    .members
                    .values()
                    .filter(|c| may_see_presence(c, &r.name, private));
                let n = self.fan_out(watchers, &d, &[conn.key], false);
                self.inner.stats.messages_out(n as u64);
            }
            return Ok(joined);
        }
    }

    /// Unsubscribes `conn` from `room`; leaving a room not joined is fine.
    pub fn leave(&self, conn: &Arc<Conn>, room: &str) {
        self.leave_room(conn, room, true);
    }

    fn leave_room(&self, conn: &Arc<Conn>, room: &str, update_conn: bool) {
        if update_conn {
            lock(&conn.rooms).retain(|r| **r != *room);
        }
        let Some(r) = self.room_in(&conn.ns, room) else {
            return;
        };
        let mut st = lock(&r.state);
        if st.members.remove(&conn.key).is_none() {
            return;
        }
        let last_of_user = match st.users.get_mut(&conn.user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                st.users.remove(&conn.user);
                true
            }
        };
        if last_of_user && !st.members.is_empty() && st.settings.presence {
            let d = Delivery::new(Body::Presence {
                ns: conn.ns.clone(),
                room: r.name.clone(),
                user: conn.user.clone(),
                joined: false,
                count: st.users.len() as u64,
            });
            let private = st.settings.private;
            let watchers = st
                .members
                .values()
                .filter(|c| may_see_presence(c, &r.name, private));
            let n = self.fan_out(watchers, &d, &[], false);
            self.inner.stats.messages_out(n as u64);
        }
        let removable = st.removable();
        drop(st);
        if removable {
            self.remove_if_removable(&r);
        }
    }

    // ---- lifecycle ---------------------------------------------------------------------

    /// Starts the heartbeat of v1 connections: one task pings every connection each
    /// interval and terminates those whose pong has not come within the timeout. It stops
    /// at shutdown. (Socket.IO sessions run Engine.IO's own heartbeat.)
    pub fn spawn_heartbeat(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.heartbeat_interval;
        let timeout = self.inner.config.heartbeat_timeout;
        tokio::spawn(heartbeat_loop(
            interval,
            timeout,
            move || {
                let hub = Hub {
                    inner: weak.upgrade()?,
                };
                if hub.is_shutting_down() {
                    return None;
                }
                let conns: Vec<Arc<Conn>> = hub
                    .all_conns()
                    .into_iter()
                    .filter(|c| c.transport == Transport::Ws)
                    .collect();
                Some((hub, conns))
            },
            |c: &Arc<Conn>| {
                c.awaiting_pong.store(true, Ordering::Relaxed);
                c.outbox.request_ping();
            },
            |hub: &Hub, c: &Arc<Conn>| {
                if c.awaiting_pong.load(Ordering::Relaxed) && !c.outbox.is_closing() {
                    c.outbox.close(CloseRequest::Terminate);
                    hub.inner.stats.reaped();
                }
            },
        ))
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Begins shutdown: refuses new connections and asks every open one to close with
    /// `code` (1001 for a server going away).
    pub fn shutdown(&self, code: u16, reason: &str) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for c in self.all_conns() {
            c.close(code, reason);
        }
        let hooks: Vec<ShutdownHook> = self.hooks().on_shutdown.clone();
        for h in hooks {
            h(code, reason);
        }
    }

    /// Runs `f` at shutdown, after every connection was asked to close (front ends close
    /// what the hub does not know, such as Socket.IO sessions without a namespace).
    pub fn on_shutdown(&self, f: impl Fn(u16, &str) + Send + Sync + 'static) {
        self.hooks_mut().on_shutdown.push(Arc::new(f));
    }

    /// Waits until every connection slot is released, or `timeout`; true if all closed.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.reserved.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.inner.reserved.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// The heartbeat schedule shared by every transport: each round pings every target, waits
/// `timeout`, then lets `check` reap those that did not answer; rounds start `interval`
/// apart. `targets` returns `None` to stop.
pub async fn heartbeat_loop<C, T>(
    interval: Duration,
    timeout: Duration,
    targets: impl Fn() -> Option<(C, Vec<T>)>,
    ping: impl Fn(&T),
    check: impl Fn(&C, &T),
) {
    loop {
        tokio::time::sleep(interval.saturating_sub(timeout.min(interval))).await;
        let Some((ctx, list)) = targets() else { return };
        list.iter().for_each(&ping);
        drop(ctx);
        tokio::time::sleep(timeout.min(interval)).await;
        let Some((ctx, _)) = targets() else { return };
        for t in &list {
            check(&ctx, t);
        }
    }
}

fn check_name(name: &str, field: &str) -> Result<(), HubError> {
    if name.is_empty() || name.len() > crate::protocol::v1::MAX_NAME_LEN || name.contains('\0') {
        return Err(HubError::bad_request(format!(
            "`{field}` must be a non-empty string of at most {} bytes, without NUL",
            crate::protocol::v1::MAX_NAME_LEN
        )));
    }
    Ok(())
}

fn forbidden_in(room: &str, right: Right) -> HubError {
    HubError::new(
        ErrorCode::Forbidden,
        format!("no `{}` right in room `{room}`", right.as_str()),
    )
}

/// Whether `c` receives `room`'s presence events (always, unless its grants say no).
fn may_see_presence(c: &Conn, room: &str, private: bool) -> bool {
    c.grants
        .get()
        .is_none_or(|g| g.allows(room, private, Right::Presence))
}
