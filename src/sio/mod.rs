//! The Socket.IO front end: Engine.IO v4 ([`engine`]) and Socket.IO v5 ([`socket`]) on the
//! hub, so the official clients work unchanged and share rooms with v1 clients in `/`.
//!
//! [`SocketIo`] is the server: declare namespaces (static or matched by a function), add
//! middleware, handle events on each socket, and broadcast with `to`, `except`, `volatile`,
//! `timeout` and acks. Mount [`SocketIo::routes`] into an axum router.

mod client;
pub mod engine;
mod fast;
pub mod mapped;
mod recovery;
pub mod socket;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::{routing::any, Router};
use futures_util::future::BoxFuture;

use crate::hub::{Hub, OutFrame};
use crate::protocol::engineio;
use engine::{App, Engine, EngineConfig, Msg, Session};
pub use engine::{DisconnectReason, Handshake};
pub use mapped::{ack_result, install_hub_events};
pub use socket::{
    AckError, AckSender, Args, BroadcastOp, ConnectError, ConnectRequest, Namespace, Socket,
    SocketRef,
};
use socket::{NamespaceResolver, SioApp};

/// Socket.IO settings (socket.io's server options under Hubbub's names).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SioConfig {
    /// The path, `/socket.io` by default.
    pub path: String,
    /// `pingInterval` (default 25 s, the hub's `heartbeat_interval`).
    pub ping_interval: Duration,
    /// `pingTimeout` (default 20 s, the hub's `heartbeat_timeout`).
    pub ping_timeout: Duration,
    /// `maxHttpBufferSize` and the largest WebSocket message (default 1 MiB, `max_payload`).
    pub max_payload: usize,
    /// `connectTimeout`: a session that joins no namespace within it is closed (45 s).
    pub connect_timeout: Duration,
    /// Answer cross-origin requests (`Access-Control-Allow-Origin` echoing the origin).
    pub cors: bool,
    /// Offer HTTP long-polling (on by default; off gives WebSocket-only).
    pub polling: bool,
    /// Connection state recovery: how long a dropped socket can be resumed (socket.io's
    /// `maxDisconnectionDuration`); `None` (the default, as in socket.io) turns it off.
    pub recovery: Option<Duration>,
    /// socket.io's `allowRequest`: decides on every new session's handshake request;
    /// `Err(reason)` answers HTTP 403 `{"code": 4, "message": "Forbidden"}`.
    pub allow_request: Option<AllowRequest>,
    /// Messages and bytes per second a session may send (off by default). Over the limit a
    /// message is dropped and the client gets an `error` event `{code: "rate_limited"}`;
    /// repeated abuse closes the session (4429 on a WebSocket).
    pub rate: crate::limits::RatePolicy,
}

/// The function behind [`AllowRequest`].
pub type AllowRequestFn = dyn Fn(&axum::http::request::Parts) -> Result<(), String> + Send + Sync;

/// A handshake check (see [`SioConfig::allow_request`]).
#[derive(Clone)]
pub struct AllowRequest(pub Arc<AllowRequestFn>);

impl std::fmt::Debug for AllowRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AllowRequest(..)")
    }
}

impl Default for SioConfig {
    fn default() -> Self {
        Self {
            path: "/socket.io".into(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1 << 20,
            connect_timeout: Duration::from_secs(45),
            cors: true,
            polling: true,
            recovery: None,
            allow_request: None,
            rate: crate::limits::RatePolicy::OFF,
        }
    }
}

impl SioConfig {
    /// Sets the path.
    #[must_use]
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = path.trim_end_matches('/').to_string();
        self
    }

