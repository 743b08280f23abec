//! Three `hubbub` nodes on loopback that meet through a real `redis-server` (started here on
//! a free port, one per test) behave as one server (docs/cluster.md): every target reaches
//! its recipients on every node, the HTTP API counts and lists across nodes, a killed node
//! leaves, the single-session policy holds across nodes, and a Redis outage costs the
//! cluster's deliveries only, until Redis is back.
//!
//! Needs `redis-server` (Debian's package). Under `HUBBUB_REQUIRE_ALL=1` (the test command)
//! a missing one fails the tests; elsewhere they say so and pass.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{eventually, nodes, room_followed, wait_ready, Redis};
use serde_json::{json, Value};

fn message(data: Value, event: &str) -> impl Fn(&Value) {
    let event = event.to_string();
    move |m: &Value| {
        assert_eq!(m["op"], "message", "{m}");
        assert_eq!(m["event"], event.as_str(), "{m}");
        assert_eq!(m["data"], data, "{m}");
    }
}

#[tokio::test]
async fn every_target_reaches_every_node() {
    every_target_on(&[]).await;
}

/// The same with the sharded flavour: `SPUBLISH`, a channel per room.
#[tokio::test]
async fn every_target_reaches_every_node_over_sharded_pubsub() {
    every_target_on(&["--redis-pubsub", "sharded"]).await;
}

