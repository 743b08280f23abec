//! The Engine.IO v4 server: sessions over HTTP long-polling and WebSocket, the upgrade
//! between them, the heartbeat, and the reference server's HTTP errors.
//!
//! A [`Session`] owns one [`Outbox`]; whichever transport is active drains it: a pending
//! polling `GET` (joining packets with the record separator) or a WebSocket [`Driver`]
//! (one packet per frame). Incoming packets from either transport go through
//! [`Engine::handle_packet`], and messages to the [`App`] on top (Socket.IO, or the bare
//! echo of the conformance example).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Poll;
use std::time::Duration;

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::json;
use yawc::{Frame, IncomingUpgrade, OpCode, Options};

use crate::hub::{CloseRequest, ConnPermit, Hub, OutFrame, Outbox};
use crate::protocol::engineio::{self, Packet, PollItem};
use crate::stats::{RejectReason, Transport};
use crate::ws::driver::{Driver, Link};

/// How long an upgrade may take between the WebSocket opening and the `5` packet.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing WebSocket waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Engine.IO settings.
#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) max_payload: usize,
    pub(crate) queue_limit: usize,
    pub(crate) cors: bool,
    pub(crate) allow_polling: bool,
    pub(crate) allow_request: Option<super::AllowRequest>,
    pub(crate) rate: crate::limits::RatePolicy,
}

/// What a client sent when it opened its session.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Handshake {
    /// Request headers.
    pub headers: HeaderMap,
    /// The client's address.
    pub address: Option<SocketAddr>,
    /// Milliseconds since the epoch.
    pub issued: u64,
    /// The request URL (path and query).
    pub url: String,
}

impl Handshake {
    /// The request's query parameters, read from [`Handshake::url`] on each call: a session
    /// keeps the URL only, not a second copy of its query as a map (about 400 bytes per
    /// session). A parameter given twice keeps its last value.
    pub fn query(&self) -> HashMap<String, String> {
        self.url
            .split_once('?')
            .and_then(|(_, q)| parse_query(q))
            .unwrap_or_default()
    }
}

/// Why a session or socket ended (the reasons socket.io reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the transport (or sent the Engine.IO close packet).
    TransportClose,
    /// The transport failed.
    TransportError,
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client sent something that breaks the protocol.
    ParseError,
    /// The server disconnected the socket from its namespace.
    ServerNamespaceDisconnect,
    /// The client disconnected from the namespace.
    ClientNamespaceDisconnect,
    /// The server is shutting down.
    ServerShuttingDown,
    /// No namespace connection came within `connectTimeout`.
    ConnectTimeout,
    /// The outbound queue overflowed.
    SlowConsumer,
}

impl DisconnectReason {
    /// The reason string socket.io uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerShuttingDown => "server shutting down",
            Self::ConnectTimeout => "connect timeout",
            Self::SlowConsumer => "slow consumer",
        }
    }
}

/// A message from the client to the application.
#[derive(Clone, Debug)]
pub(crate) enum Msg {
    Text(Bytes),
    Binary(Bytes),
}

/// The layer on top of Engine.IO.
pub(crate) trait App: Send + Sync + 'static {
    /// The per-session state this layer keeps in each [`Session`] (see [`Session::app_state`]).
    fn new_state(&self) -> Box<dyn Any + Send + Sync> {
        Box::new(())
    }
    fn on_open(&self, engine: &Arc<Engine>, session: &Arc<Session>);
    /// Handles a text message at once when it can, with no future to box: `None` hands it
    /// to [`Self::on_message`]; otherwise `false` when it breaks the protocol.
    fn on_text_now(&self, _session: &Arc<Session>, _text: &Bytes) -> Option<bool> {
        None
    }
    /// `false` when the message breaks the protocol: the session is closed.
    fn on_message<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        session: &'a Arc<Session>,
        msg: Msg,
    ) -> BoxFuture<'a, bool>;
    fn on_close(&self, session: &Arc<Session>, reason: DisconnectReason);
    /// The session moved from polling to WebSocket.
    fn on_upgrade(&self, _session: &Arc<Session>) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tp {
    Polling,
    /// A WebSocket answered the probe; polling is being wound down.
    Upgrading,
    WebSocket,
}