    /// Sets `pingInterval` and `pingTimeout`.
    #[must_use]
    pub fn with_ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval;
        self.ping_timeout = timeout;
        self
    }

    /// Sets `maxHttpBufferSize`.
    #[must_use]
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Limits the messages and bytes per second a session may send.
    #[must_use]
    pub fn with_rate(mut self, rate: crate::limits::RatePolicy) -> Self {
        self.rate = rate;
        self
    }

    /// Turns connection state recovery on with this window.
    #[must_use]
    pub fn with_recovery(mut self, window: Option<Duration>) -> Self {
        self.recovery = window;
        self
    }

    /// Sets the handshake check.
    #[must_use]
    pub fn with_allow_request(
        mut self,
        f: impl Fn(&axum::http::request::Parts) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.allow_request = Some(AllowRequest(Arc::new(f)));
        self
    }

    /// Sets `connectTimeout`.
    #[must_use]
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
}

type Matcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type ConnectFn = Arc<dyn Fn(SocketRef) + Send + Sync>;

#[derive(Default)]
struct Registry {
    static_ns: HashMap<String, Arc<Namespace>>,
    /// Matcher, connection handler, and a template whose middleware each new namespace gets.
    dynamic: Vec<(Matcher, ConnectFn, Arc<Namespace>)>,
}

struct Namespaces {
    hub: Hub,
    registry: RwLock<Registry>,
    recovery: Option<Duration>,
}

impl NamespaceResolver for Namespaces {
    fn resolve(&self, name: &str) -> Option<Arc<Namespace>> {
        {
            let r = self.registry.read().unwrap_or_else(|p| p.into_inner());
            if let Some(ns) = r.static_ns.get(name) {
                return Some(ns.clone());
            }
        }
        let mut r = self.registry.write().unwrap_or_else(|p| p.into_inner());
        let (on_connect, template) = r
            .dynamic
            .iter()
            .find(|(m, _, _)| m(name))
            .map(|(_, on_connect, template)| (on_connect.clone(), template.clone()))?;
        // Each matching name becomes a namespace of its own, as in socket.io.
        let ns = Namespace::new(name.into(), self.hub.clone(), on_connect, self.recovery);
        ns.copy_middleware_from(&template);
        r.static_ns.insert(name.to_string(), ns.clone());
        Some(ns)
    }
}

/// The Socket.IO server.
#[derive(Clone)]
pub struct SocketIo {
    namespaces: Arc<Namespaces>,
    observers: Arc<RwLock<socket::Observers>>,
    engine: Arc<Engine>,
    config: SioConfig,
}

impl std::fmt::Debug for SocketIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIo")
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

fn engine_config(config: &SioConfig, hub: &Hub) -> EngineConfig {
    EngineConfig {
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        max_payload: config.max_payload,
        queue_limit: hub.config().queue_limit,
        cors: config.cors,
        allow_polling: config.polling,
        allow_request: config.allow_request.clone(),
        rate: config.rate,
    }
}

fn ws_options(max_payload: usize) -> yawc::Options {
    yawc::Options::default()
        .with_max_payload_read(max_payload + 1)
        .with_max_read_buffer(max_payload + 1)
        .with_no_delay()
        // Sized for what a connection usually carries, and grown by yawc past that: the
        // write buffer holds the open packet (about 110 bytes) without growing; the read
        // buffer holds a usual event (`42["send",{...}]` with 100 bytes of data) without a
        // reallocation per message: at 128 a Socket.IO round trip makes 10 allocations
        // instead of 8 (`cargo bench --bench roundtrip`). 384 bytes of an idle connection.
        .with_read_buffer_capacity(256)
        .with_write_buffer_capacity(128)
        .with_backpressure_boundary(8 * 1024)
        .without_compression()
}

impl SocketIo {
    /// A Socket.IO server on `hub`, with no namespace yet (add `/` with [`Self::ns`]).
    pub fn new(hub: Hub, config: SioConfig) -> Self {
        let namespaces = Arc::new(Namespaces {
            hub: hub.clone(),
            registry: RwLock::new(Registry::default()),
            recovery: config.recovery,
        });
        let observers: Arc<RwLock<socket::Observers>> = Arc::default();
        let app = Arc::new(SioApp {
            namespaces: namespaces.clone(),
            connect_timeout: config.connect_timeout,
            observers: observers.clone(),
        });
        let engine = Engine::new(
            hub.clone(),
            engine_config(&config, &hub),
            ws_options(config.max_payload),
            app,
        );
        Self {
            namespaces,
            observers,
            engine,
            config,
        }
    }

