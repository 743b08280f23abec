//! The assembled server: routes, background tasks, serving and graceful shutdown.
//!
//! [`Hubbub`] owns the hub and the front-end state built from a [`Config`]. Its router can
//! be merged into an application's own axum `Router`; [`Hubbub::serve`] runs it with the
//! heartbeat and the stats log, and on shutdown closes every client with 1001, stops
//! accepting, flushes and returns within `shutdown_timeout`.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;

use axum::{response::Html, routing::get, serve::ListenerExt, Router};
use tokio::net::TcpListener;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::hub::{Hub, HubConfig};
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
}

impl Hubbub {
    /// Builds the hub and front ends from `config`.
    pub fn new(config: Config) -> Self {
        let hub = Hub::new(HubConfig {
            default_history: config.default_history,
            queue_limit: config.queue_limit,
            max_connections: config.max_connections,
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            ..HubConfig::default()
        });
        let ws = WsState::new(
            hub.clone(),
            WsConfig {
                max_payload: config.max_payload,
                compression: config.compression,
                heartbeat_interval: config.heartbeat_interval,
            },
        );
        let io = SocketIo::new(
            hub.clone(),
            SioConfig::default()
                .with_path(&config.socketio_path)
                .with_ping(config.heartbeat_interval, config.heartbeat_timeout)
                .with_max_payload(config.max_payload)
                .with_connect_timeout(config.connect_timeout)
                .with_recovery(
                    (!config.socketio_recovery.is_zero()).then_some(config.socketio_recovery),
                ),
        );
        standard_namespaces(&io);
        Self {
            hub,
            config,
            ws,
            io,
        }
    }

    /// The Socket.IO server: add namespaces and handlers with it.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// The Socket.IO routes only.
    pub fn sio_routes(&self) -> Router {
        self.io.routes()
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
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let heartbeat = self.hub.spawn_heartbeat();
        let stats_log = self.spawn_stats_log();
        let hub = self.hub.clone();
        let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: closing every client with 1001");
            hub.shutdown(1001, "server shutting down");
            let _ = stopped_tx.send(true);
        };
        // Nagle off: a 101 followed by a small welcome frame must not wait for a delayed ACK.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
        });
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let timeout = self.config.shutdown_timeout;
        let mut stopped = stopped_rx.clone();
        let mut serve = std::pin::pin!(server.into_future());
        tokio::select! {
            res = &mut serve => res?,
            _ = async { let _ = stopped.wait_for(|s| *s).await; tokio::time::sleep(timeout).await } => {
                tracing::warn!("HTTP connections still open after {timeout:?}; exiting anyway");
            }
        }
        if !self.hub.wait_idle(timeout).await {
            tracing::warn!(
                "{} WebSocket connections did not close within {timeout:?}",
                self.hub.connection_count()
            );
        }
        heartbeat.abort();
        if let Some(t) = stats_log {
            t.abort();
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

/// The standalone server's Socket.IO surface: `/` (shared with v1 clients) and any other
/// namespace on demand, each with the hub's mapped events, and a middleware that checks
/// `auth.user` (the user name in auth mode `none`).
fn standard_namespaces(io: &SocketIo) {
    let main = io.ns("/", |_socket: SocketRef| {});
    main.use_middleware(check_user);
    install_hub_events(&main);
    let others = io.dynamic_ns(|name| name.len() <= 200, |_socket: SocketRef| {});
    others.use_middleware(check_user);
    install_hub_events(&others);
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
