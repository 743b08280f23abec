//! Abuse limits and the single-session policy over real sockets: a connection over its
//! message rate gets `rate_limited` and, if it keeps going, close 4429 (v1 and Socket.IO);
//! an address over its handshake rate or its connection cap gets HTTP 429 before the
//! upgrade; with
//! `single_session` on, a user's new connection closes the older ones with 4409.

mod common;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;

#[tokio::test]
async fn a_flood_is_refused_then_closed_with_4429() {
    let s = TestServer::with(&[("rate_messages", "5")]).await;
    let mut c = s.client("/ws").await;
    // The burst (two seconds' worth) passes.
    for _ in 0..10 {
        c.send(json!({"op": "ping"})).await;
    }
    for _ in 0..10 {
        assert_eq!(c.recv().await["op"], "pong");
    }
    c.send(json!({"op": "ping"})).await;
    let refused = c.recv().await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    // Going on regardless ends the connection.
    for _ in 0..40 {
        c.send(json!({"op": "ping"})).await;
    }
    let (code, reason) = c.expect_close().await;
    assert_eq!((code, reason.as_str()), (4429, "rate limit exceeded"));
    // Others are unaffected.
    let mut other = s.client("/ws").await;
    assert_eq!(other.request(json!({"op": "ping"})).await["op"], "pong");
}

#[tokio::test]
async fn a_byte_flood_is_refused() {
    let s = TestServer::with(&[("rate_bytes", "1000"), ("rate_messages", "0")]).await;
    let mut c = s.client("/ws").await;
    let big = json!({"op": "ping", "pad": "x".repeat(1500)});
    c.send(big.clone()).await;
    assert_eq!(c.recv().await["op"], "pong");
    c.send(big).await;
    assert_eq!(c.recv().await["code"], "rate_limited");
}

#[tokio::test]
async fn a_socketio_flood_gets_an_error_event_then_4429() {
    let s = TestServer::with(&[("rate_messages", "5")]).await;
    let url = s.ws_url("/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.next().await.unwrap().unwrap();
    ws.send(WsMessage::text("40")).await.unwrap();
    let mut saw_error = false;
    let mut closed = None;
    // The CONNECT counted as one message; keep sending events until the server gives up.
    for _ in 0..60 {
        if ws.send(WsMessage::text(r#"42["noise",1]"#)).await.is_err() {
            break;
        }
    }
    while let Some(Ok(m)) = ws.next().await {
        match m {
            WsMessage::Text(t) if t.contains("rate_limited") => saw_error = true,
            WsMessage::Close(Some(f)) => {
                closed = Some(u16::from(f.code));
                break;
            }
            _ => {}
        }
    }
    assert!(saw_error, "the client was told why its events were dropped");
    assert_eq!(closed, Some(4429));
}

#[tokio::test]
async fn an_address_over_its_handshake_rate_gets_429() {
    let s = TestServer::with(&[("rate_handshakes_per_ip", "1")]).await;
    let _a = s.client("/ws").await;
    let _b = s.client("/ws").await;
    let err = tokio_tungstenite::connect_async(s.ws_url("/ws"))
        .await
        .expect_err("the third handshake in a second is refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body: serde_json::Value =
                serde_json::from_slice(&resp.body().clone().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
        e => panic!("expected HTTP 429, got {e}"),
    }
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hubbub_upgrades_rejected_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
    // A second later the bucket has refilled.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let _c = s.client("/ws").await;
}

/// A WebSocket handshake to `path` from the local address `from`: the client, or the
/// refusal's status and error code.
async fn connect_from(
    s: &TestServer,
    from: &str,
    path: &str,
) -> Result<common::Client, (u16, String)> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(s.addr).await.unwrap();
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    match tokio_tungstenite::client_async(s.ws_url(path), tcp).await {
        Ok((ws, _)) => Ok(common::Client::from_ws(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: serde_json::Value =
                serde_json::from_slice(&resp.body().clone().unwrap_or_default()).unwrap();
            let code = body["error"]["code"].as_str().unwrap_or_default();
            Err((resp.status().as_u16(), code.to_string()))
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn an_address_over_its_connection_cap_gets_429_until_one_closes() {
    let s = TestServer::with(&[("max_connections_per_ip", "3")]).await;
    let mut first = connect_from(&s, "127.0.0.1", "/ws").await.unwrap();
    let _echo = connect_from(&s, "127.0.0.1", "/ws/echo").await.unwrap();
    // A Socket.IO session counts from its handshake, polling included.
    let http = reqwest::Client::new();
    let handshake = || {
        http.get(s.url("/socket.io/?EIO=4&transport=polling"))
            .send()
    };
    assert_eq!(handshake().await.unwrap().status(), 200);
    let refusal = connect_from(&s, "127.0.0.1", "/ws").await.err();
    assert_eq!(refusal, Some((429, "rate_limited".to_string())));
    let refused = handshake().await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "this address already has 3 connections open"
    );
    // Another address has its own count.
    let _other = connect_from(&s, "127.0.0.2", "/ws").await.unwrap();
    // Closing one frees its place.
    first.ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match connect_from(&s, "127.0.0.1", "/ws").await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "still {e:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let metrics = http.get(s.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("hubbub_upgrades_rejected_total{reason=\"rate_limited\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn single_session_closes_the_older_connections_with_4409() {
    let s = TestServer::with(&[("single_session", "on")]).await;
    let mut first = s.user("ann").await;
    let mut bob = s.user("bob").await;
    let mut second = s.user("ann").await;
    let (code, reason) = first.expect_close().await;
    assert_eq!(
        (code, reason.as_str()),
        (4409, "replaced by a newer session")
    );
    // The newer connection and other users stay.
    assert_eq!(second.request(json!({"op": "ping"})).await["op"], "pong");
    assert_eq!(bob.request(json!({"op": "ping"})).await["op"], "pong");
    // Off by default: two connections of one user coexist.
    let s = TestServer::start().await;
    let mut a = s.user("ann").await;
    let _b = s.user("ann").await;
    assert_eq!(a.request(json!({"op": "ping"})).await["op"], "pong");
}