    /// Runs `f` for every socket that connects to any namespace (recovered ones included),
    /// once it is registered there and before its namespace's own handler: what watches
    /// the whole server (the admin UI) listens here.
    pub fn on_socket(&self, f: impl Fn(SocketRef) + Send + Sync + 'static) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .connected
            .push(Arc::new(f));
    }

    /// Runs `f` for every socket whose session moves from polling to WebSocket.
    pub fn on_upgrade(&self, f: impl Fn(SocketRef) + Send + Sync + 'static) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .upgraded
            .push(Arc::new(f));
    }

    /// Declares namespace `name`; `on_connect` runs for every socket that joins it.
    pub fn ns(
        &self,
        name: &str,
        on_connect: impl Fn(SocketRef) + Send + Sync + 'static,
    ) -> Arc<Namespace> {
        let ns = Namespace::new(
            name.into(),
            self.namespaces.hub.clone(),
            Arc::new(on_connect),
            self.namespaces.recovery,
        );
        self.namespaces
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .static_ns
            .insert(name.to_string(), ns.clone());
        ns
    }

    /// Declares dynamic namespaces: any name `matches` accepts becomes a namespace. The
    /// returned template takes middleware that every such namespace will run.
    pub fn dynamic_ns(
        &self,
        matches: impl Fn(&str) -> bool + Send + Sync + 'static,
        on_connect: impl Fn(SocketRef) + Send + Sync + 'static,
    ) -> Arc<Namespace> {
        let on_connect: ConnectFn = Arc::new(on_connect);
        let template = Namespace::new(
            "*".into(),
            self.namespaces.hub.clone(),
            on_connect.clone(),
            None,
        );
        self.namespaces
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .dynamic
            .push((Arc::new(matches), on_connect, template.clone()));
        template
    }

    /// A namespace by name, if it exists.
    pub fn of(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .static_ns
            .get(name)
            .cloned()
    }

    /// The hub behind this server.
    pub fn hub(&self) -> &Hub {
        &self.namespaces.hub
    }

    /// Open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Open Engine.IO sessions on the polling transport.
    pub fn polling_count(&self) -> usize {
        self.engine.polling_count()
    }

    /// Every namespace that exists now, by name.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.namespaces
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .static_ns
            .values()
            .cloned()
            .collect()
    }

    /// The routes: `{path}/` for both transports.
    pub fn routes(&self) -> Router {
        engine_routes(&self.config.path, self.engine.clone())
    }
}

fn engine_routes(path: &str, engine: Arc<Engine>) -> Router {
    let path = path.trim_end_matches('/');
    Router::new()
        .route(&format!("{path}/"), any(Engine::handle))
        .route(path, any(Engine::handle))
        .with_state(engine)
}

/// A bare Engine.IO server that echoes every message (the Engine.IO conformance suite's
/// `/engine.io/` endpoint).
pub fn engine_echo_routes(hub: Hub, config: SioConfig) -> Router {
    struct Echo;
    impl App for Echo {
        fn on_open(&self, _: &Arc<Engine>, _: &Arc<Session>) {}
        fn on_message<'a>(
            &'a self,
            _: &'a Arc<Engine>,
            s: &'a Arc<Session>,
            msg: Msg,
        ) -> BoxFuture<'a, bool> {
            let frame = match msg {
                Msg::Text(t) => OutFrame::Text(engineio::encode_text(4, &t)),
                Msg::Binary(b) => OutFrame::Binary(b),
            };
            s.outbox.push(frame, false);
            Box::pin(async { true })
        }
        fn on_close(&self, _: &Arc<Session>, _: DisconnectReason) {}
    }
    let engine = Engine::new(
        hub.clone(),
        engine_config(&config, &hub),
        ws_options(config.max_payload),
        Arc::new(Echo),
    );
    engine_routes(&config.path, engine)
}
