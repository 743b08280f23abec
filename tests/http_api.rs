//! The HTTP API over a real socket: push to each target, the seeds' /rest/message, rooms,
//! presence, users, stats, metrics, health, the API key, and bad bodies.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn push_to_a_user_reaches_every_connection_and_reports_online() {
    let s = TestServer::start().await;
    let mut a = s.user("ann").await;
    let mut b = s.user("ann").await;
    let (status, body) = s
        .post(
            "/api/push",
            json!({"to":"ann","event":"note","data":{"n":1},"from":"backend"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"delivered":2,"online":true}));
    for c in [&mut a, &mut b] {
        let m = c.recv_message().await;
        assert_eq!(
            (m["event"].clone(), m["from"].clone()),
            (json!("note"), json!("backend"))
        );
        assert_eq!(m["data"], json!({"n":1}));
    }
    let (status, body) = s
        .post("/api/push", json!({"to":"ghost","event":"note"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"delivered":0,"online":false}));
}

#[tokio::test]
async fn push_to_a_room_and_to_all() {
    let s = TestServer::start().await;
    let mut inside = s.user("in").await;
    inside.join("news").await;
    let mut outside = s.user("out").await;
    let (_, body) = s
        .post(
            "/api/push",
            json!({"room":"news","event":"headline","data":"x"}),
        )
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(body["seq"], 1);
    let m = inside.recv_message().await;
    assert_eq!(
        (m["room"].clone(), m["seq"].clone()),
        (json!("news"), json!(1))
    );
    assert!(
        m.get("from").is_none(),
        "server pushes without from carry none"
    );
    outside.expect_no_message(Duration::from_millis(100)).await;
    let (_, body) = s
        .post("/api/push", json!({"all":true,"event":"alert","data":null}))
        .await;
    assert_eq!(body["delivered"], 2);
    assert_eq!(inside.recv_message().await["event"], "alert");
    assert_eq!(outside.recv_message().await["event"], "alert");
}

#[tokio::test]
async fn push_rejects_bad_bodies_with_clear_codes() {
    let s = TestServer::with(&[("max_payload", "1KiB")]).await;
    let post = |body: &'static str| s.send(Method::POST, "/api/push", Some(body.to_string()));
    let (st, e) = post("{oops").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("invalid_json"))
    );
    let (st, e) = post(r#"{"event":"e"}"#).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (st, e) = post(r#"{"to":"a","room":"r","event":"e"}"#).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (st, e) = post(r#"{"to":"a"}"#).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (st, e) = post(r#"{"to":"a","event":"e","colour":"red"}"#).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (st, e) = post(r#"{"to":5,"event":"e"}"#).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let big = format!(
        r#"{{"all":true,"event":"e","data":"{}"}}"#,
        "x".repeat(2000)
    );
    let (st, e) = s.send(Method::POST, "/api/push", Some(big)).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (413, json!("payload_too_large"))
    );
    assert!(e["error"]["message"].as_str().is_some());
}

#[tokio::test]
async fn rest_message_is_the_seeds_single_user_push() {
    let s = TestServer::start().await;
    let mut bob = s.user("bob").await;
    let (st, body) = s
        .post(
            "/rest/message",
            json!({"from":"alice","to":"bob","content":"hi bob"}),
        )
        .await;
    assert_eq!((st, body), (200, json!({"succeed": true})));
    let m = bob.recv_message().await;
    assert_eq!(m["event"], "message");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["data"], json!({"from":"alice","content":"hi bob"}));
    let (st, body) = s
        .post(
            "/rest/message",
            json!({"from":"alice","to":"carl","content":"?"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(body["succeed"], false);
    assert!(body["msg"].as_str().unwrap().contains("carl"));
}

#[tokio::test]
async fn rooms_are_created_listed_limited_and_deleted() {
    let s = TestServer::start().await;
    let (st, room) = s
        .post(
            "/api/rooms",
            json!({"name":"vip","max_users":2,"private":true,"history":5}),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(
        room,
        json!({"name":"vip","members":0,"max_users":2,"private":true,"history":5,"history_ttl":0,"presence":true,"schema":null})
    );
    let (st, e) = s.post("/api/rooms", json!({"name":"vip"})).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("room_exists"))
    );
    let (st, e) = s.post("/api/rooms", json!({"name":""})).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );

    let mut a = s.user("a").await;
    let mut a2 = s.user("a").await;
    let mut b = s.user("b").await;
    let mut c = s.user("c").await;
    a.join("vip").await;
    a2.join("vip").await; // same user: still one member
    b.join("vip").await;
    let e = c.request(json!({"op":"join","room":"vip"})).await;
    assert_eq!(e["code"], "room_full");
    let (_, room) = s.get("/api/rooms/vip").await;
    assert_eq!(room["members"], 2);
    let (_, list) = s.get("/api/rooms").await;
    assert_eq!(list["rooms"][0]["name"], "vip");
    let (_, p) = s.get("/api/presence/vip").await;
    assert_eq!(p, json!({"room":"vip","users":["a","b"],"count":2}));

    let (st, _) = s.send(Method::DELETE, "/api/rooms/vip", None).await;
    assert_eq!(st, 200);
    let (st, e) = s.get("/api/rooms/vip").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("room_not_found"))
    );
    let (st, _) = s.send(Method::DELETE, "/api/rooms/vip", None).await;
    assert_eq!(st, 404);
    // Former members no longer receive the room's messages.
    s.post("/api/push", json!({"room":"vip","event":"e"})).await;
    a.expect_no_message(Duration::from_millis(150)).await;
    let (st, e) = s.get("/api/presence/nowhere").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("room_not_found"))
    );
}

