//! The Socket.IO layer: namespaces, sockets, events, acknowledgements and binary packets,
//! on top of [`super::engine`] and the hub.
//!
//! Each socket (a client connected to one namespace) is a hub connection of transport
//! `SocketIo` in that namespace, sharing its Engine.IO session's outbox, so rooms,
//! broadcasts, users and presence are the hub's, shared with v1 clients in `/`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::client;
use super::engine::{App, DisconnectReason, Engine, Handshake, Msg, Session};
use super::recovery::Recovery;
use crate::error::HubError;
use crate::hub::{
    delivery::{encode_event, encode_packet},
    BroadcastOptions, Conn, ConnSpec, Emitted, Hub, MessageBody, OutFrame, Payload, SioArgs,
    Target,
};
use crate::protocol::socketio::{self, Kind, Packet};
use crate::stats::Transport;

/// Event arguments as received: JSON values, binary values as placeholders into `bin`.
pub type Args = SioArgs;

/// A connected socket.
pub type SocketRef = Arc<Socket>;

type EventHandler = Arc<dyn Fn(&SocketRef, Args, Option<AckSender>) + Send + Sync>;
type AnyHandler = Arc<dyn Fn(&SocketRef, &str, Args, Option<AckSender>) + Send + Sync>;
/// A handler that reads an event's first argument as raw JSON (see [`super::fast`]).
pub(super) type RawHandler = super::fast::RawHandler;
type DisconnectHandler = Arc<dyn Fn(&SocketRef, DisconnectReason) + Send + Sync>;
type ConnectHandler = Arc<dyn Fn(SocketRef) + Send + Sync>;
type Middleware =
    Arc<dyn Fn(Arc<ConnectRequest>) -> BoxFuture<'static, Result<(), ConnectError>> + Send + Sync>;

/// A refused namespace connection: the client's `connect_error` gets `message` and `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectError {
    /// Shown as `err.message`.
    pub message: String,
    /// Shown as `err.data`.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    #[must_use]
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// What middleware sees of a connection attempt.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The namespace asked for.
    pub ns: Arc<str>,
    /// The CONNECT packet's payload (`auth` in the client), `{}` when absent.
    pub auth: Value,
    /// The Engine.IO handshake.
    pub handshake: Arc<Handshake>,
    user: Mutex<Option<String>>,
    expires_at: Mutex<Option<u64>>,
    grants: Mutex<Option<crate::hub::Grants>>,
}

impl ConnectRequest {
    /// Names the user this socket belongs to (by default `auth.user`, or anonymous).
    pub fn set_user(&self, user: impl Into<String>) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(user.into());
    }

    /// Says when the socket's credentials expire (ms since the epoch): the socket is then
    /// disconnected unless a fresh token arrives first (see [`crate::hub::Hub::set_expiry`]).
    pub fn set_expiry(&self, at_ms: Option<u64>) {
        *self.expires_at.lock().unwrap_or_else(|p| p.into_inner()) = at_ms;
    }

    /// Restricts the socket to what `grants` allow in rooms (see [`crate::hub::Grants`]).
    pub fn set_grants(&self, grants: crate::hub::Grants) {
        *self.grants.lock().unwrap_or_else(|p| p.into_inner()) = Some(grants);
    }
}

/// Answers a client's event that asked for an acknowledgement.
pub struct AckSender {
    outbox_conn: Arc<Conn>,
    ns: Arc<str>,
    id: u64,
}

impl std::fmt::Debug for AckSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckSender").field("id", &self.id).finish()
    }
}

impl AckSender {
    /// Acknowledges with these arguments.
    pub fn send(self, args: Args) {
        let frames = encode_packet(
            Kind::Ack,
            &self.ns,
            Some(self.id),
            &Value::Array(args.values),
            &args.bin,
        );
        self.outbox_conn.outbox().push_many(&frames, false);
    }

