//! The services over v1 and HTTP against a real server on loopback (docs/services.md):
//! rooms (the seeds' RoomController), the `chat` schema, direct messages kept per
//! conversation, notifications with the unread count on every tab, presence for the BFF, and
//! history by age. Durability across restarts and crashes is in `tests/durability.rs`.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{json, Value};

fn code(reply: &Value) -> &str {
    reply["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn rooms_are_created_listed_read_and_deleted_over_v1() {
    let s = TestServer::start().await;
    let mut ann = s.user("ann").await;
    let mut bob = s.user("bob").await;
    let made = ann
        .request(json!({"op":"create_room","room":"club","max_users":1,"history":5}))
        .await;
    assert_eq!(made["op"], "ack", "{made}");
    assert_eq!(
        made["room"],
        json!({"name":"club","members":0,"max_users":1,"private":false,"history":5,
               "history_ttl":0,"presence":true,"schema":null})
    );
    let again = ann.request(json!({"op":"create_room","room":"club"})).await;
    assert_eq!(code(&again), "room_exists");
    let bad = ann
        .request(json!({"op":"create_room","room":"x","colour":"red"}))
        .await;
    assert_eq!(
        code(&bad),
        "bad_request",
        "unknown fields are refused: {bad}"
    );
    let list = bob.request(json!({"op":"rooms"})).await;
    let names: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["club"]);
    // One user fits; the second is refused.
    ann.join("club").await;
    let full = bob.request(json!({"op":"join","room":"club"})).await;
    assert_eq!(code(&full), "room_full", "{full}");
    let one = bob.request(json!({"op":"room","room":"club"})).await;
    assert_eq!(one["room"]["members"], 1);
    let missing = bob.request(json!({"op":"room","room":"nowhere"})).await;
    assert_eq!(code(&missing), "room_not_found");
    let gone = bob.request(json!({"op":"delete_room","room":"club"})).await;
    assert_eq!(gone["deleted"], "club", "{gone}");
    assert_eq!(
        code(&bob.request(json!({"op":"delete_room","room":"club"})).await),
        "room_not_found"
    );
    assert_eq!(s.get("/api/rooms/club").await.0, 404);
    // The same over HTTP: 201, 409, 404.
    let (st, _) = s
        .post("/api/rooms", json!({"name":"hall","history":0}))
        .await;
    assert_eq!(st, 201);
    let (st, e) = s.post("/api/rooms", json!({"name":"hall"})).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("room_exists"))
    );
    let (st, _) = s
        .send(reqwest::Method::DELETE, "/api/rooms/hall", None)
        .await;
    assert_eq!(st, 200);
    let (st, e) = s
        .send(reqwest::Method::DELETE, "/api/rooms/hall", None)
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("room_not_found"))
    );
}

