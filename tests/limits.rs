//! Limits: max_payload (1009), max_connections (503 before the upgrade), the outbound
//! queue (1008 slow consumer for reliable deliveries, drops for volatile ones), a flooding
//! client that does not starve the others, and the listen backlog.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::{
    coding::{Data, OpCode},
    Frame, FrameHeader,
};

#[tokio::test]
async fn a_frame_over_max_payload_closes_with_1009() {
    let s = TestServer::with(&[("max_payload", "1KiB")]).await;
    let mut ok = s.client("/ws").await;
    // Exactly max_payload is accepted (it is a JSON error, not a limit).
    ok.send_text(&"x".repeat(1024)).await;
    assert_eq!(ok.recv().await["code"], "invalid_json");
    let mut c = s.client("/ws").await;
    c.send_text(&format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(1100)))
        .await;
    let (code, _) = c.expect_close().await;
    assert_eq!(code, 1009);
    // The other connection is unaffected.
    assert_eq!(ok.request(json!({"op":"ping"})).await["op"], "pong");
}

#[tokio::test]
async fn a_reassembled_message_over_max_payload_closes_with_1009() {
    let s = TestServer::with(&[("max_payload", "1KiB")]).await;
    let mut c = s.client("/ws").await;
    let first = FrameHeader {
        is_final: false,
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let rest = FrameHeader {
        is_final: true,
        opcode: OpCode::Data(Data::Continue),
        ..FrameHeader::default()
    };
    c.ws.send(WsMessage::Frame(Frame::from_payload(
        first,
        vec![b' '; 600].into(),
    )))
    .await
    .unwrap();
    c.ws.send(WsMessage::Frame(Frame::from_payload(
        rest,
        vec![b' '; 600].into(),
    )))
    .await
    .unwrap();
    let (code, _) = c.expect_close().await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn max_connections_refuses_with_503_before_the_upgrade() {
    let s = TestServer::with(&[("max_connections", "3")]).await;
    let mut held = vec![
        s.client("/ws").await,
        s.client("/ws").await,
        s.client("/ws").await,
    ];
    let _ = &mut held;
    let err = tokio_tungstenite::connect_async(s.ws_url("/ws"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "server_full");
        }
        other => panic!("expected an HTTP 503, got {other:?}"),
    }
    let (_, metrics) = s.get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(r#"hubbub_upgrades_rejected_total{reason="server_full"} 1"#),
        "{metrics}"
    );
    // A slot freed is a slot available.
    held.pop();
    s.wait_connections(2).await;
    let c = s.client("/ws").await;
    assert_eq!(c.welcome["op"], "welcome");
}

/// Publishes 1 KiB messages to `room` until `done` says stop, yielding now and then so
/// readers get to run; returns how many were published.
async fn publish_until(
    s: &TestServer,
    room: &str,
    volatile: bool,
    mut done: impl FnMut() -> bool,
) -> u64 {
    let data = json!("y".repeat(1000));
    let mut n = 0;
    while !done() && n < 200_000 {
        let em = s.hub().to_room(room);
        let em = if volatile { em.volatile() } else { em };
        em.emit("bulk", data.clone()).unwrap();
        n += 1;
        if n % 32 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_1008_and_others_get_everything() {
    let s = TestServer::with(&[("queue_limit", "64KiB")]).await;
    let mut slow = s.user("slow").await;
    slow.join("firehose").await;
    let mut fast = s.user("fast").await;
    fast.join("firehose").await;
    let _ = slow.recv_op("presence").await;
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let mut fast_ws = fast.ws;
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = fast_ws.next().await {
            if let WsMessage::Text(t) = m {
                if t.contains("\"bulk\"") {
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    // Publish in step with the fast reader (it never lags more than 32 messages), so only
    // the client that stopped reading can overflow.
    let data = json!("y".repeat(1000));
    let mut published = 0u64;
    while s.hub().stats().slow_consumer_total() == 0 && published < 200_000 {
        for _ in 0..16 {
            s.hub()
                .to_room("firehose")
                .emit("bulk", data.clone())
                .unwrap();
            published += 1;
        }
        let deadline = tokio::time::Instant::now() + common::WAIT;
        while received.load(Ordering::Relaxed) + 32 < published {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fast reader stalled"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert_eq!(
        s.hub().stats().slow_consumer_total(),
        1,
        "only the slow one overflowed"
    );
    // The slow client, reading at last, finds the close after what it was sent.
    let (code, reason) = slow.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "slow consumer"));
    // The fast one got every message.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while received.load(Ordering::Relaxed) < published {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fast reader got {} of {published}",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(received.load(Ordering::Relaxed), published);
    reader.abort();
    let (_, m) = s.get("/metrics").await;
    assert!(m
        .as_str()
        .unwrap()
        .contains("hubbub_slow_consumer_closes_total 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_after_the_grace_period() {
    let s = TestServer::with(&[("queue_limit", "16KiB")]).await;
    let mut stuck = s.user("stuck").await;
    stuck.join("r").await;
    let hub = s.hub().clone();
    publish_until(&s, "r", false, || hub.stats().slow_consumer_total() > 0).await;
    // Never reading: the server gives up on the close handshake and frees the slot.
    s.wait_connections(0).await;
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_messages_are_dropped_for_a_full_queue_without_closing() {
    let s = TestServer::with(&[("queue_limit", "16KiB")]).await;
    let mut slow = s.user("slow").await;
    slow.join("ticks").await;
    let hub = s.hub().clone();
    let mut dropped = 0;
    let published = publish_until(&s, "ticks", true, || {
        dropped = hub.stats().volatile_dropped_total();
        dropped >= 100
    })
    .await;
    assert!(
        dropped >= 100,
        "volatile drops counted ({dropped} of {published})"
    );
    assert_eq!(s.hub().stats().slow_consumer_total(), 0);
    // Still open: drain what was queued, then a ping is answered.
    slow.send(json!({"op":"ping","id":424242})).await;
    loop {
        let m = slow.recv().await;
        if m["op"] == "pong" {
            assert_eq!(m["id"], 424242);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_does_not_starve_the_others() {
    // Rate limits off: fairness must not depend on them (tests/abuse.rs covers the limits).
    let s = TestServer::with(&[("rate_messages", "0"), ("rate_bytes", "0")]).await;
    let mut flooder = s.user("flooder").await;
    let mut a = s.user("a").await;
    let mut b = s.user("b").await;
    b.join("calm").await;
    let flood = tokio::spawn(async move {
        let frame = json!({"op":"publish","room":"flood","event":"spam","data":"z"}).to_string();
        for _ in 0..20_000 {
            if flooder
                .ws
                .feed(WsMessage::text(frame.clone()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = flooder.ws.flush().await;
        flooder
    });
    for i in 0..50 {
        let ack = a
            .request(json!({"op":"publish","room":"calm","event":"e","data":i}))
            .await;
        assert_eq!(ack["op"], "ack");
    }
    for i in 0..50 {
        assert_eq!(b.recv_message().await["data"], i);
    }
    let mut flooder = flood.await.unwrap();
    // The flooder is still connected (rate limits are off) and answers pings.
    let pong = flooder.request(json!({"op":"ping"})).await;
    assert_eq!(pong["op"], "pong");
}

/// A burst of connections the server has not accepted yet waits in the listen queue
/// instead of losing its SYN (which costs a client a one-second retry).
#[tokio::test]
async fn the_listener_queues_a_burst_of_connections() {
    let listener = hubbub::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    // Nothing accepts while the burst connects: 600 is well past the 128 that
    // `TcpListener::bind` queues.
    let mut connects = Vec::new();
    for _ in 0..600 {
        connects.push(tokio::spawn(tokio::time::timeout(
            Duration::from_millis(800),
            tokio::net::TcpStream::connect(addr),
        )));
    }
    let mut held = Vec::new();
    for c in connects {
        let stream = c.await.unwrap().expect("connected without a SYN retry");
        held.push(stream.unwrap());
    }
    assert_eq!(held.len(), 600);
    drop(listener);
}