    /// Acknowledges with one JSON value.
    pub fn send_value(self, v: Value) {
        self.send(Args::one(v));
    }
}

/// Why an emit-with-ack got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No answer within the timeout.
    #[error("operation has timed out")]
    Timeout,
    /// The socket disconnected first.
    #[error("socket disconnected")]
    Disconnected,
}

#[derive(Default)]
struct Handlers {
    events: HashMap<String, EventHandler>,
    any: Option<AnyHandler>,
    disconnect: Vec<DisconnectHandler>,
}

/// One client connected to one namespace.
pub struct Socket {
    pub(super) conn: Arc<Conn>,
    pub(super) ns: Arc<Namespace>,
    session: Weak<Session>,
    engine: Weak<Engine>,
    /// The CONNECT payload.
    auth: Value,
    /// The socket's own handlers, made by the first `on*` call (most sockets have none:
    /// their namespace's handlers serve them).
    handlers: RwLock<Option<Box<Handlers>>>,
    acks: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<Args>>>,
    next_ack: AtomicU64,
    connected: AtomicBool,
    /// The private id that lets this socket be recovered (recovery on only).
    pid: Option<Arc<str>>,
    recovered: bool,
    pub(super) connected_at: std::time::Instant,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("ns", &self.ns.name)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Socket {
    /// The socket id (as the client's `socket.id`).
    pub fn id(&self) -> &str {
        self.conn.wire_id()
    }

    /// The hub connection behind this socket.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// The hub behind this socket's namespace.
    pub fn hub(&self) -> &Hub {
        &self.ns.hub
    }

    /// The user this socket belongs to.
    pub fn user(&self) -> &str {
        self.conn.user()
    }

    /// The CONNECT payload (`auth`).
    pub fn auth(&self) -> &Value {
        &self.auth
    }

    /// The Engine.IO handshake (headers, query, address).
    pub fn handshake(&self) -> Option<Arc<Handshake>> {
        self.session.upgrade().map(|s| s.handshake.clone())
    }

    /// The Engine.IO session id this socket rides on (socket.io's `socket.client.id`).
    pub fn client_id(&self) -> Option<Arc<str>> {
        self.session.upgrade().map(|s| s.sid.clone())
    }

    /// The session's transport now: `polling` or `websocket`.
    pub fn transport(&self) -> &'static str {
        self.session
            .upgrade()
            .map_or("websocket", |s| s.transport_name())
    }

    /// Whether this socket resumed an earlier one (connection state recovery): same id,
    /// same rooms, missed events delivered.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Handles event `event`; the handler gets the socket, the arguments, and an ack sender
    /// when the client asked for one.
    pub fn on(
        &self,
        event: &str,
        f: impl Fn(&SocketRef, Args, Option<AckSender>) + Send + Sync + 'static,
    ) {
        let f: EventHandler = Arc::new(f);
        self.with_own_handlers(|h| {
            h.events.insert(event.to_string(), f);
        });
    }

    /// Handles every event that has no handler of its own.
    pub fn on_any(
        &self,
        f: impl Fn(&SocketRef, &str, Args, Option<AckSender>) + Send + Sync + 'static,
    ) {
        let f: AnyHandler = Arc::new(f);
        self.with_own_handlers(|h| h.any = Some(f));
    }

    /// Runs `f` when the socket disconnects, with the reason.
    pub fn on_disconnect(&self, f: impl Fn(&SocketRef, DisconnectReason) + Send + Sync + 'static) {
        let f: DisconnectHandler = Arc::new(f);
        self.with_own_handlers(|h| h.disconnect.push(f));
    }

    /// Runs `f` on the socket's own handlers, made on first use.
    fn with_own_handlers(&self, f: impl FnOnce(&mut Handlers)) {
        let mut own = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        f(own.get_or_insert_with(Box::default));
    }

