//! The store of a cluster (`--store redis`, docs/cluster.md): nodes on loopback that meet
//! through a real `redis-server` number every history room's messages with one counter, so
//! every node holds the same history, a client that moves from one node to another resumes
//! with `since` and misses nothing, an acknowledged message is in Redis, and a node that was
//! away (killed, restarted, or dropped by Redis) catches up. Rooms made through the API and
//! notifications with their read marks are the same on every node.
//!
//! Needs `redis-server` (Debian's package): see tests/cluster.rs.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::{eventually, nodes_with, wait_ready, Redis};
use common::{Client, Process};
use serde_json::{json, Value};

/// `(seq, data)` of the next `n` messages `c` receives.
async fn seqs(c: &mut Client, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let m = c.recv_message().await;
        out.push((
            m["seq"].as_u64().expect("a kept message has a seq"),
            m["data"].clone(),
        ));
    }
    out
}

/// Publishes `data` to `room` and returns the acknowledged seq.
async fn publish(c: &mut Client, room: &str, data: Value) -> u64 {
    let ack = c
        .request(json!({"op": "publish", "room": room, "event": "say", "data": data}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    ack["seq"]
        .as_u64()
        .expect("the ack of a kept message has its seq")
}

/// A reader that joins `room` on `node` replaying everything after `since`: the replay.
async fn replay(
    node: &Process,
    who: &str,
    room: &str,
    since: u64,
) -> (Client, Vec<(u64, Value)>, Value) {
    let mut c = node.client(&format!("/ws/{who}")).await;
    let ack = c
        .request(json!({"op": "join", "room": room, "since": since}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    let mut got = Vec::new();
    // The replay came before the ack: it waits in the client's backlog.
    while let Some(m) = c.backlog_message() {
        got.push((m["seq"].as_u64().unwrap(), m["data"].clone()));
    }
    (c, got, ack)
}

#[tokio::test]
async fn one_numbering_for_every_node_and_a_moved_client_resumes_with_since() {
    one_numbering_on(&[]).await;
}

/// The same with the sharded flavour (the script `SPUBLISH`es on the namespace's channel).
#[tokio::test]
async fn one_numbering_over_sharded_pubsub() {
    one_numbering_on(&["--redis-pubsub", "sharded"]).await;
}

async fn one_numbering_on(extra: &[&str]) {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes_with(&redis, 3, "redis", extra).await;
    let mut on_a = n[0].client("/ws/reader-a").await;
    let mut on_c = n[2].client("/ws/reader-c").await;
    on_a.join("talk").await;
    on_c.join("talk").await;

    // Publishers on A and B, 30 publishes each, sent without waiting for acks.
    let mut pa = n[0].client("/ws/pa").await;
    let mut pb = n[1].client("/ws/pb").await;
    for i in 0..30 {
        pa.send(json!({"op": "publish", "room": "talk", "event": "say", "data": format!("a{i}"), "id": i}))
            .await;
        pb.send(json!({"op": "publish", "room": "talk", "event": "say", "data": format!("b{i}"), "id": i}))
            .await;
    }
    let mut acked = BTreeSet::new();
    for p in [&mut pa, &mut pb] {
        for _ in 0..30 {
            let ack = p.recv_op("ack").await;
            assert!(acked.insert(ack["seq"].as_u64().unwrap()), "{ack}");
        }
    }
    assert_eq!(
        acked,
        (1..=60).collect(),
        "one counter for the room across nodes"
    );

    // Every node delivers the same sequence: 1..60, in order, each once.
    let seen_a = seqs(&mut on_a, 60).await;
    let seen_c = seqs(&mut on_c, 60).await;
    assert_eq!(seen_a, seen_c);
    assert_eq!(
        seen_a.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<_>>()
    );
    // Each publisher's messages keep their order.
    for who in ["a", "b"] {
        let order: Vec<&Value> = seen_a
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d.as_str().unwrap().starts_with(who))
            .collect();
        let expected: Vec<Value> = (0..30).map(|i| json!(format!("{who}{i}"))).collect();
        assert_eq!(order, expected.iter().collect::<Vec<_>>());
    }

    // A client on A saw up to 60 and drops; 15 more are published on B meanwhile.
    drop(on_a);
    for i in 0..15 {
        publish(&mut pb, "talk", json!(format!("late{i}"))).await;
    }
    // It comes back on node C with since = 60: exactly the 15 it missed, then live.
    let (mut moved, got, ack) = replay(&n[2], "reader-a", "talk", 60).await;
    let expected: Vec<(u64, Value)> = (0..15)
        .map(|i| (61 + i as u64, json!(format!("late{i}"))))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(ack["seq"], 75, "{ack}");
    assert_ne!(ack["gap"], true, "{ack}");
    assert_eq!(publish(&mut pa, "talk", json!("live")).await, 76);
    assert_eq!(seqs(&mut moved, 1).await, vec![(76, json!("live"))]);
    moved.expect_no_message(Duration::from_millis(200)).await;

    // The HTTP history of any node is the same page.
    let url = "/api/rooms/talk/history?limit=5";
    let from_a = n[0].get(url).await.1;
    assert_eq!(from_a, n[1].get(url).await.1);
    assert_eq!(from_a["messages"][0]["seq"], 76, "{from_a}");
}

#[tokio::test]
async fn a_counted_push_and_direct_messages_span_the_kept_history() {
    counted_and_direct_on(&[]).await;
}

/// The same with the sharded flavour.
#[tokio::test]
async fn a_counted_push_and_direct_messages_over_sharded_pubsub() {
    counted_and_direct_on(&["--redis-pubsub", "sharded"]).await;
}

async fn counted_and_direct_on(extra: &[&str]) {
    let Some(redis) = Redis::start() else { return };
    let mut args = vec!["--dm-history", "50"];
    args.extend(extra);
    let (n, _dir) = nodes_with(&redis, 3, "redis", &args).await;
    let mut members = Vec::new();
    for (i, node) in n.iter().enumerate() {
        let mut c = node.client(&format!("/ws/m{i}")).await;
        c.join("news").await;
        members.push(c);
    }
    let (st, body) = n[1]
        .post(
            "/api/push",
            json!({"room": "news", "event": "e", "data": "hello"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["delivered"], 3, "members on every node count: {body}");
    assert_eq!(body["seq"], 1, "{body}");
    for c in &mut members {
        assert_eq!(seqs(c, 1).await, vec![(1, json!("hello"))]);
    }

    // ann on A writes to bob, who has a device on B; bob's device on C joins the
    // conversation later and replays it.
    let mut ann = n[0].client("/ws/ann").await;
    let mut bob = n[1].client("/ws/bob").await;
    for i in 1..=3 {
        let ack = ann
            .request(json!({"op": "send", "to": "bob", "event": "dm", "data": i}))
            .await;
        assert_eq!(ack["op"], "ack", "{ack}");
        assert_eq!(ack["seq"], i, "{ack}");
        assert_eq!(ack["delivered"], 1, "bob's one device: {ack}");
        let m = bob.recv_message().await;
        assert_eq!(
            (m["data"].clone(), m["seq"].clone()),
            (json!(i), json!(i)),
            "{m}"
        );
        assert_eq!(m["from"], "ann", "{m}");
    }
    let (_, got, _) = replay(&n[2], "bob", "dm:ann", 1).await;
    assert_eq!(got, vec![(2, json!(2)), (3, json!(3))]);
}

#[tokio::test]
async fn rooms_made_and_deleted_on_one_node_are_so_on_every_node() {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes_with(&redis, 2, "redis", &[]).await;
    let (st, body) = n[0]
        .post(
            "/api/rooms",
            json!({"name": "small", "history": 3, "max_users": 7}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    eventually("node B knows the room", || async {
        n[1].get("/api/rooms/small").await.0 == 200
    })
    .await;
    let (_, info) = n[1].get("/api/rooms/small").await;
    assert_eq!(
        (info["history"].clone(), info["max_users"].clone()),
        (json!(3), json!(7))
    );
    let mut c = n[1].client("/ws/x").await;
    for i in 0..5 {
        publish(&mut c, "small", json!(i)).await;
    }
    // Kept 3, on the node that did not publish too.
    let (_, got, ack) = replay(&n[0], "y", "small", 0).await;
    assert_eq!(got, vec![(3, json!(2)), (4, json!(3)), (5, json!(4))]);
    assert_eq!(ack["gap"], true, "{ack}");

    let st = reqwest::Client::new()
        .delete(n[1].url("/api/rooms/small"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(st.is_success(), "{st}");
    eventually("node A forgot the room", || async {
        n[0].get("/api/rooms/small").await.0 == 404
    })
    .await;
    // A room made again under the name keeps none of the old history and goes on numbering
    // (a seq a client saw is never given twice), on every node.
    let (st, body) = n[0]
        .post("/api/rooms", json!({"name": "small", "history": 3}))
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(publish(&mut c, "small", json!("new")).await, 6);
    let (_, got, _) = replay(&n[0], "z", "small", 0).await;
    assert_eq!(got, vec![(6, json!("new"))]);
}

#[tokio::test]
async fn a_room_with_history_ttl_keeps_only_young_messages_in_redis() {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes_with(&redis, 1, "redis", &[]).await;
    let (st, body) = n[0]
        .post("/api/rooms", json!({"name": "brief", "history_ttl": 1}))
        .await;
    assert_eq!(st, 201, "{body}");
    let mut c = n[0].client("/ws/t").await;
    // More old ones than the script reads at a time.
    for i in 0..70 {
        publish(&mut c, "brief", json!(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for i in 70..72 {
        publish(&mut c, "brief", json!(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The first 70 are over a second old, the next two are not: they stay.
    publish(&mut c, "brief", json!(72)).await;
    let len = redis.cli(&["XLEN", "hubbub:history:brief"]);
    assert_eq!(len.trim(), "3", "the stream keeps the young messages only");
}

#[tokio::test]
async fn a_node_that_was_away_catches_up_before_it_replays() {
    let Some(redis) = Redis::start() else { return };
    let (mut n, dir) = nodes_with(&redis, 2, "redis", &[]).await;
    let mut p = n[0].client("/ws/p").await;
    for i in 1..=5 {
        publish(&mut p, "log", json!(i)).await;
    }
    // Node B dies; 5 more while it is away; it comes back and replays all ten.
    n[1].kill9();
    for i in 6..=10 {
        publish(&mut p, "log", json!(i)).await;
    }
    let back = Process::start(&dir.path().join("node1"), &node_args(&redis)).await;
    wait_ready(&back).await;
    let (_, got, ack) = replay(&back, "r", "log", 0).await;
    assert_eq!(got, (1..=10).map(|i| (i, json!(i))).collect::<Vec<_>>());
    assert_eq!(ack["seq"], 10, "{ack}");
    n[1] = back;

    // Redis drops every subscriber (as on a network cut) while messages are published:
    // each node catches up what it missed, so every node ends with the same history.
    let mut acked = BTreeSet::new();
    for i in 11..=60 {
        if i % 10 == 0 {
            kill_subscribers(&redis);
        }
        let ack = p
            .request(json!({"op": "publish", "room": "log", "event": "say", "data": i}))
            .await;
        if ack["op"] == "ack" {
            acked.insert(ack["seq"].as_u64().unwrap());
        } else {
            // Refused while this node reconnects and catches up.
            assert_eq!(ack["code"], "unavailable", "{ack}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    assert!(acked.len() >= 10, "some publishes got through: {acked:?}");
    for node in &n {
        wait_ready(node).await;
    }
    let last = *acked.last().unwrap();
    for (i, node) in n.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let history = loop {
            let (_, got, _) = replay(node, &format!("check{i}"), "log", 10).await;
            let history: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
            if history.last() == Some(&last) {
                break history;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i} never caught up to {last}: {history:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let held: BTreeSet<u64> = history.iter().copied().collect();
        assert!(
            acked.is_subset(&held),
            "node {i} lacks some of {acked:?}: {history:?}"
        );
        assert!(
            history.windows(2).all(|w| w[0] < w[1]),
            "in order: {history:?}"
        );
    }
}

fn node_args(redis: &Redis) -> Vec<&'static str> {
    let url: &'static str = Box::leak(redis.url().into_boxed_str());
    vec![
        "--adapter",
        "redis",
        "--redis-url",
        url,
        "--store",
        "redis",
        "--heartbeat-interval",
        "1s",
    ]
}

/// `CLIENT KILL TYPE pubsub`: Redis closes every node's subscriber connection.
fn kill_subscribers(redis: &Redis) {
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
}

#[tokio::test]
async fn a_redis_that_lost_its_data_numbers_on_past_what_clients_saw() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (n, _dir) = nodes_with(&redis, 2, "redis", &[]).await;
    let mut a = n[0].client("/ws/a").await;
    let mut b = n[1].client("/ws/b").await;
    a.join("r").await;
    b.join("r").await;
    for i in 1..=3 {
        publish(&mut a, "r", json!(i)).await;
    }
    let first: Vec<(u64, Value)> = (1..=3).map(|i| (i, json!(i))).collect();
    assert_eq!(seqs(&mut a, 3).await, first);
    assert_eq!(seqs(&mut b, 3).await, first);

    // Redis goes away (this one keeps nothing on disk): a history publish is refused before
    // anyone gets it.
    redis.stop();
    eventually("node A sees Redis gone", || async {
        n[0].get("/readyz").await.0 == 503
    })
    .await;
    let ack = a
        .request(json!({"op": "publish", "room": "r", "event": "say", "data": "lost"}))
        .await;
    assert_eq!(ack["code"], "unavailable", "{ack}");

    // It comes back empty: the nodes raise the room's counter to what they numbered, so
    // the next message is 4, not a second 1 that every node would drop.
    let _redis = Redis::start_on(redis.port).unwrap();
    for p in &n {
        wait_ready(p).await;
    }
    assert_eq!(publish(&mut b, "r", json!(4)).await, 4);
    for c in [&mut a, &mut b] {
        assert_eq!(seqs(c, 1).await, vec![(4, json!(4))]);
        c.expect_no_message(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn notifications_and_read_marks_are_the_same_on_every_node() {
    let Some(redis) = Redis::start() else { return };
    let (n, dir) = nodes_with(&redis, 3, "redis", &["--dm-history", "50"]).await;
    let mut bob_a = n[0].client("/ws/bob").await;
    let mut bob_b = n[1].client("/ws/bob").await;
    // Made on node C, where bob has no connection: both of his devices hear it.
    let (st, made) = n[2]
        .post(
            "/api/notify",
            json!({"to": "bob", "event": "mention", "data": {"by": "cy"}}),
        )
        .await;
    assert_eq!(st, 201, "{made}");
    let id1 = made["id"].as_u64().unwrap();
    for tab in [&mut bob_a, &mut bob_b] {
        let got = tab.recv_op("notification").await;
        assert_eq!(
            (got["id"].as_u64(), got["data"].clone()),
            (Some(id1), json!({"by": "cy"}))
        );
        assert_eq!(tab.next_unread().await, 1);
    }
    // To everyone, from node A; ids stay increasing across nodes.
    let (_, all) = n[0]
        .post("/api/notify", json!({"all": true, "data": "hello all"}))
        .await;
    let id2 = all["id"].as_u64().unwrap();
    assert!(id2 > id1, "{id2} after {id1}");
    for tab in [&mut bob_a, &mut bob_b] {
        assert_eq!(tab.recv_op("notification").await["data"], "hello all");
        assert_eq!(tab.next_unread().await, 2);
    }
    // Read on node B: node A's device hears the new count; every node lists the same.
    let r = bob_b.request(json!({"op": "read", "ids": [id1]})).await;
    assert_eq!(r["unread"], 1, "{r}");
    assert_eq!(bob_b.next_unread().await, 1);
    assert_eq!(bob_a.next_unread().await, 1);
    for node in &n {
        let (_, list) = node.get("/api/users/bob/notifications").await;
        let seen: Vec<(u64, bool)> = list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["id"].as_u64().unwrap(), x["read"].as_bool().unwrap()))
            .collect();
        assert_eq!(seen, vec![(id2, false), (id1, true)], "node {}", node.port);
        assert_eq!(list["unread"], 1);
    }
    // A direct message raises one notification in the cluster, not one per node.
    let mut ann = n[2].client("/ws/ann").await;
    let ack = ann
        .request(json!({"op": "send", "to": "bob", "event": "dm", "data": "psst"}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    for tab in [&mut bob_a, &mut bob_b] {
        assert_eq!(tab.recv_message().await["data"], "psst");
        assert_eq!(tab.recv_op("notification").await["event"], "dm");
        assert_eq!(tab.next_unread().await, 2);
    }
    bob_a.expect_no_message(Duration::from_millis(200)).await;

    // A node that starts later reads them all back, read marks included.
    std::fs::create_dir_all(dir.path().join("late")).unwrap();
    let late = Process::start(&dir.path().join("late"), &node_args(&redis)).await;
    wait_ready(&late).await;
    let (_, list) = late.get("/api/users/bob/notifications").await;
    assert_eq!(list["notifications"].as_array().unwrap().len(), 3, "{list}");
    assert_eq!(list["unread"], 2, "{list}");
    assert_eq!(list["notifications"][2]["read"], true, "{list}");
}

#[tokio::test]
async fn an_acknowledgement_follows_the_publishers_own_delivery() {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes_with(&redis, 2, "redis", &[]).await;
    let mut p = n[0].client("/ws/p").await;
    p.join("mine").await;
    for i in 1..=20u64 {
        let ack = p
            .request(json!({"op": "publish", "room": "mine", "event": "say", "data": i}))
            .await;
        assert_eq!(ack["seq"], i, "{ack}");
        // As on one node: the member that published got its message before the ack,
        let own = p
            .backlog_message()
            .expect("the message came before its ack");
        assert_eq!(
            (own["seq"].as_u64(), own["data"].as_u64()),
            (Some(i), Some(i))
        );
        // and this node's history has it once the ack is in.
        let (_, page) = n[0].get("/api/rooms/mine/history?limit=1").await;
        assert_eq!(page["messages"][0]["seq"], i, "{page}");
    }
}

#[tokio::test]
async fn a_node_that_catches_up_does_not_bring_deleted_rooms_back() {
    let Some(redis) = Redis::start() else { return };
    let (n, dir) = nodes_with(&redis, 1, "redis", &[]).await;
    let mut c = n[0].client("/ws/c").await;
    publish(&mut c, "temp", json!(1)).await;
    let st = reqwest::Client::new()
        .delete(n[0].url("/api/rooms/temp"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(st.is_success(), "{st}");
    // The room's counter stays in Redis; nodes that start later, with history kept or not,
    // do not list the room it counted.
    for (name, extra) in [
        ("late", vec![]),
        ("late-nohistory", vec!["--default-history", "0"]),
    ] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let mut args = node_args(&redis);
        args.extend(extra);
        let late = Process::start(&dir.path().join(name), &args).await;
        wait_ready(&late).await;
        let (_, rooms) = late.get("/api/rooms").await;
        assert!(!rooms.to_string().contains("temp"), "{name}: {rooms}");
    }
}

/// The adapter connects in the background, so on a loaded machine its catch-up can finish
/// before the notification service registers for it (a node then started with none of the
/// cluster's notifications, and said it was ready). A handler registered after the
/// catch-up still gets the cluster's notifications: the catch-up runs again for it.
#[tokio::test]
async fn a_notice_handler_registered_after_the_catch_up_gets_the_notifications() {
    use hubbub::cluster::wire::Flavour;
    use hubbub::cluster::{ClusterConfig, RedisAdapter, Replicated};
    use hubbub::hub::{Adapter, Hub, HubConfig};

    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes_with(&redis, 1, "redis", &[]).await;
    let (st, made) = n[0]
        .post(
            "/api/notify",
            json!({"to": "bob", "event": "mention", "data": 1}),
        )
        .await;
    assert_eq!(st, 201, "{made}");
    let id = made["id"].as_u64().unwrap();

    let hub = Hub::new(HubConfig::default());
    let adapter = RedisAdapter::start(
        &hub,
        ClusterConfig {
            redis_url: redis.url(),
            namespaces: vec!["/".into()],
            request_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            keep_history: true,
            key: "socket.io".into(),
            flavour: Flavour::Classic,
        },
    )
    .unwrap();
    let caught_up = || {
        let ready = adapter.health().is_ok();
        async move { ready }
    };
    eventually("the adapter caught up with the cluster", caught_up).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    adapter.on_notices(move |r| {
        let _ = tx.send(r);
    });
    let loaded = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Some(Replicated::Loaded { snapshot, .. }) => break snapshot,
                Some(_) => continue,
                None => panic!("the adapter dropped the handler"),
            }
        }
    })
    .await
    .expect("the catch-up never reached a handler registered after it");
    let ids: Vec<u64> = loaded.notifications.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![id]);
    eventually("ready again after the second catch-up", caught_up).await;
}