#[derive(Debug)]
struct State {
    tp: Tp,
    get_active: bool,
    post_active: bool,
    ws_pending: bool,
    closed: bool,
    /// What a pending `GET` answers once the session is closed.
    last_poll: &'static [u8],
}

/// One Engine.IO session.
pub struct Session {
    pub(crate) sid: Arc<str>,
    pub(crate) outbox: Arc<Outbox>,
    state: Mutex<State>,
    /// When the next ping is due, in ms of the engine's clock.
    next_ping: AtomicU64,
    /// When an unanswered ping times out; 0 when none is outstanding.
    pong_deadline: AtomicU64,
    /// When the application layer gives up waiting for its first handshake (Socket.IO's
    /// `connectTimeout`); 0 when it is not waiting.
    connect_deadline: AtomicU64,
    pub(crate) handshake: Arc<Handshake>,
    /// Per-session state of the application layer, of the type its [`App::new_state`] makes
    /// (the engine does not know it: the layer above owns its own state).
    app_state: Box<dyn Any + Send + Sync>,
    /// The session's rate-limit buckets (`None` when limits are off).
    limiter: Mutex<Option<crate::limits::Limiter>>,
    _permit: ConnPermit,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// The session's transport: `polling` until its upgrade completes, then `websocket`.
    pub fn transport_name(&self) -> &'static str {
        match self.state().tp {
            Tp::WebSocket => "websocket",
            Tp::Polling | Tp::Upgrading => "polling",
        }
    }

    /// The application layer's state of this session, if it is of type `T`.
    pub(crate) fn app_state<T: Any>(&self) -> Option<&T> {
        self.app_state.downcast_ref()
    }
}

