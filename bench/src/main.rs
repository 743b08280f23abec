//! `hubbub-bench`: a load generator for Hubbub (protocol v1) and for peers that broadcast
//! every message to every client (`--proto raw`, e.g. a Node `ws` server).
//!
//! Scenarios:
//! - `idle`: open N connections, let them settle, report the server's RSS per connection
//!   (from `/proc/PID/status`, before and after).
//! - `fanout`: N subscribers and one publisher; the publisher keeps a window of messages in
//!   flight (maximal rate) or sends at a fixed rate; each message carries its send time, so
//!   every subscriber measures latency. Reports deliveries per second, latency percentiles,
//!   losses, and the CPU used by the generator and by the server.
//!
//! The generator runs on one thread (pin it with `taskset`) and reads whole buffers of
//! frames per wake-up; its own CPU share is printed next to every figure, since a figure
//! taken with the generator near 100 % is a lower bound.

mod stats;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use futures_util::SinkExt;
use yawc::{Frame, OpCode, Options, WebSocket};

use stats::{cpu_seconds, rss_kib, Histogram};

#[derive(Parser, Debug)]
#[command(
    name = "hubbub-bench",
    about = "Load generator for Hubbub and its peers"
)]
struct Args {
    /// WebSocket URL of the server (for v1, the `/ws` endpoint).
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// Wire protocol: `v1` (Hubbub rooms) or `raw` (the server broadcasts what it receives).
    #[arg(long, value_enum, default_value = "v1")]
    proto: Proto,
    /// The server's process id, for RSS and CPU figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    /// Hubbub protocol v1 on `/ws`.
    V1,
    /// A server that broadcasts whatever it receives (Node `ws`).
    Raw,
    /// Socket.IO over WebSocket: events `join` {room} and `publish` {room, event, data}.
    Sio,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Hold N idle connections and report the server's memory per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Time to let the server settle before reading its RSS.
        #[arg(long, default_value = "3")]
        settle_secs: u64,
    },
    /// N subscribers receive everything one publisher sends.
    Fanout {
        #[arg(long, default_value_t = 1_000)]
        subs: usize,
        /// Messages per second; 0 publishes as fast as the window allows.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Messages in flight at maximal rate (sent but not yet seen back by the publisher).
        #[arg(long, default_value_t = 16)]
        window: u64,
        #[arg(long, default_value = "10")]
        secs: u64,
        /// Approximate payload size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
}

type Ws = WebSocket<yawc::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, proto: Proto) -> Result<Ws, String> {
    let parsed = url.parse().map_err(|e| format!("{e}"))?;
    let mut ws = WebSocket::connect(parsed)
        .with_options(
            Options::default()
                .without_compression()
                .with_read_buffer_capacity(64 * 1024)
                .with_max_payload_read(1 << 20),
        )
        .await
        .map_err(|e| e.to_string())?;
    if proto == Proto::Sio {
        // Engine.IO open packet, then connect to the main namespace.
        let open = ws.next_frame().await.map_err(|e| e.to_string())?;
        if !open.payload().starts_with(b"0") {
            return Err("no Engine.IO open packet".into());
        }
        ws.send(Frame::text("40"))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let f = ws.next_frame().await.map_err(|e| e.to_string())?;
            if f.payload().starts_with(b"40") {
                break;
            }
            if f.payload().starts_with(b"44") {
                return Err("connect_error".into());
            }
        }
    }
    Ok(ws)
}