#[tokio::test]
async fn empty_rooms_without_history_vanish_and_pinned_ones_stay() {
    let s = TestServer::with(&[("default_history", "0")]).await;
    let mut a = s.user("a").await;
    a.join("tmp").await;
    assert_eq!(s.get("/api/rooms/tmp").await.0, 200);
    a.request(json!({"op":"leave","room":"tmp"})).await;
    assert_eq!(s.get("/api/rooms/tmp").await.0, 404);
    s.post("/api/rooms", json!({"name":"kept"})).await;
    a.join("kept").await;
    a.request(json!({"op":"leave","room":"kept"})).await;
    assert_eq!(s.get("/api/rooms/kept").await.0, 200);
}

#[tokio::test]
async fn users_online_and_disconnect_with_4000() {
    let s = TestServer::start().await;
    let mut m1 = s.user("mallory").await;
    let mut m2 = s.user("mallory").await;
    let _o = s.user("oscar").await;
    let (_, online) = s.get("/api/users/online").await;
    assert_eq!(online["count"], 2, "users, not connections: {online}");
    let users: Vec<(String, u64)> = online["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            assert!(u["since"].as_u64().unwrap() > 1_700_000_000_000, "{u}");
            (
                u["user"].as_str().unwrap().to_string(),
                u["connections"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(users, vec![("mallory".into(), 2), ("oscar".into(), 1)]);
    let (st, body) = s.post("/api/users/mallory/disconnect", json!({})).await;
    assert_eq!((st, body), (200, json!({"disconnected": 2})));
    for c in [&mut m1, &mut m2] {
        let (code, _) = c.expect_close().await;
        assert_eq!(code, 4000);
    }
    s.wait_connections(1).await;
    let (_, online) = s.get("/api/users/online").await;
    assert_eq!(online["count"], 1);
    assert_eq!(online["users"][0]["user"], "oscar");
}

#[tokio::test]
async fn stats_and_metrics_count_traffic() {
    let s = TestServer::start().await;
    let mut a = s.user("a").await;
    let mut b = s.user("b").await;
    a.join("r").await;
    b.join("r").await;
    a.request(json!({"op":"publish","room":"r","event":"e","data":1}))
        .await;
    b.recv_message().await;
    a.recv_message().await;
    let (st, stats) = s.get("/api/stats").await;
    assert_eq!(st, 200);
    assert_eq!(
        stats["connections"],
        json!({"total":2,"ws":2,"socketio":0,"graphql":0})
    );
    assert_eq!(stats["users_online"], 2);
    assert_eq!(stats["rooms"], 1);
    assert_eq!(stats["messages_in"], 3);
    // 2 copies of the message + 1 presence (a saw b join)
    assert_eq!(stats["messages_out"], 3);
    assert_eq!(stats["node"].as_str().unwrap(), s.hub().node());
    // Prometheus text unless OpenMetrics is asked for.
    let r = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("# TYPE hubbub_messages_in_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
    let r = reqwest::Client::new()
        .get(s.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
    let (st, metrics) = s.get("/metrics").await;
    assert_eq!(st, 200);
    let text = metrics.as_str().unwrap();
    for needle in [
        r#"hubbub_connections{transport="ws"} 2"#,
        r#"hubbub_connections{transport="socketio"} 0"#,
        "hubbub_messages_in_total 3",
        "hubbub_messages_out_total 3",
        "hubbub_bytes_out_total",
        "hubbub_slow_consumer_closes_total 0",
        "hubbub_heartbeat_reaped_total 0",
        r#"hubbub_upgrades_rejected_total{reason="server_full"} 0"#,
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/healthz").await, (200, json!({"status":"ok"})));
    assert_eq!(
        s.get("/readyz").await,
        (200, json!({"status":"ready","store":{"status":"none"}}))
    );
    let (st, body) = s.get("/").await;
    assert_eq!(st, 200);
    assert!(body.as_str().unwrap().contains("<title>Hubbub</title>"));
}

#[tokio::test]
async fn the_api_key_guards_the_server_api() {
    let s = TestServer::with(&[("api_key", "k3y")]).await;
    let client = reqwest::Client::new();
    let r = client.get(s.url("/api/stats")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "unauthorized");
    let r = client
        .get(s.url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(s.url("/api/push"))
        .bearer_auth("k3y")
        .json(&json!({"all":true,"event":"e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(s.url("/rest/message"))
        .json(&json!({"from":"a","to":"b","content":"c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Health stays open for probes.
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn rooms_without_presence_stay_quiet_on_join_and_leave() {
    let s = TestServer::start().await;
    let (st, room) = s
        .post("/api/rooms", json!({"name":"channel","presence":false}))
        .await;
    assert_eq!((st, room["presence"].clone()), (201, json!(false)));
    let mut a = s.user("a").await;
    a.join("channel").await;
    let mut b = s.user("b").await;
    let ack = b.join("channel").await;
    assert_eq!(ack["members"], 2);
    b.request(json!({"op":"leave","room":"channel"})).await;
    // a sees no presence, only the message that follows.
    s.post("/api/push", json!({"room":"channel","event":"e","data":1}))
        .await;
    let m = a.recv().await;
    assert_eq!(
        (m["op"].clone(), m["data"].clone()),
        (json!("message"), json!(1))
    );
}
