//! The server the official Socket.IO and Engine.IO conformance suites expect, on one port:
//! `/socket.io/` with the main and `/custom` namespaces (emit `auth` with the CONNECT
//! payload on connect, answer `message` with `message-back`, ack `message-with-ack` with the
//! same arguments) and a bare Engine.IO echo at `/engine.io/`; pingInterval 300 ms,
//! pingTimeout 200 ms, maxPayload 1000000, connectTimeout 1000 ms, CORS for any origin.
//!
//! `PORT=3000 cargo run --release --example socketio_conformance`; see the README for
//! fetching and running the suites.

use std::collections::BTreeMap;
use std::time::Duration;

use hubbub::sio::{engine_echo_routes, SioConfig, SocketIo, SocketRef};
use hubbub::{server::shutdown_signal, Config, Hubbub};

fn handlers(socket: SocketRef) {
    socket.emit("auth", socket.auth().clone());
    socket.on("message", |s, args, _| s.emit_args("message-back", args));
    socket.on("message-with-ack", |_, args, ack| {
        if let Some(ack) = ack {
            ack.send(args);
        }
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let mut settings = BTreeMap::new();
    settings.insert("bind".to_string(), format!("127.0.0.1:{port}"));
    settings.insert("heartbeat_interval".to_string(), "300ms".to_string());
    settings.insert("heartbeat_timeout".to_string(), "200ms".to_string());
    settings.insert("max_payload".to_string(), "1000000".to_string());
    let config = Config::from_values(&settings).expect("valid settings");
    let bind = config.bind;
    let hubbub = Hubbub::new(config);
    let sio_config = SioConfig::default()
        .with_ping(Duration::from_millis(300), Duration::from_millis(200))
        .with_max_payload(1_000_000)
        .with_connect_timeout(Duration::from_millis(1000));
    let io = SocketIo::new(hubbub.hub().clone(), sio_config.clone());
    io.ns("/", handlers);
    io.ns("/custom", handlers);
    let app = io.routes().merge(engine_echo_routes(
        hubbub.hub().clone(),
        sio_config.with_path("/engine.io"),
    ));
    let listener = hubbub::server::bind(bind)?;
    println!("conformance server on http://{bind}");
    hubbub.serve(listener, app, shutdown_signal()).await
}
