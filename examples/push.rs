//! Single-user push: a user connects at `/ws/{name}` (on every device they like) and the
//! application's own HTTP route pushes to all of that user's connections.
//!
//! Run `cargo run --example push`, connect to `ws://127.0.0.1:3000/ws/alice`, then
//! `curl -XPOST localhost:3000/notify/alice -d 'your order shipped'`.

use axum::{extract::Path, extract::State, routing::post, Json, Router};
use hubbub::{server::shutdown_signal, Config, Hub, Hubbub};
use serde_json::{json, Value};

async fn notify(State(hub): State<Hub>, Path(user): Path<String>, body: String) -> Json<Value> {
    match hub
        .to_user(&user)
        .from("shop")
        .emit("notification", json!(body))
    {
        Ok(out) => Json(json!({ "delivered": out.delivered, "online": out.online })),
        Err(e) => Json(json!({ "error": e.to_string() })),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let hubbub = Hubbub::new(Config::default());
    let app = Router::new()
        .route("/notify/{user}", post(notify))
        .with_state(hubbub.hub().clone())
        .merge(hubbub.ws_routes());
    let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
    println!("push: connect to ws://127.0.0.1:3000/ws/<name>, POST /notify/<name>");
    hubbub.serve(listener, app, shutdown_signal()).await
}
