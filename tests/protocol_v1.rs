//! Protocol v1 over a real socket: welcome, every op, replies by id, and bad input.

mod common;

use std::time::Duration;

use common::{TestServer, WsMessage};
use futures_util::SinkExt;
use serde_json::json;

#[tokio::test]
async fn welcome_names_the_connection_and_the_limits() {
    let s = TestServer::with(&[("heartbeat_interval", "7s"), ("max_payload", "64KiB")]).await;
    let anon = s.client("/ws").await;
    assert_eq!(anon.welcome["heartbeat_ms"], 7000);
    assert_eq!(anon.welcome["max_payload"], 65536);
    let conn = anon.conn_id();
    assert_eq!(anon.user(), format!("anon-{conn}"));
    let alice = s.user("alice").await;
    assert_eq!(alice.user(), "alice");
    assert_ne!(alice.conn_id(), conn);
    let q = s.client("/ws?user=bob").await;
    assert_eq!(q.user(), "bob");
}

#[tokio::test]
async fn join_publish_leave_with_acks() {
    let s = TestServer::start().await;
    let mut a = s.user("alice").await;
    let mut b = s.user("bob").await;
    let ack = a.join("r1").await;
    assert_eq!(ack["room"], "r1");
    assert_eq!(ack["members"], 1);
    assert_eq!(ack["seq"], 0, "a history room reports its last seq");
    let ack = b.join("r1").await;
    assert_eq!(ack["members"], 2);
    let p = a.recv_op("presence").await;
    assert_eq!(
        p,
        json!({"op":"presence","room":"r1","joined":"bob","count":2})
    );

    let ack = a
        .request(json!({"op":"publish","room":"r1","event":"chat","data":{"text":"hi"}}))
        .await;
    assert_eq!(ack["op"], "ack");
    assert_eq!(ack["seq"], 1);
    for c in [&mut a, &mut b] {
        let m = c.recv_message().await;
        assert_eq!(m["room"], "r1");
        assert_eq!(m["event"], "chat");
        assert_eq!(m["data"], json!({"text":"hi"}));
        assert_eq!(m["from"], "alice");
        assert_eq!(m["seq"], 1);
        assert!(m["ts"].as_u64().unwrap() > 1_600_000_000_000);
    }

    let ack = b.request(json!({"op":"leave","room":"r1"})).await;
    assert_eq!(ack, json!({"op":"ack","id":ack["id"],"room":"r1"}));
    let p = a.recv_op("presence").await;
    assert_eq!(
        p,
        json!({"op":"presence","room":"r1","left":"bob","count":1})
    );
    a.request(json!({"op":"publish","room":"r1","event":"chat","data":2}))
        .await;
    assert_eq!(a.recv_message().await["data"], 2);
    b.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn exclude_self_skips_only_the_publishing_connection() {
    let s = TestServer::start().await;
    let mut a1 = s.user("alice").await;
    let mut a2 = s.user("alice").await;
    let mut b = s.user("bob").await;
    for c in [&mut a1, &mut a2, &mut b] {
        c.join("room").await;
    }
    let ack = a1
        .request(json!({"op":"publish","room":"room","event":"e","data":1,"exclude_self":true}))
        .await;
    assert_eq!(ack["op"], "ack");
    assert_eq!(a2.recv_message().await["data"], 1);
    assert_eq!(b.recv_message().await["data"], 1);
    a1.expect_no_message(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn publish_to_a_room_not_joined_is_allowed() {
    let s = TestServer::start().await;
    let mut member = s.user("m").await;
    member.join("news").await;
    let mut outsider = s.user("o").await;
    let ack = outsider
        .request(json!({"op":"publish","room":"news","event":"e","data":"x"}))
        .await;
    assert_eq!(ack["op"], "ack");
    let m = member.recv_message().await;
    assert_eq!(
        (m["from"].clone(), m["data"].clone()),
        (json!("o"), json!("x"))
    );
    outsider.expect_no_message(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn send_reaches_every_connection_of_the_user() {
    let s = TestServer::start().await;
    let mut tabs = vec![
        s.user("carol").await,
        s.user("carol").await,
        s.user("carol").await,
    ];
    let mut other = s.user("dave").await;
    let mut sender = s.user("erin").await;
    let ack = sender
        .request(json!({"op":"send","to":"carol","event":"dm","data":{"n":1}}))
        .await;
    assert_eq!(ack["op"], "ack");
    assert_eq!(ack["delivered"], 3);
    for t in &mut tabs {
        let m = t.recv_message().await;
        assert_eq!(m["event"], "dm");
        assert_eq!(m["from"], "erin");
        assert!(m.get("room").is_none() && m.get("seq").is_none());
    }
    other.expect_no_message(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn send_to_an_offline_user_is_user_offline() {
    let s = TestServer::start().await;
    let mut a = s.user("a").await;
    let e = a
        .request(json!({"op":"send","to":"nobody","event":"dm"}))
        .await;
    assert_eq!(e["op"], "error");
    assert_eq!(e["code"], "user_offline");
}

#[tokio::test]
async fn broadcast_reaches_everyone_including_the_sender() {
    let s = TestServer::start().await;
    let mut cs = vec![s.user("a").await, s.user("b").await, s.client("/ws").await];
    let ack = cs[0]
        .request(json!({"op":"broadcast","event":"news","data":[1,2]}))
        .await;
    assert_eq!(ack["op"], "ack");
    for c in &mut cs {
        let m = c.recv_message().await;
        assert_eq!(
            (m["event"].clone(), m["data"].clone()),
            (json!("news"), json!([1, 2]))
        );
        assert_eq!(m["from"], "a");
    }
}

#[tokio::test]
async fn ping_is_answered_by_pong_with_and_without_id() {
    let s = TestServer::start().await;
    let mut c = s.client("/ws").await;
    let pong = c.request(json!({"op":"ping"})).await;
    assert_eq!(pong, json!({"op":"pong","id":pong["id"]}));
    c.send(json!({"op":"ping"})).await;
    assert_eq!(c.recv().await, json!({"op":"pong"}));
}

#[tokio::test]
async fn requests_without_id_get_no_ack_but_errors() {
    let s = TestServer::start().await;
    let mut c = s.user("u").await;
    c.send(json!({"op":"join","room":"quiet"})).await;
    c.send(json!({"op":"publish","room":"quiet","event":"e","data":1}))
        .await;
    assert_eq!(
        c.recv_message().await["data"],
        1,
        "no ack came before the message"
    );
    c.send(json!({"op":"nope"})).await;
    let e = c.recv().await;
    assert_eq!(e["code"], "unknown_op");
    assert!(e.get("id").is_none());
}

#[tokio::test]
async fn each_request_gets_exactly_one_reply_with_its_id() {
    let s = TestServer::start().await;
    let mut c = s.user("u").await;
    let reqs = [
        json!({"op":"join","room":"x","id":1}),
        json!({"op":"publish","room":"x","event":"e","id":2}),
        json!({"op":"leave","room":"x","id":3}),
        json!({"op":"ping","id":4}),
        json!({"op":"broadcast","event":"b","id":5}),
        json!({"op":"send","to":"u","event":"d","id":6}),
        json!({"op":"bogus","id":7}),
        json!({"op":"join","id":8}),
    ];
    for r in &reqs {
        c.send(r.clone()).await;
    }
    let mut seen = Vec::new();
    while seen.len() < reqs.len() {
        let m = c.recv().await;
        if m["op"] == "message" || m["op"] == "presence" {
            continue;
        }
        seen.push(m["id"].as_u64().expect("reply carries the id"));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    c.expect_no_message(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn leaving_a_room_not_joined_is_acked() {
    let s = TestServer::start().await;
    let mut c = s.client("/ws").await;
    let ack = c.request(json!({"op":"leave","room":"never"})).await;
    assert_eq!(ack["op"], "ack");
    assert_eq!(ack["room"], "never");
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_connection_stays_open() {
    let s = TestServer::start().await;
    let mut c = s.client("/ws").await;
    let cases: &[(&str, &str)] = &[
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1,2,3]", "bad_request"),
        ("42", "bad_request"),
        (r#"{"room":"r"}"#, "bad_request"),
        (r#"{"op":7}"#, "bad_request"),
        (r#"{"op":"teleport"}"#, "unknown_op"),
        (r#"{"op":"join"}"#, "bad_request"),
        (r#"{"op":"join","room":""}"#, "bad_request"),
        (r#"{"op":"join","room":["r"]}"#, "bad_request"),
        (r#"{"op":"publish","room":"r"}"#, "bad_request"),
        (
            r#"{"op":"publish","room":"r","event":"e","exclude_self":1}"#,
            "bad_request",
        ),
        (r#"{"op":"send","event":"e"}"#, "bad_request"),
        (r#"{"op":"join","room":"r","history":"all"}"#, "bad_request"),
        (r#"{"op":"ping","id":"seven"}"#, "bad_request"),
        (r#"{"op":"ping","id":-4}"#, "bad_request"),
    ];
    for (frame, code) in cases {
        c.send_text(frame).await;
        let e = c.recv().await;
        assert_eq!(e["op"], "error", "frame {frame:?} → {e}");
        assert_eq!(e["code"], *code, "frame {frame:?} → {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    // A mistyped field keeps the id so the client can match the error.
    let e = c.request(json!({"op":"join","room":5})).await;
    assert_eq!(
        (e["op"].clone(), e["code"].clone()),
        (json!("error"), json!("bad_request"))
    );
    // A binary frame on /ws is a bad request, not a disconnect.
    c.ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    let e = c.recv().await;
    assert_eq!(e["code"], "bad_request");
    // Still open and working.
    let pong = c.request(json!({"op":"ping"})).await;
    assert_eq!(pong["op"], "pong");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    let s = TestServer::start().await;
    let mut bystander = s.user("b").await;
    bystander.join("r").await;
    let mut c = s.client("/ws").await;
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let frame = Frame::from_payload(header, vec![0xff, 0xfe, b'{'].into());
    c.ws.send(WsMessage::Frame(frame)).await.unwrap();
    let (code, _) = c.expect_close().await;
    assert_eq!(code, 1007);
    // Others are unaffected.
    let mut p = s.user("p").await;
    p.request(json!({"op":"publish","room":"r","event":"e","data":1}))
        .await;
    assert_eq!(bystander.recv_message().await["data"], 1);
}

#[tokio::test]
async fn custom_ops_reach_registered_handlers() {
    let s = TestServer::start().await;
    s.hub().on_op("shout", |call| async move {
        let text = call.frame["text"].as_str().unwrap_or("").to_uppercase();
        call.hub
            .to_all()
            .from(call.conn.user_arc())
            .emit("shout", json!(text))?;
        Ok(Some(json!({"shouted": text})))
    });
    s.hub().on_op("fail", |_call| async move {
        Err(hubbub::HubError::new(
            hubbub::ErrorCode::Forbidden,
            "not today",
        ))
    });
    let mut a = s.user("a").await;
    let mut b = s.user("b").await;
    let ack = a.request(json!({"op":"shout","text":"hey"})).await;
    assert_eq!(ack["op"], "ack");
    assert_eq!(ack["shouted"], "HEY");
    assert_eq!(b.recv_message().await["data"], "HEY");
    let e = a.request(json!({"op":"fail"})).await;
    assert_eq!(
        (e["code"].clone(), e["message"].clone()),
        (json!("forbidden"), json!("not today"))
    );
}

#[tokio::test]
async fn echo_route_returns_text_and_binary() {
    let s = TestServer::start().await;
    let mut c = common::Client::connect(&s.ws_url("/ws/echo")).await;
    c.ws.send(WsMessage::text("hello")).await.unwrap();
    c.ws.send(WsMessage::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    use futures_util::StreamExt;
    let m = c.ws.next().await.unwrap().unwrap();
    assert_eq!(m, WsMessage::text("hello"));
    let m = c.ws.next().await.unwrap().unwrap();
    assert_eq!(m, WsMessage::binary(vec![0u8, 1, 2, 255]));
}
