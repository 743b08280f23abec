//! The server side of the official Socket.IO admin UI (npm `@socket.io/admin-ui`), so its UI
//! can watch and act on Hubbub: the namespace `/admin` speaks what the package's
//! `instrument()` does for a Node server.
//!
//! - A connection to `/admin` passes basic auth (`auth: {username, password}`, checked against
//!   `admin_password`, an Argon2 hash), or comes back with the `sessionId` it was given.
//! - It gets `config` (the features: emit, join, leave, disconnect, aggregated events), then
//!   `all_sockets`, then `server_stats` every 2 s (clients, polling clients, namespaces with
//!   their socket counts, uptime, and per-second counts of connections, disconnections,
//!   packets and bytes).
//! - Live: `socket_connected`, `socket_updated` (a session upgraded to WebSocket),
//!   `socket_disconnected`, `room_joined`, `room_left`.
//! - It may ask: `emit(nsp, filter, event, ...args)`, `join(nsp, room, filter)`,
//!   `leave(nsp, room, filter)`, `_disconnect(nsp, close, filter)`, where `filter` is a room or
//!   a socket id (none: the whole namespace).
//!
//! Hubbub's v1 connections are shown as sockets of the namespace `/` (transport `websocket`,
//! their user in `data`), so the UI sees and acts on every client, not only Socket.IO ones.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hub::{is_internal, now_ms, Conn, Hub, SioArgs};
use crate::sio::{ConnectError, SocketIo};
use crate::stats::Transport;

/// The namespace the admin UI connects to.
pub const NAMESPACE: &str = "/admin";

/// Who may use the admin UI.
#[derive(Clone, Debug)]
pub struct AdminAuth {
    /// The user name the UI must give.
    pub username: String,
    /// The Argon2 PHC hash of the password it must give.
    pub password_hash: String,
}

#[derive(Debug, Default)]
struct Counts {
    connections: u64,
    disconnections: u64,
}

/// The admin UI's server side.
#[derive(Debug)]
pub struct Admin {
    hub: Hub,
    io: SocketIo,
    started: Instant,
    sessions: Mutex<HashSet<String>>,
    counts: Mutex<Counts>,
    /// The hub's totals at the last stats: messages in, out, bytes out.
    last: Mutex<(u64, u64, u64)>,
}