impl Session {
    /// Starts waiting for the application's handshake: the session closes after `within`
    /// unless [`Session::handshake_done`] comes first.
    pub(crate) fn expect_handshake(&self, engine: &Engine, within: Duration) {
        self.connect_deadline.store(
            engine.now_ms() + within.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    /// The application's handshake happened.
    pub(crate) fn handshake_done(&self) {
        self.connect_deadline.store(0, Ordering::Relaxed);
    }
}

impl Link for Session {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn pong(&self) {}
    fn name(&self) -> &str {
        &self.sid
    }
}

/// The Engine.IO server of one path.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) hub: Hub,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    app: Arc<dyn App>,
    ws_options: Options,
    heartbeat: OnceLock<()>,
    /// The origin of the heartbeat clock.
    epoch: tokio::time::Instant,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// A random, unguessable id (120 bits, URL-safe base64).
pub fn random_id() -> Arc<str> {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

fn error(status: StatusCode, code: u8, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn text(body: impl Into<Bytes>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body.into(),
    )
        .into_response()
}

impl Engine {
    pub(crate) fn new(
        hub: Hub,
        config: EngineConfig,
        ws_options: Options,
        app: Arc<dyn App>,
    ) -> Arc<Self> {
        let engine = Arc::new(Self {
            config,
            hub: hub.clone(),
            sessions: Mutex::new(HashMap::new()),
            app,
            ws_options,
            heartbeat: OnceLock::new(),
            epoch: tokio::time::Instant::now(),
        });
        let weak = Arc::downgrade(&engine);
        hub.on_shutdown(move |_, _| {
            if let Some(e) = weak.upgrade() {
                for s in e.sessions_list() {
                    e.close(&s, DisconnectReason::ServerShuttingDown);
                }
            }
        });
        engine
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sessions_list(&self) -> Vec<Arc<Session>> {
        self.sessions().values().cloned().collect()
    }

    /// Open sessions.
    pub(crate) fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Open sessions on the polling transport.
    pub(crate) fn polling_count(&self) -> usize {
        self.sessions_list()
            .iter()
            .filter(|s| s.transport_name() == "polling")
            .count()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// One task checks every session's deadlines on a fine tick (1/40 of the shorter of
    /// interval and timeout, 2 ms to 1 s): each session is pinged `pingInterval` after its
    /// handshake and after each ping, and closed when a pong is `pingTimeout` late, as the
    /// reference server's per-session timers do, without a timer per session.
    fn start_heartbeat(self: &Arc<Self>) {
        self.heartbeat.get_or_init(|| {
            let weak: Weak<Engine> = Arc::downgrade(self);
            let interval = self.config.ping_interval.as_millis() as u64;
            let timeout = self.config.ping_timeout.as_millis() as u64;
            let tick = (self.config.ping_interval.min(self.config.ping_timeout) / 40)
                .clamp(Duration::from_millis(2), Duration::from_secs(1));
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(tick);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Some(e) = weak.upgrade() else { return };
                    if e.hub.is_shutting_down() {
                        return;
                    }
                    let now = e.now_ms();
                    for s in e.sessions_list() {
                        let connect = s.connect_deadline.load(Ordering::Relaxed);
                        if connect != 0 && now >= connect {
                            e.close(&s, DisconnectReason::ConnectTimeout);
                            continue;
                        }
                        let deadline = s.pong_deadline.load(Ordering::Relaxed);
                        if deadline != 0 && now >= deadline {
                            e.close(&s, DisconnectReason::PingTimeout);
                            e.hub.stats().reaped();
                        } else {
                            // Deadlines follow the schedule, not the tick that noticed it.
                            let due = s.next_ping.load(Ordering::Relaxed);
                            if now >= due {
                                s.next_ping.store(due + interval, Ordering::Relaxed);
                                if deadline == 0 {
                                    s.pong_deadline.store(due + timeout, Ordering::Relaxed);
                                }
                                s.outbox.request_ping();
                            }
                        }
                    }
                }
            });
        });
    }

    fn open(self: &Arc<Self>, tp: Tp, handshake: Handshake, permit: ConnPermit) -> Arc<Session> {
        self.start_heartbeat();
        let session = Arc::new(Session {
            sid: random_id(),
            outbox: Arc::new(Outbox::new(self.config.queue_limit)),
            state: Mutex::new(State {
                tp,
                get_active: false,
                post_active: false,
                ws_pending: false,
                closed: false,
                last_poll: b"1",
            }),
            next_ping: AtomicU64::new(self.now_ms() + self.config.ping_interval.as_millis() as u64),
            pong_deadline: AtomicU64::new(0),
            connect_deadline: AtomicU64::new(0),
            handshake: Arc::new(handshake),
            app_state: self.app.new_state(),
            limiter: Mutex::new(
                self.config
                    .rate
                    .is_on()
                    .then(|| crate::limits::Limiter::new(&self.config.rate, crate::hub::now_ms())),
            ),
            _permit: permit,
        });
        let upgrades: &[&str] = if tp == Tp::Polling {
            &["websocket"]
        } else {
            &[]
        };
        session
            .outbox
            .push_unbounded(OutFrame::Text(engineio::encode_open(
                &engineio::Handshake {
                    sid: &session.sid,
                    upgrades,
                    ping_interval: self.config.ping_interval.as_millis() as u64,
                    ping_timeout: self.config.ping_timeout.as_millis() as u64,
                    max_payload: self.config.max_payload as u64,
                },
            )));
        self.sessions().insert(session.sid.clone(), session.clone());
        self.hub.stats().connection_opened(Transport::SocketIo);
        self.app.on_open(self, &session);
        session
    }

    /// Ends a session: the application hears why, a pending poll is answered, a WebSocket
    /// is closed (dropped outright on a ping timeout).
    pub(crate) fn close(&self, s: &Arc<Session>, reason: DisconnectReason) {
        let tp = {
            let mut st = s.state();
            if st.closed {
                return;
            }
            st.closed = true;
            st.last_poll = if reason == DisconnectReason::TransportClose {
                b"6"
            } else {
                b"1"
            };
            st.tp
        };
        self.sessions().remove(&s.sid);
        self.hub.stats().connection_closed(Transport::SocketIo);
        self.app.on_close(s, reason);
        let request = match (tp, reason) {
            (Tp::WebSocket, DisconnectReason::PingTimeout) => CloseRequest::Terminate,
            (Tp::WebSocket, DisconnectReason::ServerShuttingDown) => {
                CloseRequest::Close(1001, "server shutting down".into())
            }
            _ => CloseRequest::Close(1000, String::new()),
        };
        s.outbox.close(request);
    }

    /// The session with this id. One whose pong is overdue is closed now rather than at
    /// the heartbeat's next tick, so a request never sees a session that has timed out.
    fn session(&self, sid: &str) -> Option<Arc<Session>> {
        let s = self.sessions().get(sid).cloned()?;
        let deadline = s.pong_deadline.load(Ordering::Relaxed);
        if deadline != 0 && self.now_ms() >= deadline {
            self.close(&s, DisconnectReason::PingTimeout);
            self.hub.stats().reaped();
            return None;
        }
        Some(s)
    }

    /// Applies the session's rate limits to one message of `size` bytes: `false` when it
    /// must be dropped (the client is told with an `error` event, or the session is closed
    /// with 4429 after repeated abuse).
    fn within_rate(&self, s: &Session, size: usize) -> bool {
        use crate::limits::Verdict;
        let verdict = match s.limiter.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            None => return true,
            Some(l) => l.check(&self.config.rate, size, crate::hub::now_ms),
        };
        match verdict {
            Verdict::Allow => true,
            Verdict::Refuse => {
                let event = br#"42["error",{"code":"rate_limited","message":"too many messages; slow down"}]"#;
                s.outbox
                    .push(OutFrame::Text(Bytes::from_static(event)), true);
                false
            }
            Verdict::Close => {
                s.outbox.close(CloseRequest::Close(
                    crate::limits::RATE_LIMIT_CLOSE,
                    "rate limit exceeded".into(),
                ));
                false
            }
        }
    }

    /// Counts a text message and handles it at once when the rate allows and the app can
    /// (see [`App::on_text_now`]); `None` when it must go to [`App::on_message`].
    fn message_now(&self, s: &Arc<Session>, m: &Bytes) -> Option<bool> {
        self.hub.stats().message_in();
        if !self.within_rate(s, m.len()) {
            return Some(true);
        }
        self.app.on_text_now(s, m)
    }

    /// Handles one packet from either transport; `false` ends the session.
    async fn handle_packet(self: &Arc<Self>, s: &Arc<Session>, p: Packet) -> bool {
        match p {
            Packet::Pong(_) => {
                s.pong_deadline.store(0, Ordering::Relaxed);
                true
            }
            Packet::Ping(payload) => {
                s.outbox
                    .push(OutFrame::Text(engineio::encode_text(3, &payload)), false);
                true
            }
            Packet::Message(m) => match self.message_now(s, &m) {
                Some(ok) => ok,
                None => self.app.on_message(self, s, Msg::Text(m)).await,
            },
            Packet::Binary(b) => {
                self.hub.stats().message_in();
                if !self.within_rate(s, b.len()) {
                    return true;
                }
                self.app.on_message(self, s, Msg::Binary(b)).await
            }
            Packet::Close => {
                let polling_without_get = {
                    let st = s.state();
                    st.tp == Tp::Polling && !st.get_active
                };
                if polling_without_get {
                    // A client that closes while polling usually has a GET on its way (its
                    // requests race on separate connections): give it a moment to arrive,
                    // so it gets its `noop` as it would had it come first.
                    let (engine, s) = (self.clone(), s.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        engine.close(&s, DisconnectReason::TransportClose);
                    });
                    return true;
                }
                self.close(s, DisconnectReason::TransportClose);
                false
            }
            Packet::Noop | Packet::Upgrade => true,
            Packet::Open(_) => false,
        }
    }

