//! Echo: every frame back to its sender, beside an ordinary HTTP route on the same port.
//!
//! Run `cargo run --example echo`, then connect any WebSocket client to
//! `ws://127.0.0.1:3000/ws/echo`; `curl http://127.0.0.1:3000/` answers from the app.

use axum::{routing::get, Router};
use hubbub::{server::shutdown_signal, Config, Hubbub};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let hubbub = Hubbub::new(Config::default());
    let app = Router::new()
        .route(
            "/",
            get(|| async { "an ordinary route; the echo is at /ws/echo" }),
        )
        .merge(hubbub.ws_routes());
    let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
    println!("echo on ws://127.0.0.1:3000/ws/echo");
    hubbub.serve(listener, app, shutdown_signal()).await
}
