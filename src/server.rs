//! The assembled server: routes, background tasks, serving and graceful shutdown.
//!
//! [`Hubbub`] owns the hub and the front-end state built from a [`Config`]. Its router can
//! be merged into an application's own axum `Router`; [`Hubbub::serve`] runs it with the
//! heartbeat and the stats log, and on shutdown closes every client with 1001, stops
//! accepting, flushes and returns within `shutdown_timeout`.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::{middleware, response::Html, routing::get, Router};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::api::{self, ApiState};
use crate::auth::{self, Authenticator, Gate, Origins};
use crate::config::Config;
use crate::error::{ErrorCode, HubError};
use crate::hub::{Hub, HubConfig};
use crate::limits::{AddressLimiter, RatePolicy};

pub use crate::hub::REPLACED;
use crate::sio::{
    install_hub_events, ConnectError, ConnectRequest, SioConfig, SocketIo, SocketRef,
};
use crate::ws::{self, WsConfig, WsState};

/// Hubbub's hub plus the front ends and API built on it.
#[derive(Clone, Debug)]
pub struct Hubbub {
    hub: Hub,
    config: Config,
    ws: WsState,
    io: SocketIo,
    auth: Arc<Authenticator>,
    origins: Arc<Origins>,
    handshakes: Arc<AddressLimiter>,
}

impl Hubbub {
    /// Builds the hub and front ends from `config`, opening the store it names (with
    /// `store = "sqlite"`, the default, the file `db` is created or read back: rooms and
    /// history survive restarts).
    ///
    /// # Panics
    ///
    /// When the store cannot be opened; [`Self::try_new`] returns that error instead.
    pub fn new(config: Config) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("hubbub: {e}"))
    }

    /// Like [`Self::new`], with the store's error (an unreadable or foreign `db` file)
    /// returned rather than panicking.
    pub fn try_new(config: Config) -> Result<Self, String> {
        let hubbub = Self::without_store(config);
        if hubbub.config.store == "sqlite" {
            let (store, rooms) = crate::store::sqlite::SqliteStore::open(&hubbub.config.db)?;
            let n = hubbub.hub.restore(rooms);
            tracing::info!("store {}: {n} rooms restored", hubbub.config.db.display());
            hubbub.hub.set_store(Arc::new(store));
        }
        Ok(hubbub)
    }

    fn without_store(config: Config) -> Self {
        let hub = Hub::new(HubConfig {
            default_history: config.default_history,
            queue_limit: config.queue_limit,
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            ..HubConfig::default()
        });
        let rate = RatePolicy {
            messages: config.rate_messages,
            bytes: config.rate_bytes,
        };
        let ws = WsState::new(
            hub.clone(),
            WsConfig {
                max_payload: config.max_payload,
                compression: config.compression,
                heartbeat_interval: config.heartbeat_interval,
                rate,
            },
        );
        let io = SocketIo::new(
            hub.clone(),
            SioConfig::default()
                .with_path(&config.socketio_path)
                .with_ping(config.heartbeat_interval, config.heartbeat_timeout)
                .with_max_payload(config.max_payload)
                .with_connect_timeout(config.connect_timeout)
                .with_rate(rate)
                .with_recovery(
                    (!config.socketio_recovery.is_zero()).then_some(config.socketio_recovery),
                ),
        );
        let auth = Arc::new(Authenticator::from_config_or_closed(&config));
        standard_namespaces(&io, &hub, &auth, &config.jwt_cookie);
        if auth.required() {
            install_token_refresh(&hub, &auth);
        }
        if config.single_session {
            // "Log in on a new device, log out the others."
            hub.on_connect(|hub, conn| {
                hub.close_others(conn, REPLACED, "replaced by a newer session");
            });
        }
        Self {
            hub,
            config: config.clone(),
            ws,
            io,
            auth,
            origins: Arc::new(Origins::from_config(&config)),
            handshakes: Arc::new(AddressLimiter::new(config.rate_handshakes_per_ip)),
        }
    }

    /// The gate in front of the WebSocket (`socketio: false`) or Socket.IO routes.
    fn gate(&self, socketio: bool) -> Gate {
        Gate {
            auth: self.auth.clone(),
            origins: self.origins.clone(),
            cookie: self.config.jwt_cookie.as_str().into(),
            socketio,
            handshakes: self.handshakes.clone(),
            hub: self.hub.clone(),
        }
    }

    /// The Socket.IO server: add namespaces and handlers with it.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// The Socket.IO routes only.
    pub fn sio_routes(&self) -> Router {
        self.io
            .routes()
            .layer(middleware::from_fn_with_state(self.gate(true), auth::gate))
    }

    /// The hub handle: clone it to emit from any task.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The configuration this server was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The WebSocket routes only (`/ws`, `/ws/{user}`, `/ws/echo`), for mounting under a
    /// prefix with `Router::nest`.
    pub fn ws_routes(&self) -> Router {
        ws::routes(self.ws.clone())
            .layer(middleware::from_fn_with_state(self.gate(false), auth::gate))
    }

    /// The HTTP API, metrics and health routes.
    pub fn api_routes(&self) -> Router {
        api::routes(ApiState {
            hub: self.hub.clone(),
            api_key: self.config.api_key.clone(),
            max_payload: self.config.max_payload,
        })
    }

    /// Everything: the index page, the WebSocket and Socket.IO routes and the API.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(|| async { Html(INDEX_HTML) }))
            .merge(self.ws_routes())
            .merge(self.sio_routes())
            .merge(self.api_routes())
    }

    /// Serves `app` (usually [`Self::router`] merged into the application's routes) until
    /// `shutdown` resolves, then shuts down gracefully.
    ///
    /// Each connection gets `handshake_timeout` to send its request headers (a client that
    /// opens a TCP connection and stalls is dropped: slowloris), and TCP_NODELAY (a 101
    /// followed by a small welcome frame must not wait for a delayed ACK).
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let heartbeat = self.hub.spawn_heartbeat();
        let expiry = self.hub.spawn_expiry();
        let stats_log = self.spawn_stats_log();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // One clone per open HTTP connection: shutdown waits for the count to drop.
        let live = Arc::new(());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.config.handshake_timeout);
        let tls = match (&self.config.tls_cert, &self.config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, addr) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(v) => v,
                    Err(e) => {
                        // Out of file descriptors, usually: let some close first.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
            let router = app.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(addr));
                router.clone().oneshot(req)
            });
            let (http, stop, guard) = (http.clone(), stop_rx.clone(), live.clone());
            match &tls {
                None => {
                    tokio::spawn(serve_connection(http, tcp, service, stop, guard));
                }
                Some(acceptor) => {
                    let (acceptor, limit) = (acceptor.clone(), self.config.handshake_timeout);
                    tokio::spawn(async move {
                        // The TLS handshake gets the same time limit as the request headers.
                        match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(http, stream, service, stop, guard).await
                            }
                            Ok(Err(e)) => tracing::debug!("TLS handshake with {addr}: {e}"),
                            Err(_) => tracing::debug!("TLS handshake with {addr} timed out"),
                        }
                    });
                }
            }
        }
        drop(listener);
        tracing::info!("shutting down: closing every client with 1001");
        self.hub.shutdown(1001, "server shutting down");
        let _ = stop_tx.send(true);
        let timeout = self.config.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        while Arc::strong_count(&live) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if Arc::strong_count(&live) > 1 {
            tracing::warn!("HTTP connections still open after {timeout:?}; exiting anyway");
        }
        if !self.hub.wait_idle(timeout).await {
            tracing::warn!(
                "{} WebSocket connections did not close within {timeout:?}",
                self.hub.connection_count()
            );
        }
        heartbeat.abort();
        expiry.abort();
        if let Some(t) = stats_log {
            t.abort();
        }
        if let Some(store) = self.hub.store().cloned() {
            // What was delivered before the end is on disk before the process exits.
            let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    fn spawn_stats_log(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.config.stats_log_interval;
        if every.is_zero() {
            return None;
        }
        let hub = self.hub.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                log_stats(&hub);
            }
        }))
    }
}

