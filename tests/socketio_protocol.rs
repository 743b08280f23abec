//! Engine.IO and Socket.IO over real HTTP long-polling and WebSocket: the handshake, the
//! reference server's errors, and malformed input (which closes the session, never panics).

mod common;

use std::time::Duration;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use hubbub::sio::{SioConfig, SocketIo};
use hubbub::Hubbub;
use serde_json::{json, Value};

/// A server whose Socket.IO has only `/` (with an echo), at /sio, maxPayload 1000.
async fn server() -> TestServer {
    let hubbub = Hubbub::new(common::config(&[]));
    let io = SocketIo::new(
        hubbub.hub().clone(),
        SioConfig::default()
            .with_path("/sio")
            .with_max_payload(1000)
            .with_connect_timeout(Duration::from_secs(5)),
    );
    io.ns("/", |s| {
        s.on("echo", |s, args, ack| match ack {
            Some(ack) => ack.send(args),
            None => s.emit_args("echo", args),
        });
    });
    let app = io.routes().merge(hubbub.api_routes());
    TestServer::serve(hubbub, app).await
}

async fn get(s: &TestServer, q: &str) -> (u16, String) {
    let r = reqwest::get(s.url(&format!("/sio/?{q}"))).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post(s: &TestServer, q: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(s.url(&format!("/sio/?{q}")))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn handshake(s: &TestServer) -> String {
    let (st, body) = get(s, "EIO=4&transport=polling").await;
    assert_eq!(st, 200);
    assert!(body.starts_with('0'), "{body}");
    let v: Value = serde_json::from_str(&body[1..]).unwrap();
    assert_eq!(v["upgrades"], json!(["websocket"]));
    assert_eq!(v["maxPayload"], 1000);
    v["sid"].as_str().unwrap().to_string()
}

fn code(body: &str) -> i64 {
    serde_json::from_str::<Value>(body).unwrap()["code"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn handshake_errors_use_the_reference_codes() {
    let s = server().await;
    let (st, b) = get(&s, "transport=polling").await;
    assert_eq!((st, code(&b)), (400, 5));
    let (st, b) = get(&s, "EIO=3&transport=polling").await;
    assert_eq!((st, code(&b)), (400, 5));
    let (st, b) = get(&s, "EIO=4&transport=carrier-pigeon").await;
    assert_eq!((st, code(&b)), (400, 0));
    let (st, b) = post(&s, "EIO=4&transport=polling", "").await;
    assert_eq!((st, code(&b)), (400, 2));
    let (st, b) = get(&s, "EIO=4&transport=polling&sid=nope").await;
    assert_eq!((st, code(&b)), (400, 1));
    let (st, b) = post(&s, "EIO=4&transport=polling&sid=nope", "4x").await;
    assert_eq!((st, code(&b)), (400, 1));
}

#[tokio::test]
async fn a_polling_session_connects_emits_and_acks() {
    let s = server().await;
    let sid = handshake(&s).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    assert_eq!(post(&s, &q, "40").await, (200, "ok".into()));
    let (_, body) = get(&s, &q).await;
    assert!(body.starts_with("40{\"sid\":"), "{body}");
    assert_eq!(
        post(&s, &q, "42[\"echo\",{\"a\":1}]\u{1e}4212[\"echo\",2]")
            .await
            .0,
        200
    );
    let (_, body) = get(&s, &q).await;
    assert_eq!(body, "42[\"echo\",{\"a\":1}]\u{1e}4312[2]");
    // Binary over polling: a placeholder packet and a base64 attachment.
    let payload = "451-[\"echo\",{\"f\":{\"_placeholder\":true,\"num\":0}}]\u{1e}bAQID";
    assert_eq!(post(&s, &q, payload).await.0, 200);
    let (_, body) = get(&s, &q).await;
    assert_eq!(body, payload);
}

#[tokio::test]
async fn two_concurrent_gets_close_the_session() {
    let s = server().await;
    let sid = handshake(&s).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let first = tokio::spawn({
        let url = s.url(&format!("/sio/?{q}"));
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (st, _) = get(&s, &q).await;
    assert_eq!(st, 400);
    assert_eq!(first.await.unwrap(), (200, "1".to_string()));
    assert_eq!(get(&s, &q).await.0, 400, "the session is gone");
}

#[tokio::test]
async fn malformed_packets_close_the_session() {
    let s = server().await;
    for bad in [
        "abc",          // not an Engine.IO packet
        "4abc",         // bad Socket.IO packet type
        "42{not json",  // bad JSON
        "40\u{1e}42{}", // an event that is not an array
        "40\u{1e}451-[\"echo\",{\"_placeholder\":true,\"num\":3}]\u{1e}bAQID", // attachment count mismatch
        "40\u{1e}bAQID", // binary without a binary packet
        "42[\"echo\"]",  // an event before CONNECT
    ] {
        let sid = handshake(&s).await;
        let q = format!("EIO=4&transport=polling&sid={sid}");
        let (st, _) = post(&s, &q, bad.to_string()).await;
        assert!(st == 200 || st == 400, "{bad:?}: {st}");
        let (st, body) = get(&s, &q).await;
        assert_eq!(st, 400, "{bad:?} left the session open ({body})");
    }
    // The server is fine, and counted nothing left open.
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.hub().connection_count(), 0);
}

#[tokio::test]
async fn an_oversize_post_is_413_and_closes() {
    let s = server().await;
    let sid = handshake(&s).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    let (st, _) = post(&s, &q, format!("4{}", "x".repeat(2000))).await;
    assert_eq!(st, 413);
    assert_eq!(get(&s, &q).await.0, 400);
}

#[tokio::test]
async fn unknown_namespace_gets_connect_error() {
    let s = server().await;
    let sid = handshake(&s).await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    post(&s, &q, "40/nowhere,").await;
    let (_, body) = get(&s, &q).await;
    assert_eq!(body, r#"44/nowhere,{"message":"Invalid namespace"}"#);
}

#[tokio::test]
async fn websocket_sessions_refuse_polling_and_speak_one_packet_per_frame() {
    let s = server().await;
    let mut ws = common::Client::connect(&s.ws_url("/sio/?EIO=4&transport=websocket")).await;
    let open = match ws.ws.next().await.unwrap().unwrap() {
        WsMessage::Text(t) => t.to_string(),
        other => panic!("{other:?}"),
    };
    let v: Value = serde_json::from_str(&open[1..]).unwrap();
    assert_eq!(v["upgrades"], json!([]));
    let sid = v["sid"].as_str().unwrap();
    // A POST on a WebSocket-only session is a bad request.
    let (st, b) = post(&s, &format!("EIO=4&transport=polling&sid={sid}"), "40").await;
    assert_eq!((st, code(&b)), (400, 3));
    ws.ws.send(WsMessage::text("40")).await.unwrap();
    let m = ws.ws.next().await.unwrap().unwrap();
    assert!(m.to_text().unwrap().starts_with("40{\"sid\""));
    let m = ws.ws.next().await.unwrap().unwrap();
    assert_eq!(m.to_text().unwrap(), r#"42["unread",{"count":0}]"#);
    ws.ws
        .send(WsMessage::text("42[\"echo\",\"hi\"]"))
        .await
        .unwrap();
    let m = ws.ws.next().await.unwrap().unwrap();
    assert_eq!(m.to_text().unwrap(), "42[\"echo\",\"hi\"]");
    // Malformed: the server closes.
    ws.ws.send(WsMessage::text("4abc")).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.ws.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_session_that_never_connects_is_closed_after_connect_timeout() {
    let hubbub = Hubbub::new(common::config(&[]));
    let io = SocketIo::new(
        hubbub.hub().clone(),
        SioConfig::default().with_connect_timeout(Duration::from_millis(200)),
    );
    io.ns("/", |_| {});
    let s = TestServer::serve(hubbub, io.routes()).await;
    let (_, body) = reqwest::get(s.url("/socket.io/?EIO=4&transport=polling"))
        .await
        .unwrap()
        .text()
        .await
        .map(|b| (200, b))
        .unwrap();
    let sid = serde_json::from_str::<Value>(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = reqwest::get(s.url(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}")))
        .await
        .unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(st == 400 || text == "1", "{st} {text}");
    assert_eq!(io.session_count(), 0);
}

#[tokio::test]
async fn the_allow_request_hook_refuses_handshakes_with_403() {
    let hubbub = Hubbub::new(common::config(&[]));
    let io = SocketIo::new(
        hubbub.hub().clone(),
        SioConfig::default().with_allow_request(|parts| match parts.headers.get("x-let-me-in") {
            Some(_) => Ok(()),
            None => Err("no pass".into()),
        }),
    );
    io.ns("/", |_| {});
    let s = TestServer::serve(hubbub, io.routes()).await;
    let r = reqwest::get(s.url("/socket.io/?EIO=4&transport=polling"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"code": 4, "message": "Forbidden"}));
    let err = tokio_tungstenite::connect_async(s.ws_url("/socket.io/?EIO=4&transport=websocket"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status().as_u16() == 403),
        "{err:?}"
    );
    let r = reqwest::Client::new()
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .header("x-let-me-in", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_websocket_frame_over_max_payload_closes_with_1009() {
    let s = server().await; // maxPayload 1000
    let mut ws = common::Client::connect(&s.ws_url("/sio/?EIO=4&transport=websocket")).await;
    let _open = ws.ws.next().await.unwrap().unwrap();
    ws.ws.send(WsMessage::text("40")).await.unwrap();
    let _connect = ws.ws.next().await.unwrap().unwrap();
    let big = format!(r#"42["echo","{}"]"#, "x".repeat(1100));
    ws.ws.send(WsMessage::text(big)).await.unwrap();
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.ws.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1009));
    s.wait_connections(0).await;
}