/// Opens `n` connections, keeping `concurrency` handshakes in flight (a sliding window,
/// so one slow handshake does not hold up the others).
async fn connect_many(url: &str, proto: Proto, n: usize, concurrency: usize) -> Vec<Ws> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let url = url.to_string();
        let tx = tx.clone();
        tokio::task::spawn_local(async move {
            let res = connect(&url, proto).await;
            drop(permit);
            let _ = tx.send(res);
        });
    }
    drop(tx);
    let mut out = Vec::with_capacity(n);
    let mut failures = 0;
    while let Some(res) = rx.recv().await {
        match res {
            Ok(ws) => out.push(ws),
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("connect failed: {e}");
                }
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} of {n} connections failed");
    }
    out
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        match args.scenario {
            Scenario::Idle { conns, settle_secs } => idle(&args, conns, settle_secs).await,
            Scenario::Fanout {
                subs,
                rate,
                window,
                secs,
                size,
            } => fanout(&args, subs, rate, window, secs, size).await,
        }
    });
}

async fn idle(args: &Args, conns: usize, settle_secs: u64) {
    let pid = args.server_pid;
    let before = pid.and_then(rss_kib);
    let start = Instant::now();
    let mut sockets = connect_many(&args.url, args.proto, conns, args.connect_concurrency).await;
    let took = start.elapsed();
    // Read the welcome (v1) so the server is past its per-connection setup, then idle
    // (Socket.IO connections finished their handshake while connecting).
    if args.proto == Proto::V1 {
        for ws in sockets.iter_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.next_frame()).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(settle_secs)).await;
    let after = pid.and_then(rss_kib);
    let held = sockets.len();
    println!(
        "idle: {held} connections in {:.2}s ({:.0} handshakes/s)",
        took.as_secs_f64(),
        held as f64 / took.as_secs_f64()
    );
    if let (Some(b), Some(a)) = (before, after) {
        let per = (a.saturating_sub(b)) as f64 * 1024.0 / held.max(1) as f64;
        println!(
            "idle: server RSS {} KiB -> {} KiB: {:.0} bytes ({:.2} KiB) per connection",
            b,
            a,
            per,
            per / 1024.0
        );
        println!("RESULT idle conns={held} bytes_per_conn={per:.0}");
    }
    drop(sockets);
}