    /// The axum handler for every request on the Engine.IO path.
    pub(crate) async fn handle(
        axum::extract::State(engine): axum::extract::State<Arc<Engine>>,
        req: Request,
    ) -> Response {
        let origin = req.headers().get(header::ORIGIN).cloned();
        let cors = engine.config.cors;
        let mut resp = engine.route(req).await;
        if cors {
            let h = resp.headers_mut();
            match origin {
                Some(o) => {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
                None => {
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_ORIGIN,
                        HeaderValue::from_static("*"),
                    );
                }
            }
        }
        resp
    }

    async fn route(self: Arc<Self>, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        if parts.method == Method::OPTIONS {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            if let Some(req_headers) = parts.headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req_headers.clone());
            }
            return r;
        }
        let query: HashMap<String, String> =
            parts.uri.query().and_then(parse_query).unwrap_or_default();
        if query.get("EIO").map(String::as_str) != Some("4") {
            self.hub
                .stats()
                .upgrade_rejected(RejectReason::BadHandshake);
            return error(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
        }
        let transport = query.get("transport").map(String::as_str);
        let sid = query.get("sid").cloned();
        if sid.is_none() {
            if let Some(check) = &self.config.allow_request {
                if let Err(reason) = (check.0)(&parts) {
                    tracing::debug!("handshake refused: {reason}");
                    self.hub
                        .stats()
                        .upgrade_rejected(RejectReason::Unauthorized);
                    return error(StatusCode::FORBIDDEN, 4, "Forbidden");
                }
            }
        }
        match transport {
            Some("websocket") => {
                let upgrade = IncomingUpgrade::from_request_parts(&mut parts, &()).await;
                let Ok(upgrade) = upgrade else {
                    return error(StatusCode::BAD_REQUEST, 3, "Bad request");
                };
                let handshake = self.handshake_of(&parts);
                match sid {
                    None => self.accept_ws(upgrade, handshake),
                    Some(sid) => self.accept_upgrade(upgrade, &sid),
                }
            }
            Some("polling") if self.config.allow_polling => match sid {
                None if parts.method == Method::GET => {
                    let handshake = self.handshake_of(&parts);
                    let permit = match self.hub.try_reserve_from(handshake.address.map(|a| a.ip()))
                    {
                        Ok(p) => p,
                        Err(e) => return crate::error::ApiError::from(e).into_response(),
                    };
                    let s = self.open(Tp::Polling, handshake, permit);
                    self.poll(&s).await
                }
                None => error(StatusCode::BAD_REQUEST, 2, "Bad handshake method"),
                Some(sid) => {
                    let Some(s) = self.session(&sid) else {
                        return error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
                    };
                    match parts.method {
                        Method::GET => self.poll(&s).await,
                        Method::POST => self.post(&s, body).await,
                        _ => error(StatusCode::BAD_REQUEST, 2, "Bad handshake method"),
                    }
                }
            },
            _ => error(StatusCode::BAD_REQUEST, 0, "Transport unknown"),
        }
    }

    fn handshake_of(&self, parts: &axum::http::request::Parts) -> Handshake {
        // Header values are slices of hyper's read buffer (8-16 KiB); copying them out
        // lets that buffer go, instead of pinning it for the whole session. The headers that
        // only negotiate the WebSocket upgrade say nothing about the client and are not
        // kept: about 0.5 KiB less per session.
        const UPGRADE_ONLY: [&str; 5] = [
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
            "sec-websocket-extensions",
        ];
        let kept = parts
            .headers
            .keys()
            .filter(|n| !UPGRADE_ONLY.contains(&n.as_str()))
            .count();
        let mut headers = HeaderMap::with_capacity(kept);
        for (name, value) in &parts.headers {
            if UPGRADE_ONLY.contains(&name.as_str()) {
                continue;
            }
            if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), v);
            }
        }
        Handshake {
            headers,
            address: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            issued: crate::hub::now_ms(),
            // The request target as the client sent it (origin-form), in a string of its size.
            url: match parts.uri.path_and_query() {
                Some(pq) => pq.as_str().to_owned(),
                None => parts.uri.to_string(),
            },
        }
    }

    /// A polling `GET`: waits for packets and answers them joined.
    async fn poll(self: &Arc<Self>, s: &Arc<Session>) -> Response {
        enum Start {
            Go,
            Refuse(Response),
            Upgrading,
            Duplicate,
        }
        let start = {
            let mut st = s.state();
            if st.closed {
                Start::Refuse(error(StatusCode::BAD_REQUEST, 1, "Session ID unknown"))
            } else if st.tp == Tp::WebSocket {
                Start::Refuse(error(StatusCode::BAD_REQUEST, 3, "Bad request"))
            } else if st.tp == Tp::Upgrading || st.ws_pending {
                Start::Upgrading
            } else if st.get_active {
                Start::Duplicate
            } else {
                st.get_active = true;
                Start::Go
            }
        };
        match start {
            Start::Go => {}
            Start::Refuse(r) => return r,
            Start::Upgrading => return self.poll_while_upgrading(s).await,
            Start::Duplicate => {
                // Two GETs at once: the protocol says close; the first one gets `1`.
                self.close(s, DisconnectReason::TransportError);
                return error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
        }
        let mut ping = false;
        let body = poll_fn(|cx| {
            let batch = s.outbox.take(cx.waker(), VecDeque::new());
            ping |= batch.ping;
            let st = s.state();
            if !batch.frames.is_empty() || ping {
                let written: usize = batch.frames.iter().map(OutFrame::len).sum();
                s.outbox.written(written);
                self.hub.stats().bytes_out(written as u64);
                let items = batch
                    .frames
                    .iter()
                    .map(|f| match f {
                        OutFrame::Text(t) => PollItem::Text(t),
                        OutFrame::Binary(b) => PollItem::Binary(b),
                    })
                    .chain(ping.then_some(PollItem::Text(b"2")));
                return Poll::Ready(engineio::encode_payload(items));
            }
            if st.closed || batch.close.is_some() {
                return Poll::Ready(Bytes::from_static(st.last_poll));
            }
            if st.tp == Tp::Upgrading {
                return Poll::Ready(Bytes::from_static(b"6"));
            }
            Poll::Pending
        })
        .await;
        let closing = {
            let mut st = s.state();
            st.get_active = false;
            !st.closed && s.outbox.is_closing()
        };
        if closing {
            // The outbox overflowed while polling: the session is over.
            self.close(s, DisconnectReason::SlowConsumer);
        }
        text(body)
    }

    /// A `GET` that arrives mid-upgrade: like the reference server's 100 ms check, give the
    /// upgrade a moment; once done the poll is refused, otherwise it gets a `noop`.
    async fn poll_while_upgrading(&self, s: &Arc<Session>) -> Response {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if s.state().tp == Tp::WebSocket {
                return error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
        }
        text(&b"6"[..])
    }

    /// A polling `POST`: decodes the payload and handles each packet.
    async fn post(self: &Arc<Self>, s: &Arc<Session>, body: Body) -> Response {
        {
            let mut st = s.state();
            if st.closed {
                return error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
            }
            if st.tp == Tp::WebSocket {
                return error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
            if st.post_active {
                drop(st);
                self.close(s, DisconnectReason::TransportError);
                return error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
            st.post_active = true;
        }
        let done = |s: &Arc<Session>| s.state().post_active = false;
        let bytes = match axum::body::to_bytes(body, self.config.max_payload).await {
            Ok(b) => b,
            Err(_) => {
                done(s);
                self.close(s, DisconnectReason::ParseError);
                return error(StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large");
            }
        };
        let packets = match engineio::decode_payload(&bytes) {
            Ok(p) => p,
            Err(_) => {
                done(s);
                self.close(s, DisconnectReason::ParseError);
                return error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
        };
        for p in packets {
            if !self.handle_packet(s, p).await {
                self.close(s, DisconnectReason::ParseError);
                break;
            }
        }
        done(s);
        text(&b"ok"[..])
    }

    fn accept_ws(self: &Arc<Self>, upgrade: IncomingUpgrade, handshake: Handshake) -> Response {
        let permit = match self.hub.try_reserve_from(handshake.address.map(|a| a.ip())) {
            Ok(p) => p,
            Err(e) => return crate::error::ApiError::from(e).into_response(),
        };
        let (response, fut) = match upgrade.upgrade(self.ws_options.clone()) {
            Ok(v) => v,
            Err(_) => return error(StatusCode::BAD_REQUEST, 3, "Bad request"),
        };
        let engine = self.clone();
        tokio::spawn(async move {
            if let Ok(ws) = fut.await {
                let s = engine.open(Tp::WebSocket, handshake, permit);
                let driver = Driver::new(ws, CLOSE_GRACE).with_text_pings("2");
                tokio::spawn(run_ws(engine, s, driver));
            }
        });
        response.into_response()
    }

    fn accept_upgrade(self: &Arc<Self>, upgrade: IncomingUpgrade, sid: &str) -> Response {
        let Some(s) = self.session(sid) else {
            return error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
        };
        {
            let mut st = s.state();
            if st.closed || st.tp != Tp::Polling || st.ws_pending {
                // The reference accepts the WebSocket and closes it at once.
                drop(st);
                return self.accept_and_close(upgrade);
            }
            st.ws_pending = true;
        }
        let (response, fut) = match upgrade.upgrade(self.ws_options.clone()) {
            Ok(v) => v,
            Err(_) => {
                s.state().ws_pending = false;
                return error(StatusCode::BAD_REQUEST, 3, "Bad request");
            }
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let Ok(ws) = fut.await else {
                s.state().ws_pending = false;
                return;
            };
            let mut driver = Driver::new(ws, CLOSE_GRACE).with_text_pings("2");
            driver.set_draining(false);
            let upgraded = tokio::time::timeout(UPGRADE_TIMEOUT, probe(&s, &mut driver, &engine))
                .await
                .unwrap_or(false);
            if upgraded {
                driver.set_draining(true);
                engine.app.on_upgrade(&s);
                tokio::spawn(run_ws(engine, s, driver));
            } else {
                let mut st = s.state();
                st.ws_pending = false;
                if st.tp == Tp::Upgrading {
                    st.tp = Tp::Polling;
                }
            }
        });
        response.into_response()
    }
}

impl Engine {
    fn accept_and_close(&self, upgrade: IncomingUpgrade) -> Response {
        let Ok((response, fut)) = upgrade.upgrade(self.ws_options.clone()) else {
            return error(StatusCode::BAD_REQUEST, 3, "Bad request");
        };
        tokio::spawn(async move {
            if let Ok(ws) = fut.await {
                let mut driver = Driver::new(ws, CLOSE_GRACE);
                driver
                    .send_now(Frame::close(yawc::close::CloseCode::Normal, b""))
                    .await;
            }
        });
        response.into_response()
    }
}

/// The upgrade dance on a new WebSocket: `2probe` → `3probe`, then `5`.
async fn probe<S>(s: &Arc<Session>, driver: &mut Driver<S>, engine: &Arc<Engine>) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    while let Some(frame) = driver.next_message(&**s, engine.hub.stats()).await {
        if frame.opcode() != OpCode::Text {
            return false;
        }
        match engineio::decode_text(frame.into_payload()) {
            Ok(Packet::Ping(p)) if &p[..] == b"probe" => {
                if !driver.send_now(Frame::text("3probe")).await {
                    return false;
                }
                s.state().tp = Tp::Upgrading;
                // A pending poll answers `6` now, so the client can finish.
                s.outbox.wake();
            }
            Ok(Packet::Upgrade) => {
                let mut st = s.state();
                if st.tp != Tp::Upgrading || st.closed {
                    return false;
                }
                st.tp = Tp::WebSocket;
                return true;
            }
            Ok(Packet::Noop) => {}
            _ => return false,
        }
    }
    false
}

/// What one WebSocket frame of a session comes to.
enum Step<'a> {
    /// Nothing to do: the session is closing, or the frame was not a packet (the session
    /// is closed for that already).
    Skip,
    /// Handled at once; `false` when it broke the protocol.
    Done(bool),
    /// Handled by this future.
    Wait(BoxFuture<'a, bool>),
}

impl<'a> Step<'a> {
    fn of(engine: &'a Arc<Engine>, s: &'a Arc<Session>, frame: Frame) -> Self {
        if s.is_closed() {
            return Step::Skip;
        }
        let packet = match frame.opcode() {
            OpCode::Binary => Packet::Binary(frame.into_payload()),
            _ => match engineio::decode_text(frame.into_payload()) {
                Ok(p) => p,
                Err(_) => {
                    engine.close(s, DisconnectReason::ParseError);
                    return Step::Skip;
                }
            },
        };
        match packet {
            // A message the app handles at once needs no boxed future.
            Packet::Message(m) => match engine.message_now(s, &m) {
                Some(ok) => Step::Done(ok),
                None => Step::Wait(engine.app.on_message(engine, s, Msg::Text(m))),
            },
            packet => Step::Wait(Box::pin(engine.handle_packet(s, packet))),
        }
    }
}

/// Reads packets from a WebSocket session until it ends; the driver writes the outbox.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` keeps
/// its arguments and their moved copies side by side in the task, which held the driver
/// twice.
#[allow(clippy::manual_async_fn)] // deliberate, as said above
fn run_ws<S>(
    engine: Arc<Engine>,
    s: Arc<Session>,
    mut driver: Driver<S>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    async move {
        // The frame is handed over, not borrowed, so that nothing of it stays in the task
        // while a handler runs.
        loop {
            let Some(frame) = driver.next_message(&*s, engine.hub.stats()).await else {
                break;
            };
            let ok = match Step::of(&engine, &s, frame) {
                Step::Skip => continue,
                Step::Done(ok) => ok,
                Step::Wait(handler) => handler.await,
            };
            if !ok {
                engine.close(&s, DisconnectReason::ParseError);
            }
        }
        let reason = if s.outbox.is_closing() {
            DisconnectReason::SlowConsumer
        } else {
            DisconnectReason::TransportClose
        };
        engine.close(&s, reason);
    }
}

fn parse_query(q: &str) -> Option<HashMap<String, String>> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(&format!("/?{q}").parse().ok()?)
        .ok()
        .map(|axum::extract::Query(m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    struct Quiet;
    impl App for Quiet {
        fn on_open(&self, _: &Arc<Engine>, _: &Arc<Session>) {}
        fn on_message<'a>(
            &'a self,
            _: &'a Arc<Engine>,
            _: &'a Arc<Session>,
            _: Msg,
        ) -> BoxFuture<'a, bool> {
            Box::pin(async { true })
        }
        fn on_close(&self, _: &Arc<Session>, _: DisconnectReason) {}
    }

    /// The query is read from the kept URL: decoded, and empty when there is none.
    #[test]
    fn the_handshake_query_is_read_from_its_url() {
        let mut hs = Handshake {
            headers: HeaderMap::new(),
            address: None,
            issued: 0,
            url: "/socket.io/?EIO=4&transport=polling&room=a%20b&tag=x&tag=y".into(),
        };
        let q = hs.query();
        assert_eq!(q.get("EIO").map(String::as_str), Some("4"));
        assert_eq!(q.get("room").map(String::as_str), Some("a b"));
        assert_eq!(q.get("tag").map(String::as_str), Some("y"));
        assert_eq!(q.len(), 4);
        hs.url = "/socket.io/".into();
        assert!(hs.query().is_empty());
    }

    /// The Socket.IO connection's task must hold its WebSocket once: as an `async fn` it
    /// held the driver twice, 1,184 bytes more than the WebSocket.
    #[tokio::test]
    async fn a_websocket_session_task_holds_its_websocket_and_little_else() {
        let hub = Hub::new(HubConfig::default());
        let config = EngineConfig {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1 << 20,
            queue_limit: 64,
            cors: false,
            allow_polling: true,
            allow_request: None,
            rate: crate::limits::RatePolicy::OFF,
        };
        let engine = Engine::new(hub.clone(), config, Options::default(), Arc::new(Quiet));
        let handshake = Handshake {
            headers: HeaderMap::new(),
            address: None,
            issued: 0,
            url: "/socket.io/?EIO=4&transport=websocket".into(),
        };
        let permit = hub.try_reserve_from(None).expect("a connection slot");
        let s = engine.open(Tp::WebSocket, handshake, permit);
        let (io, _peer) = tokio::io::duplex(64);
        let ws = yawc::WebSocket::from_stream(io, yawc::Role::Server, Options::default())
            .expect("a WebSocket over a duplex stream");
        let websocket = std::mem::size_of_val(&ws);
        let task = run_ws(engine.clone(), s.clone(), Driver::new(ws, CLOSE_GRACE));
        let rest = std::mem::size_of_val(&task) - websocket;
        assert!(
            rest <= 200,
            "the Socket.IO task holds {rest} bytes besides its WebSocket"
        );
        drop(task);
        engine.close(&s, DisconnectReason::TransportClose);
    }
}
