//! WebSocket routes grouped under path prefixes, like express-ws routers: two independent
//! hubs, one for chat under `/chat` and one for a game under `/game`, plus the API of the
//! first, all on one port.
//!
//! Run `cargo run --example routers`; connect to `ws://127.0.0.1:3000/chat/ws/<name>` or
//! `ws://127.0.0.1:3000/game/ws/<name>`: a broadcast in one never reaches the other.

use axum::{routing::get, Router};
use hubbub::{server::shutdown_signal, Config, Hubbub};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    // One store file per hub: the chat's history survives restarts, the game keeps none.
    let mut chat_config = Config::default();
    chat_config.db = "chat.db".into();
    let mut game_config = Config::default();
    game_config.store = "memory".into();
    let chat = Hubbub::new(chat_config);
    let game = Hubbub::new(game_config);
    let app = Router::new()
        .route("/", get(|| async { "chat at /chat/ws, game at /game/ws" }))
        .nest("/chat", chat.ws_routes())
        .nest("/game", game.ws_routes())
        .merge(chat.api_routes());
    // `serve` runs the chat hub's heartbeat and shutdown; the game hub gets its own.
    let _game_heartbeat = game.hub().spawn_heartbeat();
    let game_hub = game.hub().clone();
    let shutdown = async move {
        shutdown_signal().await;
        game_hub.shutdown(1001, "server shutting down");
    };
    let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
    chat.serve(listener, app, shutdown).await
}