    /// Sends `event` with one argument to this socket only.
    pub fn emit(&self, event: &str, data: impl Into<Payload>) {
        let args = payload_args(data.into());
        self.emit_args(event, args);
    }

    /// Sends `event` with these arguments to this socket only.
    pub fn emit_args(&self, event: &str, args: Args) {
        if self.ns.recovery.is_some() {
            // Through the hub, so the event is recorded (and carries its offset).
            let mut op = BroadcastOp::new(self.ns.clone());
            op.opts.target = Target::Conn(self.conn.id());
            let _ = op.emit_args(event, args);
            return;
        }
        let frames = encode_event(&self.ns.name, event, &args, None);
        self.conn.outbox().push_many(&frames, false);
    }

    /// Sends `event` and waits up to `timeout` for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Args,
        timeout: Duration,
    ) -> Result<Args, AckError> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.acks).insert(id, tx);
        let frames = encode_event(&self.ns.name, event, &args, Some(id));
        self.conn.outbox().push_many(&frames, false);
        let res = tokio::time::timeout(timeout, rx).await;
        lock(&self.acks).remove(&id);
        match res {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => Err(AckError::Timeout),
        }
    }

    /// Joins a room of this namespace.
    pub fn join(&self, room: &str) -> Result<(), HubError> {
        let hub = self.ns.hub();
        hub.join_with(&self.conn, room, crate::hub::ReplayFrom::None, |_| {
            Vec::new()
        })
        .map(|_| ())
    }

    /// Leaves a room.
    pub fn leave(&self, room: &str) {
        self.ns.hub().leave(&self.conn, room);
    }

    /// Rooms this socket is in (its own id included, as in socket.io).
    pub fn rooms(&self) -> Vec<String> {
        let mut r = vec![self.id().to_string()];
        r.extend(self.conn.rooms());
        r
    }

    /// To members of `room`, not this socket (socket.io's `socket.to(room)`).
    pub fn to(&self, room: &str) -> BroadcastOp {
        self.broadcast().to(room)
    }

    /// To every socket of the namespace but this one.
    pub fn broadcast(&self) -> BroadcastOp {
        let mut op = BroadcastOp::new(self.ns.clone());
        op.opts.except.push(self.conn.id());
        op.opts.from = Some(self.conn.user_arc());
        op
    }

    /// Ends the whole Engine.IO session this socket rides on.
    fn end_session(&self, reason: DisconnectReason) {
        if let (Some(e), Some(s)) = (self.engine.upgrade(), self.session.upgrade()) {
            e.close(&s, reason);
        }
    }

    /// Disconnects this socket from its namespace (the client gets a DISCONNECT packet);
    /// with `close`, the whole Engine.IO session ends too.
    pub fn disconnect(self: &Arc<Self>, close: bool) {
        if close {
            self.end_session(DisconnectReason::ServerNamespaceDisconnect);
            return;
        }
        let packet = socketio::encode(Kind::Disconnect, 0, &self.ns.name, None, b"");
        self.conn
            .outbox()
            .push(OutFrame::Text(Bytes::from(packet)), false);
        if let Some(s) = self.session.upgrade() {
            client_of(&s).sockets.remove(&self.ns.name);
        }
        self.ns
            .remove(self, DisconnectReason::ServerNamespaceDisconnect);
    }

    fn dispatch_event(self: &Arc<Self>, args: Value, bin: Vec<Bytes>, ack: Option<u64>) {
        let Value::Array(mut values) = args else {
            return;
        };
        if values.is_empty() {
            return;
        }
        let name = match values.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let args = Args { values, bin };
        let ack = self.ack_sender(ack);
        let (handler, any) = {
            let h = self.handlers.read().unwrap_or_else(|p| p.into_inner());
            let h = h.as_deref();
            let own = h.and_then(|h| h.events.get(&name).cloned());
            let handler = own.or_else(|| {
                self.ns
                    .events
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&name)
                    .cloned()
            });
            (handler, h.and_then(|h| h.any.clone()))
        };
        match (handler, any) {
            (Some(h), _) => h(self, args, ack),
            (None, Some(any)) => any(self, &name, args, ack),
            (None, None) => {}
        }
    }

    /// The raw handler of `event`, unless this socket has a handler of its own for it.
    pub(super) fn raw_handler(&self, event: &str) -> Option<RawHandler> {
        let own = self.handlers.read().unwrap_or_else(|p| p.into_inner());
        if own.as_ref().is_some_and(|h| h.events.contains_key(event)) {
            return None;
        }
        drop(own);
        self.ns
            .raw_events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event)
            .copied()
    }

    /// An acknowledgement sender for ack id `id`, when the client asked for one.
    pub(super) fn ack_sender(&self, id: Option<u64>) -> Option<AckSender> {
        id.map(|id| AckSender {
            outbox_conn: self.conn.clone(),
            ns: self.ns.name.clone(),
            id,
        })
    }

    fn receive_ack(&self, id: u64, args: Args) {
        if let Some(tx) = lock(&self.acks).remove(&id) {
            let _ = tx.send(args);
        }
    }
}

