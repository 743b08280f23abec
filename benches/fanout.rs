//! Micro-benchmarks of the hot path: parsing a v1 publish, encoding a message, and fanning
//! one delivery out to many connections (push into every outbox, then the writer's take).
//!
//! Run with `cargo bench`. Figures are per call; the fan-out ones are per delivery, so divide
//! by the recipient count for the per-recipient cost.

use std::collections::VecDeque;

use bytes::Bytes;
use hubbub::hub::{Hub, HubConfig, ReplayFrom};
use hubbub::protocol::v1;
use hubbub::stats::Transport;
use serde_json::json;

fn main() {
    divan::main();
}

const PUBLISH: &str = r#"{"op":"publish","room":"lobby","event":"chat","data":{"user":"alice","text":"hello, everyone in the lobby!","n":42},"id":7}"#;

#[divan::bench]
fn parse_publish(b: divan::Bencher) {
    let frame = Bytes::from_static(PUBLISH.as_bytes());
    b.bench(|| v1::parse(divan::black_box(&frame)).unwrap());
}

#[divan::bench]
fn encode_message(b: divan::Bencher) {
    let data = br#"{"user":"alice","text":"hello, everyone in the lobby!","n":42}"#;
    b.bench(|| {
        v1::encode_message(&v1::MessageFields {
            room: Some("lobby"),
            event: "chat",
            data: divan::black_box(data),
            from: Some("alice"),
            to: None,
            seq: Some(12345),
            ts: 1_700_000_000_000,
        })
    });
}

/// A hub with `n` connections in room `r` (no history, so the log does not hold copies).
fn hub_with_room(n: usize) -> (Hub, Vec<std::sync::Arc<hubbub::Conn>>) {
    let hub = Hub::new(
        HubConfig::default()
            .with_queue_limit(1 << 30)
            .with_max_connections(n + 1),
    );
    hub.create_room(hubbub::hub::RoomSettings {
        name: "r".into(),
        max_users: None,
        private: false,
        history: 0,
        history_ttl: 0,
        presence: false,
        schema: None,
    })
    .unwrap();
    let conns: Vec<_> = (0..n)
        .map(|i| {
            let c = hub.register(Some(&format!("u{i}")), Transport::Ws, |_| None);
            hub.join(&c, "r", ReplayFrom::None, |_| None).unwrap();
            c
        })
        .collect();
    // Drop the presence frames the joins queued.
    for c in &conns {
        c.outbox()
            .take(futures_util::task::noop_waker_ref(), VecDeque::new());
    }
    (hub, conns)
}

#[divan::bench(args = [100, 1_000, 10_000])]
fn fanout_room(b: divan::Bencher, n: usize) {
    let (hub, conns) = hub_with_room(n);
    let data = json!({"user":"alice","text":"hello, everyone in the lobby!","n":42});
    b.counter(divan::counter::ItemsCount::new(n))
        .bench_local(|| {
            let out = hub.to_room("r").emit("chat", data.clone()).unwrap();
            assert_eq!(out.delivered, n);
            for c in &conns {
                let batch = c
                    .outbox()
                    .take(futures_util::task::noop_waker_ref(), VecDeque::new());
                c.outbox()
                    .written(batch.frames.iter().map(|f| f.len()).sum());
            }
        });
}