/// Serves one HTTP/1.1 connection (plain or TLS) with upgrades, until it ends or shutdown
/// asks it to finish its current request.
async fn serve_connection<I, S>(
    http: hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
    _live: Arc<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A TLS acceptor from PEM files: the certificate chain and its private key (rustls, ring
/// provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: {e}", what.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The standalone server's Socket.IO surface: `/` (shared with v1 clients) and any other
/// namespace on demand, each with the hub's mapped events, and a middleware that names the
/// user: `auth.user` in auth mode `none`, a verified token otherwise.
fn standard_namespaces(io: &SocketIo, hub: &Hub, auth: &Arc<Authenticator>, cookie: &str) {
    let main = io.ns("/", |_socket: SocketRef| {});
    let others = io.dynamic_ns(|name| name.len() <= 200, |_socket: SocketRef| {});
    for ns in [&main, &others] {
        if auth.required() {
            let (verifier, cookie): (Arc<Authenticator>, Arc<str>) = (auth.clone(), cookie.into());
            ns.use_middleware(move |req| {
                let (verifier, cookie) = (verifier.clone(), cookie.clone());
                async move { authenticate_socket(&verifier, &cookie, &req).await }
            });
            install_auth_event(ns, hub.clone(), auth.clone());
        } else {
            ns.use_middleware(check_user);
        }
        install_hub_events(ns);
    }
}

/// Names a Socket.IO socket's user from its credentials: the CONNECT's `auth.token` (or
/// `auth {user, password}` in mode `basic`), or those the handshake request carried
/// (header, query, cookie, session cookie). Refusals reach the client as `connect_error`
/// with `{code, message}` in `data`.
async fn authenticate_socket(
    auth: &Authenticator,
    cookie: &str,
    req: &ConnectRequest,
) -> Result<(), ConnectError> {
    let refused = |e: HubError| {
        ConnectError::new(e.message.clone())
            .with_data(serde_json::json!({"code": e.code.as_str(), "message": e.message}))
    };
    let principal = if let Authenticator::Cookie(session) = auth {
        let peer = req.handshake.address.map(|a| a.ip());
        match session.authenticate(&req.handshake.headers, peer).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(refused(auth.missing())),
            Err(e) => return Err(refused(e)),
        }
    } else if let Authenticator::Basic(basic) = auth {
        // `auth: {user, password}`, or the handshake's `Authorization: Basic`.
        let text = |k: &str| req.auth.get(k).and_then(serde_json::Value::as_str);
        let creds = match (text("user"), text("password")) {
            (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
            _ => auth::basic_credentials(&req.handshake.headers),
        };
        let Some((user, password)) = creds else {
            return Err(refused(auth.missing()));
        };
        basic.verify(&user, &password).map_err(refused)?
    } else {
        let token = match req.auth.get("token") {
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            _ => auth::request_token(&req.handshake.headers, &req.handshake.query, cookie)
                .map(|(t, _)| t),
        };
        let Some(token) = token else {
            return Err(refused(auth.missing()));
        };
        auth.verify(&token).map_err(refused)?
    };
    req.set_grants(crate::hub::Grants::from_claims(&principal.claims));
    req.set_user(principal.user);
    req.set_expiry(principal.expires_at_ms);
    Ok(())
}

/// Checks a fresh token for a connection of `user`: same user, later expiry.
fn refreshed(auth: &Authenticator, user: &str, token: &str) -> Result<Option<u64>, HubError> {
    let p = auth.verify(token)?;
    if p.user != user {
        return Err(HubError::new(
            ErrorCode::Forbidden,
            "the token names another user",
        ));
    }
    Ok(p.expires_at_ms)
}

/// The v1 `auth` op: `{"op":"auth","token":"..."}` replaces the connection's token before it
/// expires; the ack carries the new `expires_at` (ms since the epoch).
fn install_token_refresh(hub: &Hub, auth: &Arc<Authenticator>) {
    let auth = auth.clone();
    hub.on_op("auth", move |call| {
        let auth = auth.clone();
        async move {
            let token = call
                .frame
                .get("token")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| HubError::bad_request("`token` must be a string"))?;
            let at = refreshed(&auth, call.conn.user(), token)?;
            call.hub.set_expiry(&call.conn, at);
            Ok(Some(serde_json::json!({ "expires_at": at })))
        }
    });
}

/// The Socket.IO `auth` event: `socket.emit("auth", {token}, ack)` does what the v1 `auth`
/// op does; the ack gets `{ok: true, expires_at}` or `{ok: false, code, message}`.
fn install_auth_event(ns: &crate::sio::Namespace, hub: Hub, auth: Arc<Authenticator>) {
    ns.on("auth", move |s, args, ack| {
        let token = args
            .values
            .first()
            .and_then(|a| a.get("token"))
            .and_then(serde_json::Value::as_str);
        let res = match token {
            None => Err(HubError::bad_request("`token` must be a string")),
            Some(t) => refreshed(&auth, s.user(), t),
        };
        let answer = match res {
            Ok(at) => {
                hub.set_expiry(s.conn(), at);
                serde_json::json!({"ok": true, "expires_at": at})
            }
            Err(e) => {
                serde_json::json!({"ok": false, "code": e.code.as_str(), "message": e.message})
            }
        };
        if let Some(ack) = ack {
            ack.send_value(answer);
        }
    });
}

/// Refuses a CONNECT whose `auth.user` is present but not a usable user name.
async fn check_user(req: std::sync::Arc<ConnectRequest>) -> Result<(), ConnectError> {
    match req.auth.get("user") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(u)) if !u.is_empty() && u.len() <= 200 => Ok(()),
        Some(_) => Err(ConnectError::new("invalid user")
            .with_data(serde_json::json!({"code": "bad_request", "field": "auth.user"}))),
    }
}

