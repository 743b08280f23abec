//! Test harness: a real Hubbub server on a loopback port, real WebSocket clients
//! (tokio-tungstenite, an implementation independent of the server's), and an HTTP client.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod cluster;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hubbub::{Config, Hubbub};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{self, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Builds a config from `name = value` pairs over the defaults, with history in memory
/// unless the pairs name a store (tests that check durability give a `db` of their own).
pub fn config(pairs: &[(&str, &str)]) -> Config {
    let mut m = BTreeMap::new();
    m.insert("store".to_string(), "memory".to_string());
    for (k, v) in pairs {
        m.insert(k.to_string(), v.to_string());
    }
    Config::from_values(&m).expect("valid test config")
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub hubbub: Hubbub,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(pairs: &[(&str, &str)]) -> Self {
        Self::from_hubbub(Hubbub::new(config(pairs))).await
    }

    pub async fn from_hubbub(hubbub: Hubbub) -> Self {
        let app = hubbub.router();
        Self::serve(hubbub, app).await
    }

    pub async fn serve(hubbub: Hubbub, app: axum::Router) -> Self {
        let listener = hubbub::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h = hubbub.clone();
        let task = tokio::spawn(async move {
            h.serve(listener, app, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            addr,
            hubbub,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn hub(&self) -> &hubbub::Hub {
        self.hubbub.hub()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Connects to a v1 endpoint and reads the welcome and the unread count that follows it.
    pub async fn client(&self, path: &str) -> Client {
        let mut c = Client::connect(&self.ws_url(path)).await;
        let welcome = c.recv().await;
        assert_eq!(welcome["op"], "welcome", "first frame is the welcome");
        c.welcome = welcome;
        c.next_unread().await;
        c
    }

    /// Connects a client for `user` on `/ws/{user}`.
    pub async fn user(&self, user: &str) -> Client {
        self.client(&format!("/ws/{user}")).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(self.url(path)).await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body.to_string()))
            .await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, self.url(path));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Waits until the hub has `n` connections (connections register asynchronously).
    pub async fn wait_connections(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.hub().connection_count() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} connections, have {}",
                self.hub().connection_count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Shuts down gracefully and returns how long it took.
    pub async fn shutdown(mut self) -> Duration {
        let start = std::time::Instant::now();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("shutdown finishes")
                .unwrap()
                .unwrap();
        }
        start.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
    /// The latest unread count the server sent (`unread` frames are set aside by `recv`).
    pub unread: u64,
    /// Unread counts received and not yet taken with `next_unread`.
    unreads: std::collections::VecDeque<u64>,
    next_id: u64,
    /// Frames read while waiting for something else.
    pub backlog: std::collections::VecDeque<Value>,
}

impl Client {
    /// Rebuilds a client around a stream taken out of one.
    pub fn from_ws(ws: Ws) -> Self {
        Self {
            ws,
            welcome: Value::Null,
            unread: 0,
            unreads: Default::default(),
            next_id: 1_000_000,
            backlog: Default::default(),
        }
    }

    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Self {
            ws,
            welcome: Value::Null,
            unread: 0,
            unreads: Default::default(),
            next_id: 1,
            backlog: Default::default(),
        }
    }

    pub fn conn_id(&self) -> String {
        self.welcome["conn"].as_str().unwrap().to_string()
    }

    pub fn user(&self) -> String {
        self.welcome["user"].as_str().unwrap().to_string()
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Next JSON frame (from the backlog first), failing after `WAIT`. `unread` frames are
    /// set aside for `next_unread`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let v = match self.backlog.pop_front() {
                Some(v) => v,
                None => self.recv_wire().await,
            };
            if v["op"] != "unread" {
                return v;
            }
        }
    }

    async fn recv_wire(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the connection is open")
                .expect("a valid frame");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    if v["op"] == "unread" {
                        self.unread = v["count"].as_u64().expect("an unread count");
                        self.unreads.push_back(self.unread);
                    }
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next `unread` count the server sends (after the welcome, and whenever it
    /// changes); frames read meanwhile go to the backlog.
    pub async fn next_unread(&mut self) -> u64 {
        loop {
            if let Some(n) = self.unreads.pop_front() {
                return n;
            }
            let m = self.recv_wire().await;
            if m["op"] != "unread" {
                self.backlog.push_back(m);
            }
        }
    }

    /// Sends a request with a fresh id and returns the reply with that id; other frames
    /// that arrive meanwhile go to the backlog.
    pub async fn request(&mut self, mut v: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        v["id"] = json!(id);
        self.send(v).await;
        loop {
            let m = self.recv_wire().await;
            if m["id"] == json!(id) && m["op"] != "message" {
                return m;
            }
            if m["op"] != "unread" {
                self.backlog.push_back(m);
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> Value {
        let ack = self.request(json!({"op": "join", "room": room})).await;
        assert_eq!(ack["op"], "ack", "join ack: {ack}");
        ack
    }

    /// The next frame whose `op` is `op`, skipping (and dropping) presence and notification
    /// frames.
    pub async fn recv_op(&mut self, op: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["op"] == op {
                return m;
            }
            assert!(
                m["op"] == "presence" || m["op"] == "notification",
                "expected {op}, got {m}"
            );
        }
    }

    /// The first `message` waiting in the backlog (what came before a request's answer,
    /// such as a join's replay), presence and notifications before it dropped.
    pub fn backlog_message(&mut self) -> Option<Value> {
        while let Some(m) = self.backlog.pop_front() {
            if m["op"] == "message" {
                return Some(m);
            }
        }
        None
    }

    /// The next `message`, skipping presence.
    pub async fn recv_message(&mut self) -> Value {
        self.recv_op("message").await
    }

    /// Asserts nothing but pings/presence arrives for `d`.
    pub async fn expect_no_message(&mut self, d: Duration) {
        if let Some(m) = self.backlog.iter().find(|m| m["op"] == "message") {
            panic!("unexpected message {m}");
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_ne!(v["op"], "message", "unexpected message {v}");
                }
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Reads until the close frame and returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close within the wait");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("error instead of a close frame: {e}"),
                None => panic!("stream ended without a close frame"),
            }
        }
    }

    /// Reads until the connection ends without a close frame (terminated).
    pub async fn expect_dropped(&mut self) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("the connection ends within the wait");
            match msg {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(f))) => panic!("expected a drop, got a close frame {f:?}"),
                Some(Ok(_)) => continue,
            }
        }
    }
}

