//! Broadcast chat: what a client says goes to everyone else, and everyone hears who came
//! and went, like the seeds' `ws` chat server.
//!
//! Run `cargo run --example chat`, then from several terminals or browser tabs connect to
//! `ws://127.0.0.1:3000/ws/<name>` and send `{"op":"say","text":"hello"}`.

use hubbub::{server::shutdown_signal, Config, Hubbub};
use serde_json::json;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let hubbub = Hubbub::new(Config::default());
    let hub = hubbub.hub();
    // An application op: broadcast to all but the sender.
    hub.on_op("say", |call| async move {
        let text = call.frame["text"].clone();
        call.hub
            .to_all()
            .except(call.conn.id())
            .from(call.conn.user_arc())
            .emit("chat", json!({ "text": text }))?;
        Ok(None)
    });
    hub.on_connect(|hub, conn| {
        let _ = hub
            .to_all()
            .except(conn.id())
            .emit("joined", json!({ "user": conn.user() }));
    });
    hub.on_disconnect(|hub, conn| {
        let _ = hub.to_all().emit("left", json!({ "user": conn.user() }));
    });
    let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
    println!("chat on ws://127.0.0.1:3000/ws/<name>");
    hubbub
        .serve(listener, hubbub.router(), shutdown_signal())
        .await
}
