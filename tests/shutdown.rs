//! Graceful shutdown: queued messages are flushed, every client gets 1001, new upgrades
//! are refused, and the server returns (the binary exits 0) within a bounded time.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Client, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_then_closes_every_client_with_1001() {
    let s = TestServer::start().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = s.user(&format!("u{i}")).await;
        c.join("room").await;
        clients.push(c);
    }
    for i in 0..100 {
        s.hub().to_room("room").emit("e", json!(i)).unwrap();
    }
    let url = s.ws_url("/ws");
    let took = s.shutdown().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    for c in &mut clients {
        let mut got = 0;
        loop {
            let m = c.recv().await;
            if m["op"] == "message" {
                assert_eq!(m["data"], got);
                got += 1;
                if got == 100 {
                    break;
                }
            }
        }
        let (code, _) = c.expect_close().await;
        assert_eq!(code, 1001);
    }
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_0_on_sigterm_after_closing_clients() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubbub"))
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--stats-log-interval",
            "1s",
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log.iter().any(|l: &String| l.contains("listening")) {
        assert!(
            std::time::Instant::now() < deadline,
            "server did not start: {log:?}"
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(l);
        }
    }
    assert!(
        log.iter().any(|l| l.contains("open-files limit")),
        "the effective connection ceiling is logged: {log:?}"
    );
    let mut c = Client::connect(&format!("ws://127.0.0.1:{port}/ws/zed")).await;
    assert_eq!(c.recv().await["op"], "welcome");
    // The stats line names users and their connection counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log.iter().any(|l| l.contains("zed=1")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no stats line: {log:?}"
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(l);
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _) = c.expect_close().await;
    assert_eq!(code, 1001);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
}