fn payload_args(p: Payload) -> Args {
    match p {
        Payload::Json(raw) => Args::one(raw.to_value()),
        Payload::Binary(b) => Args {
            values: vec![socketio::placeholder(0)],
            bin: vec![b],
        },
    }
}

/// A namespace: its middleware, its connection handler and its sockets.
pub struct Namespace {
    name: Arc<str>,
    hub: Hub,
    sockets: RwLock<HashMap<Arc<str>, SocketRef>>,
    middlewares: RwLock<Vec<Middleware>>,
    /// Event handlers every socket of the namespace has (held once, not per socket).
    events: RwLock<HashMap<String, EventHandler>>,
    /// Handlers of the same events that read the raw JSON, tried first (see [`super::fast`]).
    raw_events: RwLock<HashMap<String, RawHandler>>,
    on_connect: ConnectHandler,
    pub(super) recovery: Option<Arc<Recovery>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: Arc<str>,
        hub: Hub,
        on_connect: ConnectHandler,
        recovery: Option<Duration>,
    ) -> Arc<Self> {
        let recovery = recovery.map(Recovery::new);
        if let Some(r) = &recovery {
            hub.set_recorder(&name, r.clone());
        }
        Arc::new(Self {
            recovery,
            name,
            hub,
            sockets: RwLock::new(HashMap::new()),
            middlewares: RwLock::new(Vec::new()),
            events: RwLock::new(HashMap::new()),
            raw_events: RwLock::new(HashMap::new()),
            on_connect,
        })
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace name as a shared string.
    pub fn name_arc(&self) -> std::sync::Arc<str> {
        self.name.clone()
    }

    /// The hub this namespace delivers through.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Adds middleware: every connection attempt runs it, in order; an error refuses the
    /// connection with `connect_error`.
    pub fn use_middleware<F, Fut>(&self, f: F)
    where
        F: Fn(Arc<ConnectRequest>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.middlewares
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(move |r| Box::pin(f(r))));
    }

    pub(crate) fn copy_middleware_from(&self, other: &Namespace) {
        let list = other
            .middlewares
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        *self.middlewares.write().unwrap_or_else(|p| p.into_inner()) = list;
        let events = other
            .events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        *self.events.write().unwrap_or_else(|p| p.into_inner()) = events;
        let raw = other
            .raw_events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        *self.raw_events.write().unwrap_or_else(|p| p.into_inner()) = raw;
    }

    /// Handles `event` on every socket of this namespace (a socket's own handler for the
    /// same event takes precedence). Held once for the namespace, not per socket.
    pub fn on(
        &self,
        event: &str,
        f: impl Fn(&SocketRef, Args, Option<AckSender>) + Send + Sync + 'static,
    ) {
        self.events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event.to_string(), Arc::new(f));
        // A handler given later replaces the event's raw fast path too.
        self.raw_events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(event);
    }

    /// Also handles `event` from its raw JSON: `raw` answers `false` when the arguments
    /// need the general path (which then runs the handler given to [`Self::on`]).
    pub(super) fn on_raw(&self, event: &str, raw: RawHandler) {
        self.raw_events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event.to_string(), raw);
    }

    /// How many sockets are connected to this namespace.
    pub fn socket_count(&self) -> usize {
        self.sockets.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Sockets connected to this namespace.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.sockets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A socket by id.
    pub fn socket(&self, id: &str) -> Option<SocketRef> {
        self.sockets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Broadcasts to every socket of the namespace.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOp {
        BroadcastOp::new(self.clone())
    }

    /// To the members of `room`.
    pub fn to(self: &Arc<Self>, room: &str) -> BroadcastOp {
        self.broadcast().to(room)
    }

    fn remove(&self, socket: &SocketRef, reason: DisconnectReason) {
        if !socket.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        let temporary = matches!(
            reason,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
        );
        if let (true, Some(rec), Some(pid)) = (temporary, &self.recovery, &socket.pid) {
            rec.save(pid.clone(), socket);
        }
        self.sockets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(socket.id());
        lock(&socket.acks).clear();
        let handlers = socket
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.disconnect.clone())
            .unwrap_or_default();
        for h in handlers {
            h(socket, reason);
        }
        self.hub.unregister(&socket.conn);
    }
}

