//! Micro-benchmarks of the wire codecs: Engine.IO packets and polling payloads, Socket.IO
//! packets, and encoding one hub message for each wire format (what a broadcast does once
//! per message, not once per recipient).
//!
//! Run with `cargo bench --bench codecs`. Figures are per call.

use std::sync::Arc;

use bytes::Bytes;
use hubbub::hub::{Body, Delivery, Message, MessageBody, Payload};
use hubbub::protocol::{engineio, socketio};
use serde_json::json;

fn main() {
    divan::main();
}

const EVENT: &str = r#"42["publish",{"room":"lobby","event":"chat","data":{"user":"alice","text":"hello, everyone in the lobby!","n":42}}]"#;

#[divan::bench]
fn engineio_decode_text(b: divan::Bencher) {
    let packet = Bytes::from_static(EVENT.as_bytes());
    b.bench(|| engineio::decode_text(divan::black_box(packet.clone())).unwrap());
}

#[divan::bench]
fn engineio_decode_polling_payload(b: divan::Bencher) {
    let body = Bytes::from(format!("{EVENT}\x1e3\x1e{EVENT}"));
    b.bench(|| engineio::decode_payload(divan::black_box(&body)).unwrap());
}

#[divan::bench]
fn engineio_encode_polling_payload(b: divan::Bencher) {
    let items = [
        engineio::PollItem::Text(EVENT.as_bytes()),
        engineio::PollItem::Text(b"2"),
        engineio::PollItem::Binary(&[1, 2, 3, 4]),
    ];
    b.bench(|| engineio::encode_payload(divan::black_box(items.iter().cloned())));
}

#[divan::bench]
fn socketio_decode_event(b: divan::Bencher) {
    let packet = &EVENT[1..];
    b.bench(|| socketio::decode(divan::black_box(packet)).unwrap());
}

#[divan::bench]
fn socketio_decode_binary_event_with_ack(b: divan::Bencher) {
    let packet = r#"51-/chat,17["upload",{"name":"a.png","file":{"_placeholder":true,"num":0}}]"#;
    b.bench(|| socketio::decode(divan::black_box(packet)).unwrap());
}

fn message(body: MessageBody) -> Arc<Delivery> {
    Delivery::new(Body::Message(Message {
        ns: "/".into(),
        room: Some("lobby".into()),
        event: "chat".into(),
        body,
        from: Some("alice".into()),
        to: None,
        seq: Some(12_345),
        ts: 1_700_000_000_000,
        offset: None,
    }))
}

#[divan::bench]
fn encode_hub_message_for_socketio(b: divan::Bencher) {
    let data = json!({"user":"alice","text":"hello, everyone in the lobby!","n":42});
    b.bench(|| {
        let d = message(MessageBody::Hub(Payload::json(divan::black_box(&data))));
        d.sio_frames().len()
    });
}

#[divan::bench]
fn encode_hub_message_for_v1(b: divan::Bencher) {
    let data = json!({"user":"alice","text":"hello, everyone in the lobby!","n":42});
    b.bench(|| {
        let d = message(MessageBody::Hub(Payload::json(divan::black_box(&data))));
        d.v1_frame().len()
    });
}