/// Logs connection counts per user, like the seeds' monitoring loops.
fn log_stats(hub: &Hub) {
    const SHOWN: usize = 20;
    let per_user = hub.connections_per_user();
    let mut detail: Vec<String> = per_user
        .iter()
        .take(SHOWN)
        .map(|(u, n)| format!("{u}={n}"))
        .collect();
    if per_user.len() > SHOWN {
        detail.push(format!("... {} more users", per_user.len() - SHOWN));
    }
    tracing::info!(
        connections = hub.connection_count(),
        users = per_user.len(),
        rooms = hub.rooms().len(),
        messages_out = hub.stats().messages_out_total(),
        "stats: {}",
        detail.join(" ")
    );
}

/// Raises the open-files soft limit to the hard limit and returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// Pending connections the listener queues before they are accepted (the kernel caps it
/// at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for [`Hubbub::serve`] with a backlog of [`LISTEN_BACKLOG`].
///
/// `tokio::net::TcpListener::bind` queues only 128 connections; a burst of reconnects after
/// a restart overflows that, and each dropped SYN costs its client a one-second retry.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// File descriptors kept aside for the listener, logs, the store and the runtime.
pub const FD_RESERVE: u64 = 64;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

const INDEX_HTML: &str = include_str!("../static/index.html");
