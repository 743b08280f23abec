//! An acknowledged message is never lost (docs/services.md, "Durability"): with a real SQLite
//! file, every message acknowledged before `kill -9` is there after the restart, while many
//! publishers had writes in flight; a graceful restart keeps history, direct messages and
//! notifications with their read state; a subscriber that drops and resumes with `since`
//! while others keep publishing gets exactly what it missed, once, in order.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, Process, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const PUBLISHERS: usize = 8;
const PER_PUBLISHER: usize = 600;
/// The kill comes as soon as this many acks are in, with the rest still in flight.
const KILL_AFTER: usize = 2_000;

/// Sends all of a publisher's messages at once (ids 1..), then reads acks, recording each
/// acknowledged message's seq, until the connection dies.
async fn publish_until_killed(
    mut c: Client,
    p: usize,
    acked: Arc<Mutex<Vec<(usize, u64, u64)>>>,
    count: Arc<AtomicUsize>,
) {
    for i in 1..=PER_PUBLISHER {
        let frame =
            json!({"op":"publish","room":"ledger","event":"entry","data":{"p":p,"i":i},"id":i});
        if c.ws
            .feed(common::WsMessage::text(frame.to_string()))
            .await
            .is_err()
        {
            return;
        }
    }
    if c.ws.flush().await.is_err() {
        return;
    }
    while let Some(Ok(m)) = c.ws.next().await {
        let common::WsMessage::Text(t) = m else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["op"].as_str() {
            Some("ack") => {
                let seq = v["seq"].as_u64().expect("a history room's ack has a seq");
                acked
                    .lock()
                    .unwrap()
                    .push((p, v["id"].as_u64().unwrap(), seq));
                count.fetch_add(1, Ordering::SeqCst);
            }
            Some("error") => panic!("publisher {p}: {v}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_acks_keeps_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--db",
        "ledger.db",
        "--default-history",
        "100000",
        "--rate-messages",
        "0",
        "--rate-bytes",
        "0",
    ];
    let mut server = Process::start(dir.path(), &args).await;
    // A live subscriber: it sees seqs delivered before their commit.
    let mut watcher = server.client("/ws/watcher").await;
    watcher.join("ledger").await;
    let seen_live = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = seen_live.clone();
    let watching = tokio::spawn(async move {
        while let Some(Ok(common::WsMessage::Text(t))) = watcher.ws.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(seq) = v["seq"].as_u64() {
                seen.fetch_max(seq, Ordering::SeqCst);
            }
        }
    });
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let c = server.client(&format!("/ws/pub{p}")).await;
        tasks.push(tokio::spawn(publish_until_killed(
            c,
            p,
            acked.clone(),
            count.clone(),
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(tokio::time::Instant::now() < deadline, "acks too slow");
        tokio::task::yield_now().await;
    }
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    watching.await.unwrap();
    let max_live = seen_live.load(Ordering::SeqCst);
    let acked = acked.lock().unwrap().clone();
    let total = PUBLISHERS * PER_PUBLISHER;
    assert!(
        acked.len() >= KILL_AFTER && acked.len() < total,
        "the kill came with writes in flight: {} of {total} acked",
        acked.len()
    );
    // Restart on the same file and read the whole room back.
    let server = Process::start(dir.path(), &args).await;
    let mut reader = server.client("/ws/auditor").await;
    reader
        .send(json!({"op":"join","room":"ledger","since":0,"id":1}))
        .await;
    let mut stored: HashMap<u64, (u64, u64)> = HashMap::new();
    let last_seq = loop {
        let m = reader.recv().await;
        match m["op"].as_str() {
            Some("message") => {
                let seq = m["seq"].as_u64().unwrap();
                let entry = (
                    m["data"]["p"].as_u64().unwrap(),
                    m["data"]["i"].as_u64().unwrap(),
                );
                assert!(stored.insert(seq, entry).is_none(), "seq {seq} twice");
            }
            Some("ack") => break m["seq"].as_u64().unwrap(),
            _ => panic!("unexpected {m}"),
        }
    };
    for (p, i, seq) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(&(*p as u64, *i)),
            "acknowledged message {p}/{i} (seq {seq}) lost"
        );
    }
    // The counter goes on after what was stored: no seq is given twice.
    assert!(last_seq >= acked.iter().map(|a| a.2).max().unwrap());
    let mut w = server.client("/ws/writer").await;
    let r = w
        .request(json!({"op":"publish","room":"ledger","event":"entry","data":"after"}))
        .await;
    assert_eq!(r["seq"].as_u64(), Some(last_seq + 1), "{r}");
    // After a crash, numbering jumps past anything that may have been delivered live and
    // never committed: a seq a client saw is never given to another message.
    assert!(
        r["seq"].as_u64().unwrap() > max_live,
        "seq {} given again (seen live up to {max_live})",
        r["seq"]
    );
}

#[tokio::test]
async fn a_restart_keeps_history_direct_messages_and_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubbub.db");
    let db = db.to_str().unwrap();
    let settings = [("store", "sqlite"), ("db", db), ("dm_history", "20")];
    let s = TestServer::with(&settings).await;
    let mut ann = s.user("ann").await;
    let r = ann
        .request(json!({"op":"publish","room":"news","event":"n","data":"kept"}))
        .await;
    assert_eq!(r["seq"], 1);
    let r = ann
        .request(json!({"op":"send","to":"bob","event":"dm","data":"psst"}))
        .await;
    assert_eq!(r["seq"], 1, "kept for bob, offline: {r}");
    let (_, n1) = s
        .post("/api/notify", json!({"to":"bob","data":"one"}))
        .await;
    let (_, n2) = s
        .post("/api/notify", json!({"to":"bob","data":"two"}))
        .await;
    let (st, _) = s
        .post(
            "/api/users/bob/notifications/read",
            json!({"ids":[n1["id"]]}),
        )
        .await;
    assert_eq!(st, 200);
    drop(ann);
    s.shutdown().await;

    let s = TestServer::with(&settings).await;
    let mut bob = s.user("bob").await;
    // "two", and the notification of ann's direct message; "one" stayed read.
    assert_eq!(bob.unread, 2, "the read state survived");
    let ack = bob
        .request(json!({"op":"join","room":"dm:ann","since":0}))
        .await;
    assert_eq!(ack["seq"], 1);
    let dm = bob.backlog.pop_front().unwrap();
    assert_eq!(
        (dm["data"].as_str(), dm["from"].as_str(), dm["to"].as_str()),
        (Some("psst"), Some("ann"), Some("bob"))
    );
    let list = bob.request(json!({"op":"notifications"})).await;
    let got: Vec<(u64, bool)> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"] != "dm")
        .map(|n| (n["id"].as_u64().unwrap(), n["read"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (n2["id"].as_u64().unwrap(), false),
            (n1["id"].as_u64().unwrap(), true)
        ]
    );
    let (_, n3) = s
        .post("/api/notify", json!({"to":"bob","data":"three"}))
        .await;
    assert!(n3["id"].as_u64() > n2["id"].as_u64(), "ids go on");
    let (_, page) = s.get("/api/rooms/news/history").await;
    assert_eq!(page["messages"][0]["data"], "kept");
    // A clean shutdown leaves no gap in the numbering.
    let mut ann = s.user("ann").await;
    let r = ann
        .request(json!({"op":"publish","room":"news","event":"n","data":"next"}))
        .await;
    assert_eq!(r["seq"], 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_since_while_others_publish_gets_exactly_the_missed_messages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubbub.db");
    let s = TestServer::with(&[("store", "sqlite"), ("db", db.to_str().unwrap())]).await;
    const EACH: u64 = 150;
    let (st, _) = s
        .post("/api/rooms", json!({"name":"feed","history":1000}))
        .await;
    assert_eq!(st, 201);
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let url = s.ws_url(&format!("/ws/writer{p}"));
            tokio::spawn(async move {
                let mut c = Client::connect(&url).await;
                for i in 0..EACH {
                    let r = c
                        .request(
                            json!({"op":"publish","room":"feed","event":"e","data":{"p":p,"i":i}}),
                        )
                        .await;
                    assert_eq!(r["op"], "ack", "{r}");
                    if i % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
            })
        })
        .collect();
    // The reader joins, reads a while, drops, and comes back twice with `since`.
    let mut seen: BTreeMap<u64, Value> = BTreeMap::new();
    let mut last = 0u64;
    for round in 0..3 {
        let mut c = s.user("reader").await;
        let ack = c
            .request(json!({"op":"join","room":"feed","since":last}))
            .await;
        assert_eq!(ack["op"], "ack", "{ack}");
        assert!(ack.get("gap").is_none(), "history reaches back: {ack}");
        let mut taken = 0;
        loop {
            let m = c.recv().await;
            if m["op"] != "message" {
                continue;
            }
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(
                seq,
                last + 1,
                "round {round}: in order, none missing, none twice"
            );
            last = seq;
            seen.insert(seq, m["data"].clone());
            taken += 1;
            if (round < 2 && taken == 60) || last == 3 * EACH {
                break;
            }
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for p in publishers {
        p.await.unwrap();
    }
    assert_eq!(seen.len() as u64, 3 * EACH);
    // Each publisher's messages arrived in the order it sent them.
    for p in 0..3 {
        let order: Vec<u64> = seen
            .values()
            .filter(|d| d["p"] == p)
            .map(|d| d["i"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (0..EACH).collect::<Vec<_>>());
    }
}
