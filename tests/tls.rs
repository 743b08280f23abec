//! TLS served by Hubbub itself (`tls_cert`, `tls_key`): https and wss with a real rustls
//! client that trusts the test certificate; a plain-text client is refused; the TLS
//! handshake has the same time limit as the request headers.

mod common;

use std::time::Duration;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

async fn tls_server() -> TestServer {
    let (cert, key) = (
        format!("{FIXTURES}/tls-cert.pem"),
        format!("{FIXTURES}/tls-key.pem"),
    );
    TestServer::with(&[
        ("tls_cert", cert.as_str()),
        ("tls_key", key.as_str()),
        ("handshake_timeout", "1s"),
    ])
    .await
}

fn addr(s: &TestServer) -> String {
    s.url("").trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn https_and_wss_are_served_with_the_configured_certificate() {
    let s = tls_server().await;
    let health = common::https_get(&addr(&s), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("ok"), "{health}");
    let mut ws = common::wss_client(&addr(&s), "/ws/alice").await;
    let welcome: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(welcome["user"], "alice");
    let unread: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(unread["op"], "unread");
    ws.send(WsMessage::text(r#"{"op":"ping","id":1}"#))
        .await
        .unwrap();
    let pong: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(pong["op"], "pong");
    // Socket.IO over wss too.
    let mut sio = common::wss_client(&addr(&s), "/socket.io/?EIO=4&transport=websocket").await;
    assert!(sio
        .next()
        .await
        .unwrap()
        .unwrap()
        .to_text()
        .unwrap()
        .starts_with('0'));
}

#[tokio::test]
async fn plain_text_and_stalled_tls_clients_get_nothing() {
    let s = tls_server().await;
    // Plain HTTP to a TLS port is not answered as HTTP.
    let (status, _) = {
        let r = reqwest::get(s.url("/healthz")).await;
        (r.map(|r| r.status().as_u16()).ok(), ())
    };
    assert_eq!(
        status, None,
        "plain HTTP must not be served on the TLS port"
    );
    // A client that opens TCP and never starts the TLS handshake is dropped.
    let started = std::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("dropped before the test's limit")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn tls_settings_must_come_in_pairs_and_load() {
    let cert = format!("{FIXTURES}/tls-cert.pem");
    let values = [("tls_cert".to_string(), cert.clone())]
        .into_iter()
        .collect();
    let err = hubbub::Config::from_values(&values)
        .unwrap_err()
        .to_string();
    assert!(err.contains("go together"), "{err}");
    // A key file that is not a key fails at start, not at the first client.
    let c = common::config(&[("tls_cert", &cert), ("tls_key", &cert)]);
    let hubbub = hubbub::Hubbub::new(c);
    let listener = hubbub::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let app = hubbub.router();
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        hubbub.serve(listener, app, std::future::pending()),
    )
    .await
    .expect("serve returns at once");
    assert!(res.is_err());
}
