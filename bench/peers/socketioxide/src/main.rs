//! The socketioxide peer: clients `join` {room} and `publish` {room, event, data}; the server
//! emits `data` to the room, the sender included. `send` {event, data} answers the sender
//! alone (the echo scenario). The same work as bench/peers/socketio-server.js; WebSocket
//! and polling, no compression.

use serde_json::Value;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::SocketIo;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3004);
    let (layer, io) = SocketIo::new_layer();
    let io2 = io.clone();
    io.ns("/", async move |s: SocketRef| {
        s.on("join", async |s: SocketRef, Data::<Value>(v)| {
            if let Some(room) = v.get("room").and_then(Value::as_str) {
                s.join(room.to_string());
            }
        });
        let io = io2.clone();
        s.on("publish", async move |Data::<Value>(v)| {
            let (Some(room), Some(event)) = (
                v.get("room").and_then(Value::as_str),
                v.get("event").and_then(Value::as_str),
            ) else {
                return;
            };
            let data = v.get("data").cloned().unwrap_or(Value::Null);
            let _ = io.to(room.to_string()).emit(event.to_string(), &data).await;
        });
        s.on("send", async |s: SocketRef, Data::<Value>(v)| {
            let event = v.get("event").and_then(Value::as_str).unwrap_or("message");
            let data = v.get("data").cloned().unwrap_or(Value::Null);
            let _ = s.emit(event.to_string(), &data);
        });
    });
    let app = axum::Router::new().layer(layer);
    // The same listen backlog as Hubbub's (tokio's `bind` queues only 128, and a burst of
    // connections would then measure SYN retries, not the server).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(([127, 0, 0, 1], port).into()).expect("bind");
    let listener = socket.listen(4096).expect("listen");
    println!("socketioxide-peer listening on {port}");
    axum::serve(listener, app).await.expect("serve");
}