/// The payload's send time, in microseconds since the run's start, sits after `"t":`.
fn sent_at(payload: &[u8]) -> Option<u64> {
    let pos = payload.windows(4).position(|w| w == b"\"t\":")?;
    let digits = &payload[pos + 4..];
    let mut v: u64 = 0;
    let mut any = false;
    for &b in digits {
        if b.is_ascii_digit() {
            v = v * 10 + u64::from(b - b'0');
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

struct Totals {
    delivered: u64,
    hist: Histogram,
}

async fn fanout(args: &Args, subs: usize, rate: u64, window: u64, secs: u64, size: usize) {
    let mut sockets = connect_many(&args.url, args.proto, subs + 1, args.connect_concurrency).await;
    let mut publisher = sockets.pop().expect("a publisher");
    let join = match args.proto {
        Proto::V1 => Some(r#"{"op":"join","room":"bench"}"#),
        Proto::Sio => Some(r#"42["join",{"room":"bench"}]"#),
        Proto::Raw => None,
    };
    if let Some(join) = join {
        for ws in sockets.iter_mut().chain(std::iter::once(&mut publisher)) {
            ws.send(Frame::text(join)).await.expect("join");
        }
        // Let the joins land (and the presence storm pass) before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let subs = sockets.len();
    let start = Instant::now();
    let totals = Rc::new(RefCell::new(Totals {
        delivered: 0,
        hist: Histogram::new(),
    }));
    let measuring = Rc::new(std::cell::Cell::new(false));
    for mut ws in sockets {
        let totals = totals.clone();
        let measuring = measuring.clone();
        tokio::task::spawn_local(async move {
            while let Ok(f) = ws.next_frame().await {
                if f.opcode() != OpCode::Text {
                    continue;
                }
                if f.payload().as_ref() == b"2" {
                    // Engine.IO ping: answer, or the server drops us.
                    let _ = ws.send(Frame::text("3")).await;
                    continue;
                }
                if !measuring.get() {
                    continue;
                }
                if let Some(t) = sent_at(f.payload()) {
                    let now = start.elapsed().as_micros() as u64;
                    let mut tot = totals.borrow_mut();
                    tot.delivered += 1;
                    tot.hist.record(now.saturating_sub(t));
                }
            }
        });
    }
    let pad = "x".repeat(size.saturating_sub(60));
    let frame_for = |seq: u64| {
        let t = start.elapsed().as_micros() as u64;
        match args.proto {
            Proto::V1 => format!(
                r#"{{"op":"publish","room":"bench","event":"m","data":{{"t":{t},"s":{seq},"p":"{pad}"}}}}"#
            ),
            Proto::Raw => format!(r#"{{"t":{t},"s":{seq},"p":"{pad}"}}"#),
            Proto::Sio => format!(
                r#"42["publish",{{"room":"bench","event":"m","data":{{"t":{t},"s":{seq},"p":"{pad}"}}}}]"#
            ),
        }
    };
    let cpu0 = cpu_seconds(None);
    let scpu0 = args.server_pid.and_then(|p| cpu_seconds(Some(p)));
    measuring.set(true);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut sent = 0u64;
    let mut echoed = 0u64;
    if rate == 0 {
        // Maximal rate: keep `window` messages in flight, clocked by the publisher's own copy.
        while Instant::now() < end {
            while sent - echoed < window {
                publisher
                    .feed(Frame::text(frame_for(sent)))
                    .await
                    .expect("send");
                sent += 1;
            }
            publisher.flush().await.expect("flush");
            match tokio::time::timeout(Duration::from_secs(5), publisher.next_frame()).await {
                Ok(Ok(f)) if f.opcode() == OpCode::Text && sent_at(f.payload()).is_some() => {
                    echoed += 1
                }
                Ok(Ok(_)) => {}
                _ => {
                    eprintln!("publisher stalled");
                    break;
                }
            }
        }
    } else {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // The publisher's own copies are read and dropped as they come.
        while Instant::now() < end {
            tokio::select! {
                _ = tick.tick() => {
                    publisher.send(Frame::text(frame_for(sent))).await.expect("send");
                    sent += 1;
                }
                f = publisher.next_frame() => {
                    if f.is_err() {
                        eprintln!("publisher closed");
                        break;
                    }
                }
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // Give in-flight messages a moment to land, then stop counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.set(false);
    let cpu = cpu_seconds(None)
        .zip(cpu0)
        .map(|(a, b)| (a - b) / elapsed * 100.0);
    let scpu = args
        .server_pid
        .and_then(|p| cpu_seconds(Some(p)))
        .zip(scpu0)
        .map(|(a, b)| (a - b) / elapsed * 100.0);
    let tot = totals.borrow();
    let expected = sent * subs as u64;
    let lost = expected.saturating_sub(tot.delivered);
    println!(
        "fanout: {subs} subscribers, {sent} messages in {elapsed:.1}s ({:.0} msg/s published)",
        sent as f64 / elapsed
    );
    let rate = tot.delivered as f64 / elapsed;
    let [p50, p99, p999] = [0.5, 0.99, 0.999].map(|q| tot.hist.quantile(q) as f64 / 1000.0);
    println!(
        "fanout: {rate:.0} deliveries/s, latency p50 {p50:.2} ms p99 {p99:.2} ms p999 {p999:.2} ms, lost {lost} of {expected}"
    );
    println!(
        "fanout: generator CPU {}, server CPU {}",
        cpu.map_or("?".into(), |c| format!("{c:.0}%")),
        scpu.map_or("?".into(), |c| format!("{c:.0}%"))
    );
    println!(
        "RESULT fanout subs={subs} deliveries_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2} p999_ms={p999:.2} lost={lost} gen_cpu={:.0} server_cpu={:.0}",
        cpu.unwrap_or(f64::NAN),
        scpu.unwrap_or(f64::NAN),
    );
}