/// A broadcast being built: rooms, exclusions, flags; then `emit`.
#[derive(Debug, Clone)]
pub struct BroadcastOp {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
    rooms: Vec<Arc<str>>,
    timeout: Option<Duration>,
}

impl BroadcastOp {
    fn new(ns: Arc<Namespace>) -> Self {
        Self {
            opts: BroadcastOptions {
                ns: ns.name.clone(),
                ..BroadcastOptions::to(Target::All)
            },
            ns,
            rooms: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a room (or a socket id) to the targets.
    pub fn to(mut self, room: &str) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Leaves out the members of a room (or a socket).
    pub fn except(mut self, room: &str) -> Self {
        match self.ns.socket(room) {
            Some(s) => self.opts.except.push(s.conn.id()),
            None => self.opts.except_rooms.push(room.into()),
        }
        self
    }

    /// Drops the message for recipients whose queue is full instead of closing them.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// Reaches this node's sockets only, in a cluster too (socket.io's `local` flag).
    pub fn local(mut self) -> Self {
        self.opts.local = true;
        self
    }

    /// How long `emit_with_ack` waits for the answers.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    fn resolved(&self) -> BroadcastOptions {
        let mut opts = self.opts.clone();
        if !self.rooms.is_empty() {
            let mut rooms = Vec::new();
            let mut conns = Vec::new();
            for r in &self.rooms {
                match self.ns.socket(r) {
                    Some(s) => conns.push(s.conn.id()),
                    None => rooms.push(r.clone()),
                }
            }
            opts.target = match (rooms.len(), conns.len()) {
                (1, 0) if opts.except_rooms.is_empty() => {
                    Target::Room(rooms.pop().unwrap_or_default())
                }
                _ => Target::Many { rooms, conns },
            };
        }
        opts
    }

    /// Sends `event` with one argument.
    pub fn emit(self, event: &str, data: impl Into<Payload>) -> Result<Emitted, HubError> {
        self.emit_args(event, payload_args(data.into()))
    }

    /// Sends `event` with these arguments.
    pub fn emit_args(self, event: &str, args: Args) -> Result<Emitted, HubError> {
        let opts = self.resolved();
        self.ns
            .hub
            .dispatch(&opts, event.into(), MessageBody::Args(args))
    }

    /// Sends `event` to every target and collects their acknowledgements (socket.io's
    /// `timeout(d).emit(..., callback)`): one result per socket reached.
    pub async fn emit_with_ack(self, event: &str, args: Args) -> Vec<Result<Args, AckError>> {
        let timeout = self.timeout.unwrap_or(Duration::from_secs(5));
        let opts = self.resolved();
        let recipients = self.ns.hub.recipients(&opts);
        let sockets: Vec<SocketRef> = recipients
            .iter()
            .filter_map(|c| self.ns.socket(c.wire_id()))
            .collect();
        let futures = sockets.iter().map(|s| {
            let s = s.clone();
            let args = args.clone();
            let event = event.to_string();
            async move { s.emit_with_ack(&event, args, timeout).await }
        });
        futures_util::future::join_all(futures).await
    }

    /// The sockets this broadcast reaches.
    pub fn fetch_sockets(&self) -> Vec<SocketRef> {
        let opts = self.resolved();
        self.ns
            .hub
            .recipients(&opts)
            .iter()
            .filter_map(|c| self.ns.socket(c.wire_id()))
            .collect()
    }

    /// Disconnects the sockets this broadcast reaches.
    pub fn disconnect_sockets(&self, close: bool) {
        for s in self.fetch_sockets() {
            s.disconnect(close);
        }
    }

    /// Makes the sockets this broadcast reaches join `room`.
    pub fn sockets_join(&self, room: &str) {
        for s in self.fetch_sockets() {
            let _ = s.join(room);
        }
    }

    /// Makes the sockets this broadcast reaches leave `room`.
    pub fn sockets_leave(&self, room: &str) {
        for s in self.fetch_sockets() {
            s.leave(room);
        }
    }
}

/// Finds or creates the namespace a CONNECT asks for.
pub(crate) trait NamespaceResolver: Send + Sync {
    fn resolve(&self, name: &str) -> Option<Arc<Namespace>>;
}

/// The Socket.IO application on an Engine.IO server.
pub(crate) struct SioApp {
    pub(crate) namespaces: Arc<dyn NamespaceResolver>,
    pub(crate) connect_timeout: Duration,
    /// Run for every socket of every namespace ([`super::SocketIo::on_socket`],
    /// [`super::SocketIo::on_upgrade`]).
    pub(crate) observers: Arc<RwLock<Observers>>,
}

/// What watches every socket of a Socket.IO server.
#[derive(Default)]
pub(crate) struct Observers {
    /// Once a socket is connected to its namespace.
    pub(crate) connected: Vec<ConnectHandler>,
    /// When a socket's session moves to WebSocket.
    pub(crate) upgraded: Vec<ConnectHandler>,
}

/// Per-session Socket.IO state ([`client::ClientState`] of this layer's sockets).
pub(crate) type ClientState = client::ClientState<SocketRef>;

/// The Socket.IO state of an Engine.IO session (made by [`SioApp::new_state`]).
pub(super) fn client_of(session: &Session) -> MutexGuard<'_, ClientState> {
    let state: &Mutex<ClientState> = session
        .app_state()
        .expect("sessions of the Socket.IO engine carry Socket.IO state");
    lock(state)
}