pub fn close_code(c: CloseCode) -> u16 {
    u16::from(c)
}

pub use tungstenite::Message as WsMessage;

/// A TLS client that trusts only the test CA (tests/fixtures/tls-ca.pem).
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let cert = rustls_pki_types::CertificateDer::from_pem_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls-ca.pem"
    ))
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Opens a TLS connection to `addr` for server name `localhost`.
pub async fn tls_stream(
    addr: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tls_connector().connect(name, tcp).await
}

/// A WebSocket over TLS to `addr` (v1, or Socket.IO with its path), then the handshake for
/// `path`.
pub async fn wss_client(
    addr: &str,
    path: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tls = tls_stream(addr).await.expect("TLS handshake");
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://localhost{path}"), tls)
        .await
        .expect("WebSocket handshake over TLS");
    ws
}

/// An HTTP/1.1 GET over TLS; returns the whole response as text.
pub async fn https_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_stream(addr).await.expect("TLS handshake");
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The `hubbub` binary running as a child process on a free loopback port, its output
/// (stdout and stderr) collected line by line. Dropping it kills the process.
pub struct Process {
    pub child: std::process::Child,
    pub port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts the binary with `args` (plus `--bind`) in `dir` and waits until it answers
    /// `/healthz`.
    pub async fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        Self::start_cmd(dir, &[env!("CARGO_BIN_EXE_hubbub")], args).await
    }

    /// Like [`Self::start`], with `cmd` as the program and its first arguments (a copy of
    /// the binary run through `setpriv`, say).
    pub async fn start_cmd(dir: &std::path::Path, cmd: &[&str], args: &[&str]) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let bind = format!("127.0.0.1:{port}");
        let mut argv: Vec<&str> = cmd.to_vec();
        argv.extend(["--bind", &bind]);
        argv.extend(args);
        let mut child = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let p = Self { child, port, log };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(p.url("/healthz")).await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hubbub did not start: {:?}",
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a line of output contains `needle`.
    pub async fn wait_log(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(needle)) {
                return l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no `{needle}` in the log: {:?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A v1 client on `path`, past its welcome and unread count.
    pub async fn client(&self, path: &str) -> Client {
        let mut c = Client::connect(&self.ws_url(path)).await;
        c.welcome = c.recv().await;
        assert_eq!(c.welcome["op"], "welcome");
        c.next_unread().await;
        c
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(self.url(path)).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Ends the process with SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Ends the process with SIGTERM and waits for its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
