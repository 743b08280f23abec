//! Round trips through a real server on loopback: a client sends a message addressed to its
//! own user and waits for the delivery, over Socket.IO (the mapped `send` event), over v1
//! (`send`) and over the raw echo endpoint. The server runs in-process on a runtime of its
//! own, so the allocations its threads make can be counted: before the timings, each
//! scenario prints how many heap allocations the server made per round trip (receiving,
//! parsing, the hub's delivery, encoding and writing), the figure the hot path is held to.
//!
//! Run with `cargo bench --bench roundtrip`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use densa_alloc::{thread_stats, CountingAllocator};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A client of the in-process server, driven from the bench thread.
struct Client {
    rt: tokio::runtime::Runtime,
    ws: Ws,
    frame: String,
}

impl Client {
    fn round_trip(&mut self) {
        let Self { rt, ws, frame } = self;
        rt.block_on(async {
            ws.send(Message::text(frame.as_str())).await.unwrap();
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.contains("\"t\":1") => break,
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                        ws.send(Message::text("3")).await.unwrap();
                    }
                    Some(Ok(_)) => {}
                    other => panic!("connection ended: {other:?}"),
                }
            }
        });
    }

    /// Allocations the server made per round trip, over `n` round trips.
    fn server_allocs(&mut self, n: u64) -> f64 {
        for _ in 0..200 {
            self.round_trip();
        }
        let before = server().allocs();
        for _ in 0..n {
            self.round_trip();
        }
        server().allocs().since(before).allocs as f64 / n as f64
    }
}

/// The in-process server: every task of it runs on one thread (a current-thread runtime),
/// whose allocation counters are the server's.
struct Server {
    addr: SocketAddr,
    rt: tokio::runtime::Handle,
}

impl Server {
    /// The server thread's allocation counters, read on that thread.
    fn allocs(&self) -> densa_alloc::AllocStats {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt
            .spawn(async move { tx.send(thread_stats()).unwrap() });
        rx.recv().unwrap()
    }
}

/// The server, started once for every bench.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let mut m = std::collections::BTreeMap::new();
                m.insert("store".to_string(), "memory".to_string());
                // One connection makes tens of thousands of round trips a second here: the
                // per-connection rate limits stay on (their cost is part of the path), high.
                m.insert("rate_messages".to_string(), "100000000".to_string());
                m.insert("rate_bytes".to_string(), "100GiB".to_string());
                let hubbub = hubbub::Hubbub::new(hubbub::Config::from_values(&m).unwrap());
                let listener = hubbub::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                tx.send(Server {
                    addr: listener.local_addr().unwrap(),
                    rt: handle,
                })
                .unwrap();
                let app = hubbub.router();
                hubbub
                    .serve(listener, app, std::future::pending())
                    .await
                    .unwrap();
            });
        });
        rx.recv().unwrap()
    })
}

fn connect(path: &str, greet: impl FnOnce(&tokio::runtime::Runtime, &mut Ws) -> String) -> Client {
    let addr = server().addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ws = rt
        .block_on(tokio_tungstenite::connect_async(format!(
            "ws://{addr}{path}"
        )))
        .unwrap()
        .0;
    let frame = greet(&rt, &mut ws);
    Client { rt, ws, frame }
}

fn next_text(rt: &tokio::runtime::Runtime, ws: &mut Ws) -> String {
    rt.block_on(async {
        loop {
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                return t.to_string();
            }
        }
    })
}

/// The value of `"key":"…"` in `text`.
fn string_field(text: &str, key: &str) -> String {
    let at = text.find(&format!("\"{key}\":\"")).expect("field") + key.len() + 4;
    text[at..].split('"').next().unwrap().to_string()
}

const DATA: &str = r#"{"t":1,"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

fn sio_client() -> Client {
    connect("/socket.io/?EIO=4&transport=websocket", |rt, ws| {
        assert!(next_text(rt, ws).starts_with('0'));
        rt.block_on(ws.send(Message::text("40"))).unwrap();
        let sid = string_field(&next_text(rt, ws), "sid");
        format!(r#"42["send",{{"to":"anon-{sid}","event":"e","data":{DATA}}}]"#)
    })
}

fn v1_client() -> Client {
    connect("/ws", |rt, ws| {
        let user = string_field(&next_text(rt, ws), "user");
        format!(r#"{{"op":"send","to":"{user}","event":"e","data":{DATA}}}"#)
    })
}

fn echo_client() -> Client {
    connect("/ws/echo", |_, _| DATA.to_string())
}

fn main() {
    // `ROUNDTRIP_ALLOCS=N` counts over N round trips and stops there (for a heap profiler).
    let only = std::env::var("ROUNDTRIP_ALLOCS")
        .ok()
        .and_then(|n| n.parse().ok());
    for (name, mut c) in [
        ("socket.io send", sio_client()),
        ("v1 send", v1_client()),
        ("/ws/echo", echo_client()),
    ] {
        println!(
            "server allocations per round trip, {name}: {:.2}",
            c.server_allocs(only.unwrap_or(20_000))
        );
    }
    if only.is_none() {
        divan::main();
    }
}

#[divan::bench(sample_count = 20, sample_size = 200)]
fn socketio_send(b: divan::Bencher) {
    let mut c = sio_client();
    b.bench_local(|| c.round_trip());
}

#[divan::bench(sample_count = 20, sample_size = 200)]
fn v1_send(b: divan::Bencher) {
    let mut c = v1_client();
    b.bench_local(|| c.round_trip());
}

#[divan::bench(sample_count = 20, sample_size = 200)]
fn ws_echo(b: divan::Bencher) {
    let mut c = echo_client();
    b.bench_local(|| c.round_trip());
}
