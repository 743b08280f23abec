//! deploy/nginx.conf against a real nginx (Debian's package): nginx terminates TLS and
//! proxies to Hubbub, and a wss client gets through it (v1 and Socket.IO), with the same
//! origin rules as a direct connection.
//!
//! Needs `nginx` on the PATH (or /usr/sbin). `scripts/test` installs it and sets
//! `HUBBUB_REQUIRE_ALL=1`, under which a missing nginx fails the test; elsewhere the test
//! says it is skipping.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn nginx_binary() -> Option<String> {
    ["nginx", "/usr/sbin/nginx"].iter().find_map(|b| {
        Command::new(b)
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .ok()
            .map(|_| b.to_string())
    })
}

struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_nginx(bin: &str, upstream: u16) -> (Nginx, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = std::fs::read_to_string(format!("{ROOT}/deploy/nginx.conf"))
        .unwrap()
        .replace("@DIR@", dir.path().to_str().unwrap())
        .replace("@PORT@", &port.to_string())
        .replace("@UPSTREAM_PORT@", &upstream.to_string())
        .replace("@CERT@", &format!("{ROOT}/tests/fixtures/tls-cert.pem"))
        .replace("@KEY@", &format!("{ROOT}/tests/fixtures/tls-key.pem"));
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(bin)
        .args([
            "-c",
            path.to_str().unwrap(),
            "-p",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let addr = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Nginx { child, _dir: dir }, addr)
}

#[tokio::test]
async fn wss_through_nginx_reaches_hubbub() {
    let Some(bin) = nginx_binary() else {
        assert!(
            std::env::var_os("HUBBUB_REQUIRE_ALL").is_none(),
            "nginx is required (apt-get install nginx)"
        );
        eprintln!("skipping: nginx is not installed");
        return;
    };
    let s = TestServer::start().await;
    let upstream: u16 = s.url("").rsplit(':').next().unwrap().parse().unwrap();
    let (_nginx, addr) = start_nginx(&bin, upstream).await;

    let health = common::https_get(&addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let mut ws = common::wss_client(&addr, "/ws/zoe").await;
    let welcome: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(welcome["user"], "zoe");
    let unread: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(unread, serde_json::json!({"op": "unread", "count": 0}));
    ws.send(WsMessage::text(r#"{"op":"join","room":"r","id":1}"#))
        .await
        .unwrap();
    let ack: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(ack["op"], "ack");
    // A push from the back end reaches the client through the proxy.
    let (status, _) = s
        .post(
            "/api/push",
            serde_json::json!({"to": "zoe", "event": "hello", "data": 1}),
        )
        .await;
    assert_eq!(status, 200);
    let msg: Value =
        serde_json::from_str(ws.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(msg["event"], "hello");

    let mut sio = common::wss_client(&addr, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(sio
        .next()
        .await
        .unwrap()
        .unwrap()
        .to_text()
        .unwrap()
        .starts_with('0'));
    sio.send(WsMessage::text("40")).await.unwrap();
    assert!(sio
        .next()
        .await
        .unwrap()
        .unwrap()
        .to_text()
        .unwrap()
        .starts_with("40"));
}
