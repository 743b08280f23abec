//! History rooms: per-room seq, replay on join (replay, then ack, then live), gaps, and the
//! history API.

mod common;

use common::TestServer;
use serde_json::json;

async fn publish_n(s: &TestServer, room: &str, n: u64) {
    for i in 1..=n {
        let (status, body) = s
            .post("/api/push", json!({"room": room, "event": "e", "data": i}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn join_since_replays_then_acks_then_goes_live() {
    let s = TestServer::start().await;
    publish_n(&s, "h", 5).await;
    let mut c = s.user("late").await;
    c.send(json!({"op":"join","room":"h","since":2,"id":1}))
        .await;
    for expect in 3..=5 {
        let m = c.recv().await;
        assert_eq!(m["op"], "message", "replay comes before the ack: {m}");
        assert_eq!(m["seq"], expect);
        assert_eq!(m["data"], expect);
    }
    let ack = c.recv().await;
    assert_eq!(ack["op"], "ack");
    assert_eq!(ack["seq"], 5);
    assert!(ack.get("gap").is_none());
    publish_n(&s, "h", 1).await;
    let m = c.recv().await;
    assert_eq!(
        (m["op"].clone(), m["seq"].clone()),
        (json!("message"), json!(6))
    );
}

#[tokio::test]
async fn join_history_replays_the_latest_n() {
    let s = TestServer::start().await;
    publish_n(&s, "h", 10).await;
    let mut c = s.user("u").await;
    c.send(json!({"op":"join","room":"h","history":3,"id":1}))
        .await;
    let mut got = Vec::new();
    loop {
        let m = c.recv().await;
        if m["op"] == "ack" {
            assert_eq!(m["seq"], 10);
            break;
        }
        got.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(got, vec![8, 9, 10]);
}

#[tokio::test]
async fn since_older_than_kept_reports_a_gap_and_starts_at_the_oldest() {
    let s = TestServer::start().await;
    let (status, _) = s
        .post("/api/rooms", json!({"name": "small", "history": 3}))
        .await;
    assert_eq!(status, 201);
    publish_n(&s, "small", 10).await;
    let mut c = s.user("u").await;
    c.send(json!({"op":"join","room":"small","since":1,"id":9}))
        .await;
    let mut got = Vec::new();
    let ack = loop {
        let m = c.recv().await;
        if m["op"] == "ack" {
            break m;
        }
        got.push(m["seq"].as_u64().unwrap());
    };
    assert_eq!(got, vec![8, 9, 10]);
    assert_eq!(ack["gap"], true);
    assert_eq!(ack["seq"], 10);
}

#[tokio::test]
async fn rooms_without_history_have_no_seq() {
    let s = TestServer::start().await;
    s.post("/api/rooms", json!({"name": "live", "history": 0}))
        .await;
    let mut c = s.user("u").await;
    let ack = c.join("live").await;
    assert!(ack.get("seq").is_none(), "{ack}");
    let ack = c
        .request(json!({"op":"publish","room":"live","event":"e","data":1}))
        .await;
    assert!(ack.get("seq").is_none(), "{ack}");
    let m = c.recv_message().await;
    assert!(m.get("seq").is_none());
    let (_, h) = s.get("/api/rooms/live/history").await;
    assert_eq!(h["messages"], json!([]));
}

#[tokio::test]
async fn reconnect_with_since_misses_nothing_and_repeats_nothing() {
    let s = TestServer::start().await;
    let mut c = s.user("u").await;
    c.join("feed").await;
    publish_n(&s, "feed", 3).await;
    let mut last = 0;
    for _ in 0..3 {
        last = c.recv_message().await["seq"].as_u64().unwrap();
    }
    drop(c);
    publish_n(&s, "feed", 4).await; // 4..=7 while away
    let mut c = s.user("u").await;
    c.send(json!({"op":"join","room":"feed","since":last,"id":1}))
        .await;
    publish_n(&s, "feed", 2).await; // 8, 9 live
    let mut seqs = Vec::new();
    while seqs.len() < 6 {
        let m = c.recv().await;
        if m["op"] == "message" {
            seqs.push(m["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, vec![4, 5, 6, 7, 8, 9]);
}

#[tokio::test]
async fn history_api_pages_newest_first() {
    let s = TestServer::start().await;
    publish_n(&s, "p", 7).await;
    let (status, page) = s.get("/api/rooms/p/history?limit=3").await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![7, 6, 5]);
    let first = &page["messages"][0];
    assert!(first.get("op").is_none());
    assert_eq!(first["room"], "p");
    assert_eq!(first["event"], "e");
    assert_eq!(page["next_before"], 5);
    let (_, page) = s.get("/api/rooms/p/history?before=5&limit=10").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    assert_eq!(page["next_before"], json!(null));
    let (status, e) = s.get("/api/rooms/p/history?limit=501").await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (status, e) = s.get("/api/rooms/nope/history").await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (404, json!("room_not_found"))
    );
}