impl App for SioApp {
    fn new_state(&self) -> Box<dyn std::any::Any + Send + Sync> {
        Box::new(Mutex::new(ClientState::default()))
    }

    fn on_open(&self, engine: &Arc<Engine>, session: &Arc<Session>) {
        // The engine's heartbeat task enforces it; no timer per session.
        session.expect_handshake(engine, self.connect_timeout);
    }

    fn on_text_now(&self, session: &Arc<Session>, text: &Bytes) -> Option<bool> {
        super::fast::event_now(session, text)
    }

    fn on_message<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        session: &'a Arc<Session>,
        msg: Msg,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let ready = {
                let mut client = client_of(session);
                match msg {
                    Msg::Text(t) => {
                        if client.partial.is_some() {
                            return false;
                        }
                        let Ok(text) = std::str::from_utf8(&t) else {
                            return false;
                        };
                        let Ok(packet) = socketio::decode(text) else {
                            return false;
                        };
                        if packet.kind.is_binary() && packet.attachments > 0 {
                            client.partial = Some(Box::new((packet, Vec::new())));
                            return true;
                        }
                        (packet, Vec::new())
                    }
                    Msg::Binary(b) => {
                        let Some(mut partial) = client.partial.take() else {
                            return false;
                        };
                        partial.1.push(b);
                        if partial.1.len() < partial.0.attachments {
                            client.partial = Some(partial);
                            return true;
                        }
                        *partial
                    }
                }
            };
            self.handle(engine, session, ready.0, ready.1).await
        })
    }

    fn on_close(&self, session: &Arc<Session>, reason: DisconnectReason) {
        let sockets: Vec<SocketRef> = client_of(session).sockets.take_all();
        for s in sockets {
            s.ns.remove(&s, reason);
        }
    }

    fn on_upgrade(&self, session: &Arc<Session>) {
        let observers = self
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .upgraded
            .clone();
        if observers.is_empty() {
            return;
        }
        let sockets: Vec<SocketRef> = client_of(session).sockets.all();
        for s in sockets {
            for f in &observers {
                f(s.clone());
            }
        }
    }
}