fn date_string() -> String {
    // ISO 8601 in UTC with milliseconds, as a JavaScript `Date` serializes.
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl Admin {
    /// Declares `/admin` on `io` and starts following the hub.
    pub fn install(hub: &Hub, io: &SocketIo, auth: Option<AdminAuth>) -> Arc<Self> {
        let admin = Arc::new(Self {
            hub: hub.clone(),
            io: io.clone(),
            started: Instant::now(),
            sessions: Mutex::default(),
            counts: Mutex::default(),
            last: Mutex::default(),
        });
        let me = Arc::downgrade(&admin);
        let ns = io.ns(NAMESPACE, move |socket| {
            let Some(me) = me.upgrade() else { return };
            if let Some(id) = me.new_session(socket.auth()) {
                socket.emit("session", Value::String(id));
            }
            socket.emit(
                "config",
                json!({"supportedFeatures": [
                    "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT",
                    "AGGREGATED_EVENTS"
                ]}),
            );
            socket.emit("all_sockets", Value::Array(me.all_sockets()));
            me.emit_stats_to(Some(socket.id()));
        });
        let me = Arc::downgrade(&admin);
        ns.use_middleware(move |req| {
            let (me, auth) = (me.clone(), auth.clone());
            async move {
                let me = me
                    .upgrade()
                    .ok_or_else(|| ConnectError::new("shutting down"))?;
                me.authenticate(&req.auth, auth.as_ref())
            }
        });
        for (event, f) in [
            ("emit", Self::on_emit as fn(&Self, &SioArgs)),
            ("join", Self::on_join),
            ("leave", Self::on_leave),
            ("_disconnect", Self::on_disconnect),
        ] {
            let me = Arc::downgrade(&admin);
            ns.on(event, move |_, args, _| {
                if let Some(me) = me.upgrade() {
                    f(&me, &args);
                }
            });
        }
        // A v1 connection is whole once the hub has it; a Socket.IO socket once its
        // namespace has it (its handshake and transport are known then).
        let me = Arc::downgrade(&admin);
        hub.on_connect(move |_, conn| {
            if conn.transport() == Transport::Ws {
                if let Some(me) = me.upgrade() {
                    me.connected(conn);
                }
            }
        });
        let me = Arc::downgrade(&admin);
        io.on_socket(move |socket| {
            if let Some(me) = me.upgrade() {
                me.connected(socket.conn());
            }
        });
        let me = Arc::downgrade(&admin);
        io.on_upgrade(move |socket| {
            if let Some(me) = me.upgrade() {
                me.tell("socket_updated", || {
                    vec![json!({"id": socket.id(), "nsp": socket.ns(), "transport": "websocket"})]
                });
            }
        });
        let me = Arc::downgrade(&admin);
        hub.on_disconnect(move |_, conn| {
            if let Some(me) = me.upgrade() {
                me.counts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .disconnections += 1;
                if conn.ns().starts_with('/') {
                    me.tell("socket_disconnected", || {
                        vec![
                            json!(&**conn.ns()),
                            json!(conn.wire_id()),
                            json!("transport close"),
                            json!(date_string()),
                        ]
                    });
                }
            }
        });
        let me = Arc::downgrade(&admin);
        hub.on_membership(move |_, conn, room, joined| {
            let Some(me) = me.upgrade() else { return };
            if is_internal(room) || !conn.ns().starts_with('/') {
                return;
            }
            let event = if joined { "room_joined" } else { "room_left" };
            me.tell(event, || {
                vec![
                    json!(&**conn.ns()),
                    json!(room),
                    json!(conn.wire_id()),
                    json!(date_string()),
                ]
            });
        });
        admin
    }

    fn connected(&self, conn: &Arc<Conn>) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .connections += 1;
        if !self.watching() {
            return;
        }
        if let Some(s) = self.serialize(conn) {
            self.tell("socket_connected", || vec![s, Value::String(date_string())]);
        }
    }

    fn authenticate(&self, auth: &Value, want: Option<&AdminAuth>) -> Result<(), ConnectError> {
        let Some(want) = want else { return Ok(()) };
        if let Some(Value::String(id)) = auth.get("sessionId") {
            if self
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(id)
            {
                return Ok(());
            }
        }
        let text = |k: &str| auth.get(k).and_then(Value::as_str).unwrap_or_default();
        let ok = text("username") == want.username && {
            use argon2::password_hash::PasswordHash;
            use argon2::PasswordVerifier;
            PasswordHash::new(&want.password_hash).is_ok_and(|h| {
                argon2::Argon2::default()
                    .verify_password(text("password").as_bytes(), &h)
                    .is_ok()
            })
        };
        if !ok {
            return Err(ConnectError::new("invalid credentials"));
        }
        Ok(())
    }

    /// A session id for a UI that logged in with its password: it reconnects with this
    /// instead (socket.io's sessions). `None` when it came with a known one, or without
    /// auth.
    fn new_session(&self, auth: &Value) -> Option<String> {
        auth.get("password")?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Value::String(id)) = auth.get("sessionId") {
            if sessions.contains(id) {
                return None;
            }
        }
        let id = crate::sio::engine::random_id().to_string();
        sessions.insert(id.clone());
        Some(id)
    }

    /// Whether an admin UI is connected (nothing is built for the feeds otherwise).
    fn watching(&self) -> bool {
        self.io.of(NAMESPACE).is_some_and(|n| n.socket_count() > 0)
    }

    /// Emits `event` with the arguments `args` makes to every admin UI, if any.
    fn tell(&self, event: &str, args: impl FnOnce() -> Vec<Value>) {
        if !self.watching() {
            return;
        }
        let _ = self.hub.to_all().ns(NAMESPACE).emit_args(
            event,
            SioArgs {
                values: args(),
                bin: Vec::new(),
            },
        );
    }

    /// A connection as the UI's `SerializedSocket`; `None` for those clients cannot see
    /// (echo connections) and for a Socket.IO socket its namespace does not have yet.
    fn serialize(&self, conn: &Arc<Conn>) -> Option<Value> {
        let ns = conn.ns();
        if !ns.starts_with('/') {
            return None;
        }
        let socket = self.io.of(ns).and_then(|n| n.socket(conn.wire_id()));
        let mut rooms: Vec<String> = vec![conn.wire_id().to_string()];
        rooms.extend(conn.rooms().into_iter().filter(|r| !is_internal(r)));
        let address = conn.address().map(|a| a.to_string());
        let (client_id, transport, handshake) = match (&socket, conn.transport()) {
            // Not in its namespace yet: `socket_connected` will follow.
            (None, Transport::SocketIo) => return None,
            (Some(s), Transport::SocketIo) => {
                let hs = s.handshake();
                let headers: serde_json::Map<String, Value> = hs
                    .as_ref()
                    .map(|h| {
                        h.headers
                            .iter()
                            .filter_map(|(k, v)| Some((k.to_string(), json!(v.to_str().ok()?))))
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    s.client_id().map(|c| c.to_string()).unwrap_or_default(),
                    s.transport(),
                    json!({
                        "address": address,
                        "headers": headers,
                        "query": hs.as_ref().map(|h| json!(h.query())).unwrap_or(json!({})),
                        "issued": hs.as_ref().map_or(conn.since(), |h| h.issued),
                        "secure": false,
                        "time": date_string(),
                        "url": hs.as_ref().map(|h| h.url.clone()).unwrap_or_default(),
                        "xdomain": false,
                    }),
                )
            }
            _ => (
                conn.wire_id().to_string(),
                "websocket",
                json!({
                    "address": address,
                    "headers": {},
                    "query": {},
                    "issued": conn.since(),
                    "secure": false,
                    "time": date_string(),
                    "url": "/ws",
                    "xdomain": false,
                }),
            ),
        };
        Some(json!({
            "id": conn.wire_id(),
            "clientId": client_id,
            "transport": transport,
            "nsp": &**ns,
            "data": {"user": conn.user(), "protocol": match conn.transport() {
                Transport::Ws => "v1",
                Transport::SocketIo => "socket.io",
                Transport::GraphQl => "graphql",
            }},
            "handshake": handshake,
            "rooms": rooms,
        }))
    }

    fn all_sockets(&self) -> Vec<Value> {
        self.hub
            .connections()
            .iter()
            .filter_map(|c| self.serialize(c))
            .collect()
    }

    /// The connections of namespace `nsp` that `filter` names: a socket id, or a room's
    /// members; all of them without one.
    fn targets(&self, nsp: &str, filter: Option<&str>) -> Vec<Arc<Conn>> {
        self.hub
            .connections()
            .into_iter()
            .filter(|c| &**c.ns() == nsp)
            .filter(|c| match filter {
                None => true,
                Some(f) => c.wire_id() == f || c.rooms().iter().any(|r| r == f),
            })
            .collect()
    }

    fn on_emit(&self, args: &SioArgs) {
        let v = &args.values;
        let (Some(nsp), Some(event)) = (
            v.first().and_then(Value::as_str),
            v.get(2).and_then(Value::as_str),
        ) else {
            return;
        };
        let filter = v.get(1).and_then(Value::as_str);
        let rest = SioArgs {
            values: v.iter().skip(3).cloned().collect(),
            bin: args.bin.clone(),
        };
        for c in self.targets(nsp, filter) {
            let _ = self
                .hub
                .to_conn(c.id())
                .ns(nsp.to_string())
                .emit_args(event, rest.clone());
        }
    }

    /// The connections a `join` or `leave` action names (`nsp, room, filter`), and the room.
    fn room_action<'a>(&self, args: &'a SioArgs) -> Option<(Vec<Arc<Conn>>, &'a str)> {
        let v = &args.values;
        let nsp = v.first().and_then(Value::as_str)?;
        let room = v.get(1).and_then(Value::as_str)?;
        Some((self.targets(nsp, v.get(2).and_then(Value::as_str)), room))
    }

    fn on_join(&self, args: &SioArgs) {
        let Some((conns, room)) = self.room_action(args) else {
            return;
        };
        for c in conns {
            let _ = self
                .hub
                .join(&c, room, crate::hub::ReplayFrom::None, |_| None);
        }
    }

    fn on_leave(&self, args: &SioArgs) {
        let Some((conns, room)) = self.room_action(args) else {
            return;
        };
        for c in conns {
            self.hub.leave(&c, room);
        }
    }

    fn on_disconnect(&self, args: &SioArgs) {
        let v = &args.values;
        let Some(nsp) = v.first().and_then(Value::as_str) else {
            return;
        };
        let close = v.get(1).and_then(Value::as_bool).unwrap_or(false);
        for c in self.targets(nsp, v.get(2).and_then(Value::as_str)) {
            // A Socket.IO socket leaves its namespace (4000) or, with `close`, ends its whole
            // session; a v1 connection has one either way (4000: disconnected by the server).
            let code = if close && c.transport() == Transport::SocketIo {
                1008
            } else {
                4000
            };
            c.close(code, "disconnected from the admin UI");
        }
    }

    /// `server_stats` to every admin UI (or to one socket first connecting).
    fn emit_stats_to(&self, only: Option<&str>) {
        let st = self.hub.stats();
        let (mi, mo, bo) = (
            st.messages_in_total(),
            st.messages_out_total(),
            st.bytes_out_total(),
        );
        let now = now_ms();
        let ts = now - now % 1000;
        let mut events = Vec::new();
        if only.is_none() {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let mut push = |kind: &str, n: u64| {
                if n > 0 {
                    events.push(json!({"timestamp": ts, "type": kind, "count": n}));
                }
            };
            push("rawConnection", std::mem::take(&mut counts.connections));
            push(
                "rawDisconnection",
                std::mem::take(&mut counts.disconnections),
            );
            push("packetsIn", mi.saturating_sub(last.0));
            push("packetsOut", mo.saturating_sub(last.1));
            push("bytesOut", bo.saturating_sub(last.2));
            *last = (mi, mo, bo);
        }
        let mut per_ns: HashMap<String, usize> = HashMap::new();
        for c in self.hub.connections() {
            if c.ns().starts_with('/') {
                *per_ns.entry(c.ns().to_string()).or_default() += 1;
            }
        }
        for ns in self.io.namespaces() {
            per_ns.entry(ns.name().to_string()).or_default();
        }
        let mut namespaces: Vec<Value> = per_ns
            .into_iter()
            .map(|(name, n)| json!({"name": name, "socketsCount": n}))
            .collect();
        namespaces.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let stats = json!({
            "serverId": self.hub.node(),
            "hostname": std::env::var("HOSTNAME").unwrap_or_else(|_| "hubbub".into()),
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": self.io.session_count() + st.connections(Transport::Ws) as usize,
            "pollingClientsCount": self.io.polling_count(),
            "aggregatedEvents": events,
            "namespaces": namespaces,
        });
        match only {
            Some(id) => {
                if let Some(s) = self.io.of(NAMESPACE).and_then(|n| n.socket(id)) {
                    s.emit("server_stats", stats);
                }
            }
            None => self.tell("server_stats", || vec![stats]),
        }
    }

    /// Sends `server_stats` every `every` while admin UIs are connected; ends with the hub.
    pub async fn feed(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if self.hub.is_shutting_down() {
                return;
            }
            if self.watching() {
                self.emit_stats_to(None);
            }
        }
    }
}
