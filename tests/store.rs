//! The SQLite store (`store = "sqlite"`, the default): rooms created through the API, every
//! history room's kept messages and its `seq` counter survive a restart on the same `db`
//! file, in every namespace; deleted rooms stay deleted; the file holds no more than each
//! room keeps; a file that is not a Hubbub database is a clear error at start.

mod common;

use std::path::Path;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

async fn server(db: &Path) -> TestServer {
    TestServer::with(&[("store", "sqlite"), ("db", db.to_str().unwrap())]).await
}

async fn push(s: &TestServer, room: &str, data: Value) -> Value {
    let (status, body) = s
        .post(
            "/api/push",
            json!({"room": room, "event": "said", "data": data, "from": "ann"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn stored_rows(db: &Path, room: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM messages WHERE room = ?1",
        [room],
        |r| r.get(0),
    )
    .unwrap()
}

/// A Socket.IO client over WebSocket, connected to `ns`.
async fn sio(s: &TestServer, ns: &str) -> common::Ws {
    let url = s.ws_url("/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.next().await.unwrap().unwrap(); // open
    ws.send(WsMessage::text(format!("40{ns},"))).await.unwrap();
    let connected = ws.next().await.unwrap().unwrap().into_text().unwrap();
    assert!(connected.starts_with(&format!("40{ns},")), "{connected}");
    ws
}

/// Sends a Socket.IO event with an ack id and returns the ack's first argument, skipping
/// the events that come before it.
async fn sio_call(
    ws: &mut common::Ws,
    ns: &str,
    id: u32,
    args: Value,
    seen: &mut Vec<Value>,
) -> Value {
    ws.send(WsMessage::text(format!("42{ns},{id}{args}")))
        .await
        .unwrap();
    let ack_prefix = format!("43{ns},{id}");
    loop {
        let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
        if let Some(rest) = text.strip_prefix(&ack_prefix) {
            let v: Value = serde_json::from_str(rest).unwrap();
            return v[0].clone();
        }
        if let Some(rest) = text.strip_prefix(&format!("42{ns},")) {
            seen.push(serde_json::from_str(rest).unwrap());
        }
    }
}

#[tokio::test]
async fn rooms_history_and_counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubbub.db");
    let s = server(&db).await;
    let (status, _) = s
        .post(
            "/api/rooms",
            json!({"name": "vip", "history": 3, "max_users": 5, "private": true, "presence": false}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .post("/api/rooms", json!({"name": "live", "history": 0}))
        .await;
    assert_eq!(status, 201);
    for i in 1..=5 {
        push(&s, "vip", json!({"n": i})).await;
        push(&s, "lobby", json!(format!("hello {i}"))).await;
    }
    push(&s, "live", json!("not kept")).await;
    let (_, before) = s.get("/api/rooms/vip/history").await;
    // Shutting down writes out what was queued; the next server reads it back.
    s.shutdown().await;
    assert_eq!(
        stored_rows(&db, "vip"),
        3,
        "a room keeps its `history` latest on disk too"
    );
    assert_eq!(stored_rows(&db, "lobby"), 5);
    assert_eq!(stored_rows(&db, "live"), 0);

    let s = server(&db).await;
    let (_, rooms) = s.get("/api/rooms").await;
    let names: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["live", "lobby", "vip"]);
    let (_, vip) = s.get("/api/rooms/vip").await;
    assert_eq!(
        vip,
        json!({"name": "vip", "members": 0, "max_users": 5, "private": true, "history": 3, "history_ttl": 0, "presence": false, "schema": null})
    );
    let (_, after) = s.get("/api/rooms/vip/history").await;
    assert_eq!(after, before, "the same messages, seq, ts and sender");
    assert_eq!(
        after["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![5, 4, 3]
    );
    // A client that saw seq 2 before the restart resumes where it was; the counter goes on.
    let mut c = s.user("bob").await;
    c.send(json!({"op": "join", "room": "lobby", "since": 2, "id": 1}))
        .await;
    for seq in 3..=5 {
        let m = c.recv().await;
        assert_eq!(
            (m["op"].as_str(), m["seq"].as_u64()),
            (Some("message"), Some(seq))
        );
        assert_eq!(m["data"], json!(format!("hello {seq}")));
        assert_eq!(m["from"], "ann");
    }
    let ack = c.recv().await;
    assert_eq!(
        (ack["op"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(5))
    );
    assert_eq!(push(&s, "lobby", json!("after")).await["seq"], 6);
}

#[tokio::test]
async fn deleted_rooms_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubbub.db");
    let s = server(&db).await;
    s.post("/api/rooms", json!({"name": "gone", "history": 10}))
        .await;
    push(&s, "gone", json!(1)).await;
    push(&s, "kept", json!(1)).await;
    let (status, _) = s
        .send(reqwest::Method::DELETE, "/api/rooms/gone", None)
        .await;
    assert_eq!(status, 200);
    s.shutdown().await;
    let s = server(&db).await;
    assert_eq!(s.get("/api/rooms/gone").await.0, 404);
    assert_eq!(s.get("/api/rooms/kept").await.0, 200);
    assert_eq!(stored_rows(&db, "gone"), 0);
}

#[tokio::test]
async fn socketio_namespaces_keep_their_own_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubbub.db");
    let s = server(&db).await;
    let mut ws = sio(&s, "/chat").await;
    let mut seen = Vec::new();
    for i in 1..=3 {
        let ack = sio_call(
            &mut ws,
            "/chat",
            i,
            json!(["publish", {"room": "r", "event": "said", "data": {"i": i}}]),
            &mut seen,
        )
        .await;
        assert_eq!(ack, json!({"ok": true, "seq": i}));
    }
    drop(ws);
    // The same room name in `/` is another room.
    push(&s, "r", json!("main")).await;
    s.shutdown().await;

    let s = server(&db).await;
    let mut ws = sio(&s, "/chat").await;
    let mut replayed = Vec::new();
    let ack = sio_call(
        &mut ws,
        "/chat",
        1,
        json!(["join", {"room": "r", "since": 1}]),
        &mut replayed,
    )
    .await;
    assert_eq!(ack["seq"], 3, "{ack}");
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    for (m, i) in replayed.iter().zip(2..) {
        assert_eq!(m[0], "said");
        assert_eq!(m[1], json!({"i": i}));
        assert_eq!(m[2]["seq"], i);
        assert_eq!(m[2]["room"], "r");
    }
    let (_, main) = s.get("/api/rooms/r/history").await;
    assert_eq!(main["messages"].as_array().unwrap().len(), 1);
}