async fn every_target_on(extra: &[&str]) {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes(&redis, 3, extra).await;
    let mut ann = n[0].client("/ws/ann").await;
    let mut bob_b = n[1].client("/ws/bob").await;
    let mut bob_c = n[2].client("/ws/bob").await;
    let mut cat = n[2].client("/ws/cat").await;
    for c in [&mut ann, &mut bob_b, &mut cat] {
        c.join("lobby").await;
    }
    room_followed(&redis, extra, "lobby", 3).await;

    // A room, except the sender: members on the other nodes get it once.
    let ack = ann
        .request(json!({"op": "publish", "room": "lobby", "event": "chat", "data": {"n": 1}, "exclude_self": true}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    for c in [&mut bob_b, &mut cat] {
        let m = c.recv_message().await;
        message(json!({"n": 1}), "chat")(&m);
        assert_eq!(m["room"], "lobby");
        assert_eq!(m["from"], "ann");
    }
    bob_c.expect_no_message(Duration::from_millis(300)).await;
    ann.expect_no_message(Duration::from_millis(100)).await;

    // Everyone (v1 broadcast) from node B.
    let ack = bob_b
        .request(json!({"op": "broadcast", "event": "all", "data": [1, "two"]}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    for c in [&mut ann, &mut bob_b, &mut bob_c, &mut cat] {
        message(json!([1, "two"]), "all")(&c.recv_message().await);
    }

    // A user on any node: both of bob's devices, counted cluster-wide in the ack.
    let ack = ann
        .request(json!({"op": "send", "to": "bob", "event": "dm", "data": "hi"}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["delivered"], 2, "{ack}");
    for c in [&mut bob_b, &mut bob_c] {
        let m = c.recv_message().await;
        message(json!("hi"), "dm")(&m);
        assert_eq!(m["from"], "ann");
    }
    let ack = ann
        .request(json!({"op": "send", "to": "nobody", "event": "dm", "data": 1}))
        .await;
    assert_eq!(ack["code"], "user_offline", "{ack}");

    // HTTP push on node A to a user whose connections are on B and C.
    let (st, body) = n[0]
        .post(
            "/api/push",
            json!({"to": "bob", "event": "push", "data": {"x": 1}}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body, json!({"delivered": 2, "online": true}));
    for c in [&mut bob_b, &mut bob_c] {
        message(json!({"x": 1}), "push")(&c.recv_message().await);
    }
    let (_, body) = n[0]
        .post("/api/push", json!({"to": "zed", "event": "push"}))
        .await;
    assert_eq!(body, json!({"delivered": 0, "online": false}));
    let (_, body) = n[1]
        .post(
            "/rest/message",
            json!({"from": "srv", "to": "cat", "content": "yo"}),
        )
        .await;
    assert_eq!(body, json!({"succeed": true}));
    message(json!({"from": "srv", "content": "yo"}), "message")(&cat.recv_message().await);

    // A room and everyone, from the HTTP API on node C: counted on every node.
    let (_, body) = n[2]
        .post(
            "/api/push",
            json!({"room": "lobby", "event": "news", "data": 5}),
        )
        .await;
    assert_eq!(body["delivered"], 3, "{body}");
    for c in [&mut ann, &mut bob_b, &mut cat] {
        message(json!(5), "news")(&c.recv_message().await);
    }
    let (_, body) = n[2]
        .post(
            "/api/push",
            json!({"all": true, "event": "all", "data": null}),
        )
        .await;
    assert_eq!(body["delivered"], 4, "{body}");
    for c in [&mut ann, &mut bob_b, &mut bob_c, &mut cat] {
        message(Value::Null, "all")(&c.recv_message().await);
    }
    for c in [&mut ann, &mut bob_b, &mut bob_c, &mut cat] {
        c.expect_no_message(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn presence_users_and_stats_span_the_cluster() {
    let Some(redis) = Redis::start() else { return };
    let (mut n, _dir) = nodes(&redis, 3, &[]).await;
    let mut ann = n[0].client("/ws/ann").await;
    let mut bob_b = n[1].client("/ws/bob").await;
    let bob_c = n[2].client("/ws/bob").await;
    let mut cat = n[2].client("/ws/cat").await;
    ann.join("lobby").await;
    bob_b.join("lobby").await;
    cat.join("lobby").await;

    // Presence events reach the room's members on other nodes.
    let m = ann.recv_op("presence").await;
    assert_eq!(m["room"], "lobby");

    let (_, body) = n[0].get("/api/users/online").await;
    let users: Vec<(String, u64)> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_string(),
                u["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        users,
        [("ann".into(), 1), ("bob".into(), 2), ("cat".into(), 1)],
        "{body}"
    );
    let (_, body) = n[1].get("/api/presence/lobby").await;
    assert_eq!(body["users"], json!(["ann", "bob", "cat"]), "{body}");
    assert_eq!(body["count"], 3);
    let (st, _) = n[1].get("/api/presence/nowhere").await;
    assert_eq!(st, 404);
    let (_, body) = n[0].get("/api/users/bob").await;
    assert_eq!(body["connections"].as_array().unwrap().len(), 2, "{body}");
    let ids: Vec<String> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["conn"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&bob_b.conn_id()) && ids.contains(&bob_c.conn_id()));

    let (_, stats) = n[0].get("/api/stats").await;
    assert_eq!(stats["cluster"]["status"], "ok", "{stats}");
    assert_eq!(stats["cluster"]["users_online"], 3, "{stats}");
    eventually("the heartbeats count every connection", || async {
        n[1].get("/api/stats").await.1["cluster"]["connections"] == 4
    })
    .await;
    let mut listed: Vec<String> = stats["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["node"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected = Vec::new();
    for p in &n {
        expected.push(
            p.get("/api/stats").await.1["node"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    expected.sort();
    assert_eq!(listed, expected);

    // Log bob out of everything but the device on C, from node A.
    let (_, body) = n[0]
        .post(
            "/api/users/bob/disconnect",
            json!({"except": bob_c.conn_id()}),
        )
        .await;
    assert_eq!(body, json!({"disconnected": 1}));
    assert_eq!(bob_b.expect_close().await.0, 4000);
    drop(bob_b);

    // Node C dies: its users leave at once (it no longer answers), its heartbeat within
    // 2 × heartbeat_interval.
    drop(cat);
    drop(bob_c);
    let c_id = {
        let (_, s) = n[2].get("/api/stats").await;
        s["node"].as_str().unwrap().to_string()
    };
    let mut c = n.pop().unwrap();
    let mut cat2 = c.client("/ws/cat").await;
    cat2.join("lobby").await;
    c.kill9();
    let killed_at = std::time::Instant::now();
    // Answers come only from live nodes: the killed node's users are gone at once (bob's
    // device on B is gone too, by now).
    let online = || async {
        let (_, body) = n[0].get("/api/users/online").await;
        let users: Vec<String> = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user"].as_str().unwrap().to_string())
            .collect();
        users
    };
    assert!(!online().await.contains(&"cat".to_string()));
    eventually("only ann is online", || async { online().await == ["ann"] }).await;
    let (_, body) = n[0].get("/api/presence/lobby").await;
    assert_eq!(body["users"], json!(["ann"]), "{body}");
    eventually("the dead node leaves /api/stats nodes", || async {
        let (_, s) = n[0].get("/api/stats").await;
        !s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["node"] == c_id.as_str())
    })
    .await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "within 2 × heartbeat_interval (plus one beat): {:?}",
        killed_at.elapsed()
    );
}

#[tokio::test]
async fn single_session_closes_older_sessions_on_other_nodes() {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes(&redis, 2, &["--single-session", "on"]).await;
    let mut old = n[0].client("/ws/ann").await;
    let _new = n[1].client("/ws/ann").await;
    assert_eq!(old.expect_close().await.0, 4409);
}

#[tokio::test]
async fn a_redis_outage_costs_cluster_deliveries_only() {
    outage_on(&[]).await;
}

/// The same with the sharded flavour: the rooms' channels are subscribed again too.
#[tokio::test]
async fn a_redis_outage_over_sharded_pubsub() {
    outage_on(&["--redis-pubsub", "sharded"]).await;
}

async fn outage_on(extra: &[&str]) {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (n, _dir) = nodes(&redis, 2, extra).await;
    let mut a1 = n[0].client("/ws/a1").await;
    let mut a2 = n[0].client("/ws/a2").await;
    let mut b1 = n[1].client("/ws/b1").await;
    for c in [&mut a1, &mut a2, &mut b1] {
        c.join("r").await;
    }
    room_followed(&redis, extra, "r", 2).await;

    redis.stop();
    eventually("readyz says Redis is gone", || async {
        n[0].get("/readyz").await.0 == 503
    })
    .await;
    let (_, body) = n[0].get("/readyz").await;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    // Local delivery goes on; the publisher hears the cluster did not get it.
    let ack = a1
        .request(json!({"op": "publish", "room": "r", "event": "e", "data": 1}))
        .await;
    assert_eq!(ack["code"], "unavailable", "{ack}");
    message(json!(1), "e")(&a2.recv_message().await);
    let (st, body) = n[0]
        .post("/api/push", json!({"room": "r", "event": "e", "data": 2}))
        .await;
    assert_eq!(st, 503, "{body}");
    message(json!(2), "e")(&a2.recv_message().await);
    let (_, stats) = n[0].get("/api/stats").await;
    assert!(stats["cluster_failed"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(stats["cluster"]["status"], "unavailable");
    let (st, _) = n[0].get("/api/users/online").await;
    assert_eq!(st, 503);
    // A question that acts does not act here only: a2 stays (it gets message 3 below).
    let (st, _) = n[0].post("/api/users/a2/disconnect", json!({})).await;
    assert_eq!(st, 503);

    // Redis comes back on the same port: the nodes subscribe again by themselves.
    let _redis = Redis::start_on(redis.port).unwrap();
    for p in &n {
        wait_ready(p).await;
    }
    let ack = a1
        .request(json!({"op": "publish", "room": "r", "event": "e", "data": 3}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    for c in [&mut a2, &mut b1] {
        message(json!(3), "e")(&c.recv_message().await);
    }
    // b1 got nothing while Redis was away, and nothing twice.
    b1.expect_no_message(Duration::from_millis(300)).await;
    let (_, body) = n[1]
        .post("/api/push", json!({"room": "r", "event": "e", "data": 4}))
        .await;
    assert_eq!(body["delivered"], 3, "{body}");
}

#[tokio::test]
async fn a_rooms_messages_reach_other_nodes_in_seq_order() {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes(&redis, 2, &[]).await;
    let mut p1 = n[0].client("/ws/p1").await;
    let mut p2 = n[0].client("/ws/p2").await;
    let mut far = n[1].client("/ws/far").await;
    far.join("ordered").await;
    // Two publishers on node A, 40 publishes each, sent without waiting.
    for i in 0..40 {
        for p in [&mut p1, &mut p2] {
            p.send(json!({"op": "publish", "room": "ordered", "event": "n", "data": i}))
                .await;
        }
    }
    let mut last = 0;
    for _ in 0..80 {
        let m = far.recv_message().await;
        let seq = m["seq"]
            .as_u64()
            .expect("a history room numbers its messages");
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
    }
}

#[tokio::test]
async fn each_dashboard_shows_the_node_that_serves_it() {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes(&redis, 2, &[]).await;
    let mut watchers = Vec::new();
    let mut ids = Vec::new();
    for p in &n {
        let mut w = p.client("/ws/dash").await;
        w.join("hubbub:stats").await;
        watchers.push(w);
        ids.push(p.get("/api/stats").await.1["node"].clone());
    }
    // Two seconds of figures each: only from its own node (the feed is `local`).
    for (w, id) in watchers.iter_mut().zip(&ids) {
        for _ in 0..2 {
            let m = w.recv_message().await;
            assert_eq!(m["event"], "stats");
            assert_eq!(&m["data"]["node"], id, "{m}");
            // ... and lists the cluster's nodes, this one among them.
            let nodes = m["data"]["nodes"].as_array().expect("nodes in a cluster");
            assert!(nodes.iter().any(|x| &x["node"] == id), "{m}");
        }
    }
}

#[tokio::test]
async fn a_library_node_asks_the_other_servers_with_server_side_emit() {
    server_side_emit_on("classic").await;
}

/// The same with the sharded flavour (type 9 on the namespace's channel, `SHARDNUMSUB`).
#[tokio::test]
async fn a_library_node_asks_with_server_side_emit_over_sharded_pubsub() {
    server_side_emit_on("sharded").await;
}

async fn server_side_emit_on(flavour: &str) {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes(&redis, 1, &["--redis-pubsub", flavour]).await;
    let url = redis.url();
    let hubbub = hubbub::Hubbub::new(common::config(&[
        ("adapter", "redis"),
        ("redis_url", &url),
        ("redis_pubsub", flavour),
    ]));
    let cluster = hubbub.cluster().expect("a cluster node").clone();
    let lib = common::TestServer::from_hubbub(hubbub).await;
    eventually("the library node is subscribed", || async {
        lib.get("/readyz").await.0 == 200
    })
    .await;
    // The binary node answers `hubbub:node` with its id and counts.
    let _someone = n[0].client("/ws/someone").await;
    let answers = cluster
        .server_side_emit("/", "hubbub:node", vec![])
        .await
        .unwrap();
    let other = n[0].get("/api/stats").await.1["node"].clone();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["node"], other);
    assert_eq!(answers[0]["connections"], 1);
    // An event nobody answers: no answers once the wait is over.
    let none = cluster.server_side_emit("/", "nobody:listens", vec![json!(1)]);
    let none = tokio::time::timeout(Duration::from_secs(8), none)
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_empty());
    // A local broadcast stays on its node.
    let mut far = n[0].client("/ws/far").await;
    far.join("r").await;
    let mut near = lib.user("near").await;
    near.join("r").await;
    lib.hubbub
        .io()
        .of("/")
        .unwrap()
        .to("r")
        .local()
        .emit("only-here", json!(1))
        .unwrap();
    assert_eq!(near.recv_message().await["event"], "only-here");
    far.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn garbage_on_the_cluster_channels_changes_nothing() {
    garbage_on("classic").await;
}

/// The same with the sharded flavour, its channels sent to with `SPUBLISH`, and cluster
/// messages of every type with missing or ill-typed members.
#[tokio::test]
async fn garbage_on_the_sharded_channels_changes_nothing() {
    garbage_on("sharded").await;
}

async fn garbage_on(flavour: &str) {
    let Some(redis) = Redis::start() else { return };
    let (n, _dir) = nodes(&redis, 2, &["--redis-pubsub", flavour]).await;
    let uid = n[0].get("/api/stats").await.1["node"]
        .as_str()
        .unwrap()
        .to_string();
    let mut a = n[0].client("/ws/a").await;
    let mut b = n[1].client("/ws/b").await;
    a.join("g").await;
    b.join("g").await;
    room_followed(&redis, &["--redis-pubsub", flavour], "g", 2).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"{\"type\": 5, \"requestId\": 7, \"opts\": 3}".to_vec(),
        b"{\"uid\": \"x\", \"requestId\": \"r\", \"type\": 7, \"packet\": 1}".to_vec(),
        b"{\"uid\": \"x\", \"query\": {\"q\": \"nonsense\"}}".to_vec(),
        vec![0x93, 0xa1, b'x', 0xc0, 0xc0],
        vec![0x91; 5000],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        b"\x93\xa1x\x83\xa4type\x02\xa4data\x91\x01\xa3nsp\xa1/\x80".to_vec(),
        vec![0xff; 100_000],
    ];
    let mut junk = junk;
    for kind in 0..=14 {
        for data in [
            "null",
            "7",
            "[]",
            r#"{"requestId": 5, "opts": "x", "rooms": 1, "packet": [1]}"#,
            r#"{"requestId": "r", "opts": {"rooms": [1], "except": {}}, "packet": {"type": 2}}"#,
            r#"{"requestId": "r", "packet": {"type": 2, "data": [], "nsp": 5}, "clientCount": "x"}"#,
        ] {
            for uid in ["\"x\"", "null", "5"] {
                let m = format!(r#"{{"uid": {uid}, "nsp": "/", "type": {kind}, "data": {data}}}"#);
                junk.push(m.into_bytes());
            }
        }
    }
    let own = format!("socket.io#/#{uid}#");
    let (publish, channels) = if flavour == "sharded" {
        (
            "SPUBLISH",
            vec!["socket.io#/#", "socket.io#/#g#", own.as_str()],
        )
    } else {
        (
            "PUBLISH",
            vec![
                "socket.io#/#",
                "socket.io#/#g#",
                "socket.io-request#/#",
                "socket.io-response#/#",
            ],
        )
    };
    for channel in channels
        .into_iter()
        .chain(["hubbub-request#", "hubbub-response#"])
    {
        let publish = if channel.starts_with("hubbub") {
            "PUBLISH"
        } else {
            publish
        };
        for j in &junk {
            let _: i64 = redis::cmd(publish)
                .arg(channel)
                .arg(&j[..])
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }
    // Nobody got anything from it, and the cluster still works both ways.
    let ack = a
        .request(json!({"op": "publish", "room": "g", "event": "e", "data": 1}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    message(json!(1), "e")(&b.recv_message().await);
    message(json!(1), "e")(&a.recv_message().await);
    let (_, body) = n[1]
        .post("/api/push", json!({"room": "g", "event": "e", "data": 2}))
        .await;
    assert_eq!(body["delivered"], 2, "{body}");
    for p in &n {
        assert_eq!(p.get("/readyz").await.0, 200);
    }
}

#[tokio::test]
async fn a_node_that_shuts_down_leaves_the_list_at_once() {
    let Some(redis) = Redis::start() else { return };
    let (mut n, _dir) = nodes(&redis, 2, &[]).await;
    let count = |s: &Value| s["nodes"].as_array().map_or(0, Vec::len);
    let listed = || async { count(&n[0].get("/api/stats").await.1) };
    eventually("both nodes listed", || async { listed().await == 2 }).await;
    let mut b = n.pop().unwrap();
    assert!(b.stop().success(), "SIGTERM ends the node cleanly");
    // Far sooner than the 2 s its heartbeat would take to expire.
    let (_, s) = n[0].get("/api/stats").await;
    assert_eq!(count(&s), 1, "{s}");
}

#[tokio::test]
async fn a_redis_that_stops_answering_fills_a_bounded_queue_then_refuses() {
    let Some(redis) = Redis::start() else { return };
    let url = redis.url();
    let hubbub = hubbub::Hubbub::new(common::config(&[("adapter", "redis"), ("redis_url", &url)]));
    let lib = common::TestServer::from_hubbub(hubbub).await;
    eventually("subscribed", || async { lib.get("/readyz").await.0 == 200 }).await;
    let hub = lib.hub().clone();
    // Redis hangs (the connections stay open): the publisher waits, the queue fills.
    let pid = redis.child.id().to_string();
    let signal = |s: &str| {
        let ok = Command::new("kill")
            .args([s, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {s}");
    };
    signal("-STOP");
    let mut taken = Vec::new();
    let mut refused = 0;
    for i in 0..20_000 {
        let out = hub.to_all().emit("e", json!(i)).unwrap();
        match out.cluster_error {
            Some(e) => {
                assert_eq!(e.code, hubbub::ErrorCode::Unavailable);
                assert!(e.message.contains("not keeping up"), "{}", e.message);
                refused += 1;
            }
            None => taken.push(out),
        }
    }
    // At most the queue (16,384) and one batch in flight (256) were taken.
    assert!(taken.len() <= 16_384 + 256, "{} taken", taken.len());
    assert!(refused >= 20_000 - 16_384 - 256, "{refused} refused");
    signal("-CONT");
    // What waited in the queue is published once Redis answers again (only the batch that
    // was in flight may have timed out): its ack is kept.
    let last = taken.pop().expect("some were taken");
    let done = tokio::time::timeout(Duration::from_secs(20), last.committed()).await;
    assert!(done.expect("settled").is_ok());
    let after = hub.to_all().emit("e", json!("after")).unwrap();
    assert!(after.committed().await.is_ok());
}

#[tokio::test]
async fn clusters_with_different_keys_share_one_redis_without_meeting() {
    let Some(redis) = Redis::start() else { return };
    let (a, _da) = nodes(&redis, 2, &[]).await;
    let (b, _db) = nodes(&redis, 2, &["--redis-key", "other"]).await;
    let mut a_far = a[1].client("/ws/a-far").await;
    let mut b_far = b[1].client("/ws/b-far").await;
    a_far.join("shared-name").await;
    b_far.join("shared-name").await;
    // Each cluster's push reaches its own nodes only, and counts its own.
    let (_, body) = a[0]
        .post(
            "/api/push",
            json!({"room": "shared-name", "event": "e", "data": "a"}),
        )
        .await;
    assert_eq!(body["delivered"], 1, "{body}");
    message(json!("a"), "e")(&a_far.recv_message().await);
    let (_, body) = b[0]
        .post(
            "/api/push",
            json!({"room": "shared-name", "event": "e", "data": "b"}),
        )
        .await;
    assert_eq!(body["delivered"], 1, "{body}");
    message(json!("b"), "e")(&b_far.recv_message().await);
    a_far.expect_no_message(Duration::from_millis(200)).await;
    b_far.expect_no_message(Duration::from_millis(200)).await;
    // Each lists its own two nodes.
    for side in [&a, &b] {
        eventually("two nodes listed", || async {
            side[0].get("/api/stats").await.1["nodes"]
                .as_array()
                .map(Vec::len)
                == Some(2)
        })
        .await;
    }
}

/// `PUBSUB SHARDNUMSUB channel`: how many connections listen on a shard channel.
fn shard_listeners(redis: &Redis, channel: &str) -> u64 {
    let out = redis.cli(&["PUBSUB", "SHARDNUMSUB", channel]);
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn sharded_nodes_listen_on_a_rooms_channel_while_they_have_the_room() {
    let Some(redis) = Redis::start() else { return };
    let args = ["--redis-pubsub", "sharded", "--default-history", "0"];
    let (n, _dir) = nodes(&redis, 3, &args).await;
    // Every node listens on the namespace's channel and on its own answers' channel.
    assert_eq!(shard_listeners(&redis, "socket.io#/#"), 3);
    let channels = redis.cli(&["PUBSUB", "SHARDCHANNELS", "socket.io#/#*"]);
    assert_eq!(channels.lines().count(), 4, "{channels}");
    let room = "socket.io#/#quiet#";
    let listeners = |want: u64| {
        let redis = &redis;
        async move {
            eventually(&format!("{want} nodes on {room}"), || async {
                shard_listeners(redis, room) == want
            })
            .await;
        }
    };
    assert_eq!(shard_listeners(&redis, room), 0);
    let mut ann = n[0].client("/ws/ann").await;
    let mut bob = n[1].client("/ws/bob").await;
    ann.join("quiet").await;
    listeners(1).await;
    bob.join("quiet").await;
    listeners(2).await;

    // A counted message from the node without the room (a request on the namespace's
    // channel): both members get it once.
    let (_, body) = n[2]
        .post(
            "/api/push",
            json!({"room": "quiet", "event": "e", "data": 1}),
        )
        .await;
    assert_eq!(body["delivered"], 2, "{body}");
    for c in [&mut ann, &mut bob] {
        message(json!(1), "e")(&c.recv_message().await);
    }
    // A publish goes on the room's channel: a spy listening there hears it.
    let mut spy = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "SSUBSCRIBE", room])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli");
    listeners(3).await;
    let ack = ann
        .request(json!({"op": "publish", "room": "quiet", "event": "e", "data": 2, "exclude_self": true}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    message(json!(2), "e")(&bob.recv_message().await);
    ann.expect_no_message(Duration::from_millis(200)).await;
    spy.kill().unwrap();
    let heard = spy.wait_with_output().unwrap();
    let heard = String::from_utf8_lossy(&heard.stdout);
    assert!(
        heard.contains("smessage"),
        "the room's channel carried the message: {heard}"
    );
    listeners(2).await;

    // The room goes from a node when its last member leaves (no history kept here).
    let left = ann.request(json!({"op": "leave", "room": "quiet"})).await;
    assert_eq!(left["op"], "ack", "{left}");
    listeners(1).await;
    drop(bob);
    listeners(0).await;
    // Made again, followed again.
    ann.join("quiet").await;
    listeners(1).await;
}