impl SioApp {
    async fn handle(
        &self,
        engine: &Arc<Engine>,
        session: &Arc<Session>,
        packet: Packet,
        bin: Vec<Bytes>,
    ) -> bool {
        let socket = client_of(session).sockets.get(packet.ns.as_str()).cloned();
        match (packet.kind, socket) {
            (Kind::Connect, None) => {
                self.connect(engine, session, packet).await;
                true
            }
            (Kind::Event | Kind::BinaryEvent, Some(s)) => {
                let data = packet.data.unwrap_or(Value::Array(Vec::new()));
                if !socketio::placeholders_valid(&data, bin.len()) {
                    return false;
                }
                s.dispatch_event(data, bin, packet.id);
                true
            }
            (Kind::Ack | Kind::BinaryAck, Some(s)) => {
                let Some(id) = packet.id else { return false };
                let values = match packet.data {
                    Some(Value::Array(v)) => v,
                    _ => Vec::new(),
                };
                s.receive_ack(id, Args { values, bin });
                true
            }
            (Kind::Disconnect, Some(s)) => {
                client_of(session).sockets.remove(packet.ns.as_str());
                s.ns.remove(&s, DisconnectReason::ClientNamespaceDisconnect);
                true
            }
            // Anything else (a packet for a namespace not joined, a second CONNECT, a
            // CONNECT_ERROR from a client) is an invalid state: the reference closes.
            _ => false,
        }
    }