#[tokio::test]
async fn chat_rooms_accept_only_chat_messages_and_system_ones_from_the_server() {
    let s = TestServer::start().await;
    let (st, e) = s
        .post("/api/rooms", json!({"name":"bad","schema":"haiku"}))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("chat"),
        "{e}"
    );
    let (st, _) = s
        .post("/api/rooms", json!({"name":"talk","schema":"chat"}))
        .await;
    assert_eq!(st, 201);
    let mut ann = s.user("ann").await;
    let mut bob = s.user("bob").await;
    bob.join("talk").await;
    let cases = [
        (
            json!({"type":"chat","payload":{}}),
            "payload.content is required",
        ),
        (json!({"payload":{"content":"hi"}}), "type is required"),
        (
            json!({"type":"chat","payload":{"content":"x".repeat(4001)}}),
            "payload.content must have 1 to 4000 characters (it has 4001)",
        ),
        (
            json!({"type":"system","payload":{"content":"all hands"}}),
            "type `system` is sent by the server only",
        ),
        (
            json!({"type":"chat","payload":{"content":"hi"},"x":1}),
            "`x` is not a field of a chat message (type, payload)",
        ),
    ];
    for (data, message) in cases {
        let r = ann
            .request(json!({"op":"publish","room":"talk","event":"chat","data":data}))
            .await;
        assert_eq!(
            (code(&r), r["message"].as_str().unwrap()),
            ("bad_request", message)
        );
    }
    let good = json!({"type":"chat","payload":{"content":"hello","to":"bob"}});
    let r = ann
        .request(json!({"op":"publish","room":"talk","event":"chat","data":good}))
        .await;
    assert_eq!(r["op"], "ack", "{r}");
    let m = bob.recv_message().await;
    assert_eq!(m["data"], good, "refused messages never arrived");
    // The server's API may send `system` messages.
    let sys = json!({"type":"system","payload":{"content":"maintenance at 5"}});
    let (st, body) = s
        .post(
            "/api/push",
            json!({"room":"talk","event":"chat","data":sys}),
        )
        .await;
    assert_eq!((st, body["delivered"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(bob.recv_message().await["data"], sys);
    let (st, e) = s
        .post(
            "/api/push",
            json!({"room":"talk","event":"chat","data":"plain"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn direct_messages_are_kept_per_conversation_and_replayed_through_dm_rooms() {
    let s = TestServer::with(&[("dm_history", "10")]).await;
    let mut ann = s.user("ann").await;
    // Bob is offline: the message is kept, not refused.
    let r = ann
        .request(json!({"op":"send","to":"bob","event":"dm","data":"are you there?"}))
        .await;
    assert_eq!(
        (r["op"].as_str(), r["delivered"].as_u64(), r["seq"].as_u64()),
        (Some("ack"), Some(0), Some(1)),
        "{r}"
    );
    // Bob's first tab reads the conversation.
    let mut bob1 = s.user("bob").await;
    let mut bob2 = s.user("bob").await;
    bob1.send(json!({"op":"join","room":"dm:ann","history":10,"id":7}))
        .await;
    let m = bob1.recv().await;
    assert_eq!(
        (
            m["op"].as_str(),
            m["from"].as_str(),
            m["to"].as_str(),
            m["seq"].as_u64(),
            m["data"].as_str()
        ),
        (
            Some("message"),
            Some("ann"),
            Some("bob"),
            Some(1),
            Some("are you there?")
        )
    );
    assert!(
        m.get("room").is_none(),
        "a conversation's messages name no room: {m}"
    );
    let ack = bob1.recv().await;
    assert_eq!(
        (ack["room"].as_str(), ack["seq"].as_u64()),
        (Some("dm:ann"), Some(1)),
        "{ack}"
    );
    // A live message reaches every tab of bob's (bob2 has not joined the conversation).
    let r = ann
        .request(json!({"op":"send","to":"bob","event":"dm","data":"yes?"}))
        .await;
    assert_eq!(
        (r["delivered"].as_u64(), r["seq"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    for tab in [&mut bob1, &mut bob2] {
        let m = tab.recv_message().await;
        assert_eq!(
            (m["seq"].as_u64(), m["data"].as_str()),
            (Some(2), Some("yes?"))
        );
    }
    // bob2 now resumes from the start: it gets what it missed (seq 1), not seq 2 again.
    let ack = bob2
        .request(json!({"op":"join","room":"dm:ann","since":0}))
        .await;
    let replayed: Vec<u64> = bob2
        .backlog
        .drain(..)
        .filter(|m| m["op"] == "message")
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!((replayed, ack["seq"].as_u64()), (vec![1], Some(2)));
    // Bob answers; ann's tab that joined the conversation sees it, and so do bob's own
    // tabs in the conversation (what bob sent, from another device).
    ann.join("dm:bob").await;
    let r = bob1
        .request(json!({"op":"send","to":"ann","event":"dm","data":"hi ann"}))
        .await;
    assert_eq!(r["seq"], 3, "{r}");
    let m = ann.recv_message().await;
    assert_eq!(
        (m["from"].as_str(), m["to"].as_str(), m["seq"].as_u64()),
        (Some("bob"), Some("ann"), Some(3))
    );
    assert_eq!(bob2.recv_message().await["seq"], 3);
    // Nobody else reaches the conversation: eve's `dm:ann` is her own.
    let mut eve = s.user("eve").await;
    let ack = eve
        .request(json!({"op":"join","room":"dm:ann","history":10}))
        .await;
    assert_eq!(
        (ack["op"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(0)),
        "{ack}"
    );
    assert!(eve.backlog.iter().all(|m| m["op"] != "message"));
    // A conversation is not published to, and is not listed among rooms.
    let r = ann
        .request(json!({"op":"publish","room":"dm:bob","event":"x","data":1}))
        .await;
    assert_eq!(code(&r), "bad_request", "{r}");
    let (_, rooms) = s.get("/api/rooms").await;
    assert_eq!(rooms["rooms"], json!([]), "conversations are internal");
    // Each kept message raised a notification for its addressee: the red dot.
    let list = bob1
        .request(json!({"op":"notifications","unread_only":true}))
        .await;
    let dm_notes: Vec<(Value, Value)> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["event"] == "dm")
        .map(|n| (n["data"]["from"].clone(), n["data"]["seq"].clone()))
        .collect();
    assert_eq!(
        dm_notes,
        vec![(json!("ann"), json!(2)), (json!("ann"), json!(1))]
    );
    assert_eq!(list["notifications"][0]["data"]["conversation"], "dm:ann");
    // The HTTP API's push with `from` is a direct message too.
    let (st, body) = s
        .post(
            "/api/push",
            json!({"to":"ann","from":"bob","event":"dm","data":"from the back end"}),
        )
        .await;
    assert_eq!((st, body["seq"].as_u64()), (200, Some(4)), "{body}");
    assert_eq!(ann.recv_message().await["data"], "from the back end");
}

#[tokio::test]
async fn a_direct_message_reaches_a_socketio_session_once_in_its_namespace() {
    use futures_util::{SinkExt, StreamExt};
    let s = TestServer::with(&[("dm_history", "10")]).await;
    // One Socket.IO session of bob's in two namespaces.
    let url = s.ws_url("/socket.io/?EIO=4&transport=websocket");
    let mut c = common::Client::connect(&url).await;
    let open = c.ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'));
    for packet in [r#"40{"user":"bob"}"#, r#"40/x,{"user":"bob"}"#] {
        c.ws.send(common::WsMessage::text(packet)).await.unwrap();
    }
    s.wait_connections(2).await;
    let mut ann = s.user("ann").await;
    let r = ann
        .request(json!({"op":"send","to":"bob","event":"dm","data":"once"}))
        .await;
    assert_eq!(
        (r["delivered"].as_u64(), r["seq"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let r = ann
        .request(json!({"op":"send","to":"bob","event":"dm","data":"twice?"}))
        .await;
    assert_eq!(r["seq"], 2);
    let mut dms = Vec::new();
    while dms.len() < 2 {
        let f = tokio::time::timeout(common::WAIT, c.ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let t = f.to_text().unwrap().to_string();
        assert!(!t.starts_with("42/x,[\"dm\""), "not in /x: {t}");
        if t.starts_with("42[\"dm\"") {
            dms.push(t);
        }
    }
    assert!(
        dms[0].contains("\"once\"") && dms[1].contains("\"twice?\""),
        "{dms:?}"
    );
    ann.request(json!({"op":"ping"})).await;
    while let Ok(Some(Ok(f))) = tokio::time::timeout(Duration::from_millis(200), c.ws.next()).await
    {
        let t = f.to_text().unwrap();
        assert!(!t.contains("[\"dm\""), "delivered twice: {t}");
    }
}

#[tokio::test]
async fn unread_counts_go_up_on_notify_and_down_on_read_on_every_tab() {
    let s = TestServer::start().await;
    let mut tab1 = s.user("nina").await;
    let mut tab2 = s.user("nina").await;
    let mut other = s.user("otto").await;
    assert_eq!((tab1.unread, tab2.unread), (0, 0), "sent after the welcome");
    let (st, n1) = s
        .post(
            "/api/notify",
            json!({"to":"nina","event":"mention","data":{"by":"otto"}}),
        )
        .await;
    assert_eq!((st, n1["delivered"].as_u64()), (201, Some(2)), "{n1}");
    let id1 = n1["id"].as_u64().unwrap();
    for tab in [&mut tab1, &mut tab2] {
        let n = tab.recv_op("notification").await;
        assert_eq!(
            (n["id"].as_u64(), n["event"].as_str(), n["data"].clone()),
            (Some(id1), Some("mention"), json!({"by":"otto"}))
        );
        assert_eq!(tab.next_unread().await, 1);
    }
    let (_, n2) = s
        .post("/api/notify", json!({"to":"nina","data":"second"}))
        .await;
    let id2 = n2["id"].as_u64().unwrap();
    assert!(id2 > id1);
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(tab.recv_op("notification").await["event"], "notification");
        assert_eq!(tab.next_unread().await, 2);
    }
    // Listing: newest first, with the unread count; filters.
    let list = tab1.request(json!({"op":"notifications"})).await;
    let ids: Vec<u64> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!((ids, list["unread"].as_u64()), (vec![id2, id1], Some(2)));
    let page = tab1
        .request(json!({"op":"notifications","before":id2,"limit":1}))
        .await;
    assert_eq!(page["notifications"][0]["id"].as_u64(), Some(id1));
    // Reading one on tab1 lowers the count on both tabs; the other user is untouched.
    let r = tab1.request(json!({"op":"read","ids":[id1]})).await;
    assert_eq!(r["unread"], 1, "{r}");
    assert_eq!(tab1.next_unread().await, 1);
    assert_eq!(tab2.next_unread().await, 1);
    let unread_only = tab2
        .request(json!({"op":"notifications","unread_only":true}))
        .await;
    assert_eq!(unread_only["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(unread_only["notifications"][0]["id"].as_u64(), Some(id2));
    // Over HTTP: the list, then read all.
    let (_, list) = s.get("/api/users/nina/notifications").await;
    assert_eq!(list["notifications"][1]["read"], true);
    let (st, r) = s
        .post("/api/users/nina/notifications/read", json!({"all": true}))
        .await;
    assert_eq!((st, r["unread"].as_u64()), (200, Some(0)));
    assert_eq!(tab1.next_unread().await, 0);
    assert_eq!(tab2.next_unread().await, 0);
    // A notification to everyone: each user has their own read state.
    let (st, all) = s
        .post("/api/notify", json!({"all": true, "data": "hello all"}))
        .await;
    assert_eq!((st, all["delivered"].as_u64()), (201, Some(3)));
    assert_eq!(other.recv_op("notification").await["data"], "hello all");
    assert_eq!(other.next_unread().await, 1);
    assert_eq!(tab1.next_unread().await, 1);
    let r = other.request(json!({"op":"read","all":true})).await;
    assert_eq!(r["unread"], 0);
    let (_, nina) = s
        .get("/api/users/nina/notifications?unread_only=true")
        .await;
    assert_eq!(nina["unread"], 1, "otto's read does not read nina's");
    // Bad requests.
    let r = tab1.request(json!({"op":"read"})).await;
    assert_eq!(code(&r), "bad_request");
    let r = tab1.request(json!({"op":"notifications","limit":0})).await;
    assert_eq!(code(&r), "bad_request");
    let (st, _) = s.post("/api/notify", json!({"data": 1})).await;
    assert_eq!(st, 400, "a target is required");
    // A new tab hears the current count right after its welcome.
    let tab3 = s.user("nina").await;
    assert_eq!(tab3.unread, 1);
}

#[tokio::test]
async fn presence_counts_users_and_lists_their_devices() {
    let s = TestServer::start().await;
    let mut a1 = s.user("pat").await;
    let mut a2 = s.user("pat").await;
    let mut b = s.user("quinn").await;
    b.join("lounge").await;
    a1.join("lounge").await;
    let p = b.recv_op("presence").await;
    assert_eq!(
        (p["joined"].as_str(), p["count"].as_u64()),
        (Some("pat"), Some(2))
    );
    // pat's second tab changes nothing for the others: presence counts users.
    let ack = a2.join("lounge").await;
    assert_eq!(ack["members"], 2);
    let (_, pres) = s.get("/api/presence/lounge").await;
    assert_eq!(
        pres,
        json!({"room":"lounge","count":2,"users":["pat","quinn"]})
    );
    let (_, online) = s.get("/api/users/online").await;
    assert_eq!(online["count"], 2);
    assert_eq!(online["users"][0]["user"], "pat");
    assert_eq!(online["users"][0]["connections"], 2);
    let (_, devices) = s.get("/api/users/pat").await;
    assert_eq!(devices["online"], true);
    let conns = devices["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    for c in conns {
        assert_eq!(
            (c["transport"].as_str(), c["address"].as_str()),
            (Some("ws"), Some("127.0.0.1")),
            "{c}"
        );
        assert!(c["since"].as_u64().unwrap() > 0);
    }
    // "Log in on a new device, log out the others": everything but a2.
    let keep = a2.conn_id();
    let (st, r) = s
        .post("/api/users/pat/disconnect", json!({"except": keep}))
        .await;
    assert_eq!((st, r["disconnected"].as_u64()), (200, Some(1)));
    assert_eq!(a1.expect_close().await.0, 4000);
    s.wait_connections(2).await;
    let (_, devices) = s.get("/api/users/pat").await;
    assert_eq!(
        devices["connections"][0]["conn"].as_str(),
        Some(keep.as_str())
    );
    assert_eq!(a2.request(json!({"op":"ping"})).await["op"], "pong");
    // No presence `left` for pat: a tab is still in the room.
    b.request(json!({"op":"ping"})).await;
    assert!(
        b.backlog.iter().all(|m| m["op"] != "presence"),
        "{:?}",
        b.backlog
    );
    let (_, offline) = s.get("/api/users/nobody").await;
    assert_eq!(
        offline,
        json!({"user":"nobody","online":false,"connections":[]})
    );
    let (st, e) = s
        .post(
            "/api/users/pat/disconnect",
            json!({"conn":"x","except":"y"}),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

#[tokio::test]
async fn history_is_kept_by_age_as_well_as_by_count() {
    let s = TestServer::start().await;
    let (st, room) = s
        .post(
            "/api/rooms",
            json!({"name":"brief","history":10,"history_ttl":1}),
        )
        .await;
    assert_eq!((st, room["history_ttl"].as_u64()), (201, Some(1)));
    let mut p = s.user("pub").await;
    for i in 0..3 {
        p.request(json!({"op":"publish","room":"brief","event":"e","data":i}))
            .await;
    }
    let mut late = s.user("late").await;
    late.request(json!({"op":"join","room":"brief","history":10}))
        .await;
    assert_eq!(
        late.backlog.iter().filter(|m| m["op"] == "message").count(),
        3
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut later = s.user("later").await;
    let ack = later
        .request(json!({"op":"join","room":"brief","since":1}))
        .await;
    assert_eq!(
        (ack["seq"].as_u64(), ack["gap"].as_bool()),
        (Some(3), Some(true)),
        "{ack}"
    );
    assert!(
        later.backlog.iter().all(|m| m["op"] != "message"),
        "expired"
    );
    let (_, page) = s.get("/api/rooms/brief/history").await;
    assert_eq!(page["messages"], json!([]));
}
