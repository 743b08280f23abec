//! Serving: the accept loop (plain or TLS, with a header timeout against slowloris), the
//! background tasks, graceful shutdown, and the process-level helpers the binary uses
//! (listen backlog, open-files limit, signals).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::Hubbub;
use crate::hub::Hub;

impl Hubbub {
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
        let dashboard = tokio::spawn(crate::services::dashboard::feed(
            self.hub.clone(),
            Duration::from_secs(1),
        ));
        let admin = self
            .services
            .admin
            .clone()
            .map(|a| tokio::spawn(a.feed(Duration::from_secs(2))));
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
        dashboard.abort();
        if let Some(a) = admin {
            a.abort();
        }
        if let Some(t) = stats_log {
            t.abort();
        }
        if let Some(cluster) = &self.cluster {
            // The other nodes stop listing this one at once, not when its heartbeat expires.
            cluster.leave().await;
        }
        if let Some(store) = self.hub.store().cloned() {
            // What was delivered before the end is on disk before the process exits.
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
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