    async fn connect(&self, engine: &Arc<Engine>, session: &Arc<Session>, packet: Packet) {
        let name: Arc<str> = packet.ns.as_str().into();
        let Some(ns) = self.namespaces.resolve(&name) else {
            refuse(session, &name, ConnectError::new("Invalid namespace"));
            return;
        };
        let auth = packet.data.unwrap_or(Value::Object(Default::default()));
        let restored = ns.recovery.as_ref().and_then(|rec| {
            let pid = auth.get("pid")?.as_str()?;
            let offset = auth.get("offset").and_then(Value::as_str);
            rec.restore(pid, offset)
                .map(|(saved, missed)| (Arc::<str>::from(pid), saved, missed))
        });
        let recovered = restored.is_some();
        let (user, wire_id, pid, rooms, missed, expiry, grants) = match restored {
            // A recovered socket skips middleware, as socket.io's default does, and keeps
            // its credentials' expiry and rights.
            Some((pid, saved, missed)) => (
                Some(saved.user.to_string()),
                saved.sid,
                Some(pid),
                saved.rooms,
                missed,
                saved.expires_at,
                saved.grants.map(|g| (*g).clone()),
            ),
            None => {
                let user = auth.get("user").and_then(Value::as_str).map(str::to_string);
                let req = Arc::new(ConnectRequest {
                    ns: name.clone(),
                    auth: auth.clone(),
                    handshake: session.handshake.clone(),
                    user: Mutex::new(user),
                    expires_at: Mutex::new(None),
                    grants: Mutex::new(None),
                });
                let middlewares = ns
                    .middlewares
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                for m in middlewares {
                    if let Err(e) = m(req.clone()).await {
                        refuse(session, &name, e);
                        return;
                    }
                }
                let user = lock(&req.user).clone();
                let expiry = *lock(&req.expires_at);
                let grants = lock(&req.grants).take();
                let pid = ns.recovery.as_ref().map(|_| super::engine::random_id());
                (
                    user,
                    super::engine::random_id(),
                    pid,
                    Vec::new(),
                    Vec::new(),
                    expiry,
                    grants,
                )
            }
        };
        if session.is_closed() {
            return;
        }
        let conn = ns.hub.register_with(
            ConnSpec::new(user.as_deref(), Transport::SocketIo)
                .in_ns(name.clone())
                .with_outbox(session.outbox.clone())
                .with_wire_id(wire_id)
                .from_address(session.handshake.address.map(|a| a.ip())),
            |conn| {
                let mut payload = serde_json::json!({ "sid": conn.wire_id() });
                if let Some(pid) = &pid {
                    payload["pid"] = Value::from(pid.as_ref());
                }
                encode_packet(Kind::Connect, &name, None, &payload, &[])
                    .first()
                    .cloned()
            },
        );
        if expiry.is_some() {
            ns.hub.set_expiry(&conn, expiry);
        }
        if let Some(g) = grants {
            ns.hub.set_grants(&conn, g);
        }
        for room in &rooms {
            let _ = ns.hub.rejoin(&conn, room);
        }
        for d in &missed {
            conn.deliver(d, false);
        }
        let socket = Arc::new(Socket {
            conn: conn.clone(),
            ns: ns.clone(),
            session: Arc::downgrade(session),
            engine: Arc::downgrade(engine),
            auth,
            handlers: RwLock::new(None),
            acks: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(0),
            connected: AtomicBool::new(true),
            pid,
            recovered,
            connected_at: std::time::Instant::now(),
        });
        {
            let weak = Arc::downgrade(&socket);
            conn.set_closer(Box::new(move |code, _reason| {
                let Some(s) = weak.upgrade() else { return };
                // The HTTP API's disconnect (4000) is a namespace DISCONNECT; a server going
                // away (1001) ends the session as a shutdown; anything else (policy) ends the
                // session as a server-side disconnect.
                match code {
                    4000 => s.disconnect(false),
                    1001 => s.end_session(DisconnectReason::ServerShuttingDown),
                    _ => s.disconnect(true),
                }
            }));
        }
        session.handshake_done();
        client_of(session)
            .sockets
            .insert(name.clone(), socket.clone());
        ns.sockets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(conn.wire_id_shared(), socket.clone());
        let observers = self
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .connected
            .clone();
        for f in observers {
            f(socket.clone());
        }
        (ns.on_connect)(socket);
    }
}

fn refuse(session: &Session, ns: &str, e: ConnectError) {
    let mut payload = serde_json::json!({ "message": e.message });
    if let Some(d) = e.data {
        payload["data"] = d;
    }
    let frames = encode_packet(Kind::ConnectError, ns, None, &payload, &[]);
    session.outbox.push_many(&frames, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connected socket holds this, idle or not; its own handlers, which most
    /// sockets never have, live behind a pointer (they were 96 bytes inline).
    #[test]
    fn a_socket_keeps_its_own_handlers_out_of_line() {
        let size = std::mem::size_of::<Socket>();
        assert!(size <= 200, "Socket is {size} bytes");
    }
}
