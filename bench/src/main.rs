//! `hubbub-bench`: a load generator for Hubbub (protocol v1, Socket.IO, GraphQL) and for peers
//! that do the same work (`--proto raw`: a server that broadcasts or echoes what it gets).
//!
//! Scenarios:
//! - `idle`: open N connections, let them settle, report the server's RSS per connection
//!   (from `/proc/PID/status`, before and after).
//! - `connect`: handshakes per second (WebSocket upgrade plus the protocol's greeting) with a
//!   window of handshakes in flight, and their latency.
//! - `fanout`: N subscribers and one publisher at a fixed or maximal rate; each message
//!   carries its send time, so every subscriber measures latency. With `--slow-share`, that
//!   share of the subscribers never reads: the server's memory must stay bounded while the
//!   others keep their latency.
//! - `echo`: N connections each send a message addressed to themselves and wait for it
//!   (closed loop): round trips per second and latency.
//! - `acks`: publishers that wait for each publish's acknowledgement in a history room: the
//!   cost of durable acks (`--store sqlite` against `--store memory`).
//! - `jitter`: subscribers of a history room are cut off and reconnect every few seconds
//!   while a publisher goes on; each resumes with `join since` and the run checks that every
//!   client ends with every message.
//!
//! The generator runs on one thread (pin it with `taskset`) and reads whole buffers of
//! frames per wake-up; its CPU share is printed next to every figure, since a figure taken
//! with the generator near 100 % is a lower bound. Every scenario ends with one `RESULT`
//! line of `key=value` pairs for scripts.

mod conn;
mod scenarios;
mod stats;

use clap::{Parser, Subcommand};

use conn::{Proto, Target};

#[derive(Parser, Debug)]
#[command(
    name = "hubbub-bench",
    about = "Load generator for Hubbub and its peers"
)]
struct Args {
    /// WebSocket URL of the server (for v1, the `/ws` endpoint).
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// Wire protocol: `v1` (Hubbub rooms), `sio` (Socket.IO) or `raw` (the server relays
    /// what it receives).
    #[arg(long, value_enum, default_value = "v1")]
    proto: Proto,
    /// The server's process id, for RSS and CPU figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Spread connections over this many loopback source addresses (127.0.0.1..N), for
    /// more connections to one server port than one address's ephemeral ports allow (about
    /// 28,000; several generator processes are needed past the open-files limit anyway).
    /// Binding a source address makes the kernel search for a free port at bind time,
    /// which costs generator CPU as ports fill up: leave it at 1 below 28,000.
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// Fan-out across a cluster: the subscribers connect to these URLs (round robin) while
    /// the publisher stays on `--url`. Repeat for several nodes.
    #[arg(long)]
    sub_url: Vec<String>,
    /// The subscribers' protocol, when it is not `--proto` (give `--sub-url` too): for
    /// example v1 publishing on `/ws` to GraphQL subscribers on `/graphql`.
    #[arg(long, value_enum)]
    sub_proto: Option<Proto>,
    /// Offer permessage-deflate (yawc's low-latency setting) on every connection.
    #[arg(long)]
    deflate: bool,
    #[command(subcommand)]
    scenario: Scenario,
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
        /// After the idle reading: every connection joins a room and reads, one more
        /// publishes this many messages of `--burst-size` bytes, then all idle again and
        /// the RSS is read once more (memory after traffic).
        #[arg(long, default_value_t = 0)]
        burst: u64,
        #[arg(long, default_value_t = 1000)]
        burst_size: usize,
    },
    /// Handshakes per second: open N connections as fast as the window allows.
    Connect {
        #[arg(long, default_value_t = 5_000)]
        conns: usize,
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
        /// Share of subscribers (0 to 1) that never read: the `slow` scenario.
        #[arg(long, default_value_t = 0.0)]
        slow_share: f64,
        /// Pad with varied words rather than one repeated letter (what compression meets
        /// in real text).
        #[arg(long)]
        words: bool,
    },
    /// N connections each send a message to themselves and wait for it, in a loop.
    Echo {
        #[arg(long, default_value_t = 1_000)]
        conns: usize,
        #[arg(long, default_value = "10")]
        secs: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Publishers wait for each publish's ack (durable in a history room): ack latency and
    /// acknowledged publishes per second.
    Acks {
        #[arg(long, default_value_t = 50)]
        conns: usize,
        /// Publishes in flight per connection.
        #[arg(long, default_value_t = 4)]
        window: u64,
        #[arg(long, default_value = "10")]
        secs: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Subscribers reconnect every few seconds and resume; every message must arrive.
    Jitter {
        #[arg(long, default_value_t = 200)]
        subs: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value = "15")]
        secs: u64,
        /// Each subscriber is cut off after a random time up to this many milliseconds.
        #[arg(long, default_value_t = 3_000)]
        period_ms: u64,
        /// How long a cut-off subscriber waits before reconnecting.
        #[arg(long, default_value_t = 0)]
        down_ms: u64,
        /// The room (a history room: create it with enough history for a reconnect).
        #[arg(long, default_value = "jitter")]
        room: String,
    },
}

fn main() {
    let args = Args::parse();
    let target = Target {
        url: args.url.clone(),
        proto: args.proto,
        source_ips: args.source_ips.max(1),
        deflate: args.deflate,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let pid = args.server_pid;
    let window = args.connect_concurrency;
    local.block_on(&rt, async move {
        match args.scenario {
            Scenario::Idle {
                conns,
                settle_secs,
                burst,
                burst_size,
            } => {
                let burst = (burst > 0).then_some((burst, burst_size));
                scenarios::idle(&target, pid, window, conns, settle_secs, burst).await
            }
            Scenario::Connect { conns } => scenarios::connect(&target, pid, window, conns).await,
            Scenario::Fanout {
                subs,
                rate,
                window: in_flight,
                secs,
                size,
                slow_share,
                words,
            } => {
                let plan = scenarios::FanoutPlan {
                    subs,
                    rate,
                    window: in_flight,
                    secs,
                    size,
                    slow_share,
                    words,
                    sub_urls: args.sub_url.clone(),
                    sub_proto: args.sub_proto,
                };
                scenarios::fanout(&target, pid, window, plan).await
            }
            Scenario::Echo { conns, secs, size } => {
                scenarios::echo(&target, pid, window, conns, secs, size).await
            }
            Scenario::Acks {
                conns,
                window: in_flight,
                secs,
                size,
            } => scenarios::acks(&target, pid, conns, in_flight, secs, size).await,
            Scenario::Jitter {
                subs,
                rate,
                secs,
                period_ms,
                down_ms,
                room,
            } => {
                scenarios::jitter(
                    &target, pid, window, subs, rate, secs, period_ms, down_ms, &room,
                )
                .await
            }
        }
    });
}
