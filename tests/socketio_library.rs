//! The Socket.IO server API of the library, driven by raw Engine.IO-over-WebSocket clients:
//! catch-all handlers, broadcasts that leave the sender or a room out, broadcast acks that
//! collect every answer, fetching and disconnecting sockets, the handshake, CORS.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use hubbub::sio::{Args, SioConfig, SocketIo, SocketRef};
use hubbub::Hubbub;
use serde_json::{json, Value};

struct Sio {
    ws: common::Ws,
    sid: String,
}

impl Sio {
    async fn connect(s: &TestServer, query: &str) -> Self {
        let url = s.ws_url(&format!("/socket.io/?EIO=4&transport=websocket{query}"));
        let mut c = common::Client::connect(&url).await;
        let open = c.ws.next().await.unwrap().unwrap();
        assert!(open.to_text().unwrap().starts_with('0'));
        c.ws.send(WsMessage::text("40")).await.unwrap();
        let connect = c.ws.next().await.unwrap().unwrap();
        let text = connect.to_text().unwrap().to_string();
        assert!(text.starts_with("40"), "{text}");
        let sid = serde_json::from_str::<Value>(&text[2..]).unwrap()["sid"]
            .as_str()
            .unwrap()
            .to_string();
        // The notification service's unread count follows the CONNECT in `/`.
        let unread = c.ws.next().await.unwrap().unwrap();
        assert_eq!(unread.to_text().unwrap(), r#"42["unread",{"count":0}]"#);
        Self { ws: c.ws, sid }
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(WsMessage::text(text)).await.unwrap();
    }

    /// The next Socket.IO packet text (pings answered and `presence` events skipped on the
    /// way: rooms announce joins by default).
    async fn next(&mut self) -> String {
        loop {
            let m = tokio::time::timeout(common::WAIT, self.ws.next())
                .await
                .expect("a packet")
                .expect("open")
                .expect("valid");
            let t = m.to_text().unwrap().to_string();
            if t == "2" {
                self.send("3").await;
                continue;
            }
            if t.starts_with(r#"42["presence""#) {
                continue;
            }
            return t;
        }
    }

    async fn expect_nothing(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            let t = m.to_text().unwrap_or_default();
            assert!(t.starts_with(r#"42["presence""#), "unexpected {m:?}");
        }
    }
}

async fn server(io_setup: impl FnOnce(&SocketIo)) -> (TestServer, SocketIo) {
    let hubbub = Hubbub::new(common::config(&[]));
    let io = SocketIo::new(hubbub.hub().clone(), SioConfig::default());
    io_setup(&io);
    let app = io.routes().merge(hubbub.api_routes());
    (TestServer::serve(hubbub, app).await, io)
}

#[tokio::test]
async fn catch_all_and_sender_exclusion() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let (s, _io) = server(move |io| {
        io.ns("/", move |socket: SocketRef| {
            let seen = s2.clone();
            socket.on_any(move |s, event, args, _| {
                seen.lock()
                    .unwrap()
                    .push((event.to_string(), args.values.clone()));
                let _ = s.join("r");
                let _ = s.to("r").emit_args("relay", args);
            });
        });
    })
    .await;
    let mut a = Sio::connect(&s, "").await;
    let mut b = Sio::connect(&s, "").await;
    b.send(r#"42["hello"]"#).await; // b joins r
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.send(r#"42["anything",1,{"x":2}]"#).await;
    assert_eq!(b.next().await, r#"42["relay",1,{"x":2}]"#);
    a.expect_nothing(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[1],
        ("anything".to_string(), vec![json!(1), json!({"x": 2})])
    );
}

#[tokio::test]
async fn broadcast_acks_collect_every_answer_and_except_skips_a_room() {
    let (s, io) = server(|io| {
        io.ns("/", |socket: SocketRef| {
            let room = socket.handshake().unwrap().query().get("room").cloned();
            if let Some(room) = room {
                let _ = socket.join(&room);
            }
        });
    })
    .await;
    let mut a = Sio::connect(&s, "&room=red").await;
    let mut b = Sio::connect(&s, "&room=red").await;
    let mut c = Sio::connect(&s, "&room=blue").await;
    let ns = io.of("/").unwrap();
    // Everyone but `blue`.
    ns.broadcast().except("blue").emit("hi", json!(1)).unwrap();
    assert_eq!(a.next().await, r#"42["hi",1]"#);
    assert_eq!(b.next().await, r#"42["hi",1]"#);
    c.expect_nothing(Duration::from_millis(100)).await;
    // Ask red and collect both answers (each client answers its ack id).
    let ask = tokio::spawn({
        let ns = ns.clone();
        async move {
            ns.to("red")
                .timeout(Duration::from_secs(5))
                .emit_with_ack("q", Args::one(json!("?")))
                .await
        }
    });
    for (client, answer) in [(&mut a, 10), (&mut b, 20)] {
        let p = client.next().await;
        let id: String = p[2..].chars().take_while(|c| c.is_ascii_digit()).collect();
        assert_eq!(&p[2 + id.len()..], r#"["q","?"]"#);
        client.send(&format!("43{id}[{answer}]")).await;
    }
    let mut answers: Vec<i64> = ask
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().values[0].as_i64().unwrap())
        .collect();
    answers.sort();
    assert_eq!(answers, vec![10, 20]);
    // One that never answers times out.
    let res = ns
        .to("blue")
        .timeout(Duration::from_millis(100))
        .emit_with_ack("q", Args::one(json!("?")))
        .await;
    assert_eq!(res.len(), 1);
    assert!(res[0].is_err());
    let _ = c.next().await;
}

#[tokio::test]
async fn fetch_and_disconnect_sockets_and_the_handshake() {
    let (s, io) = server(|io| {
        io.ns("/", |socket: SocketRef| {
            let _ = socket.join("all");
        });
    })
    .await;
    let mut a = Sio::connect(&s, "&tag=first").await;
    let b = Sio::connect(&s, "").await;
    let ns = io.of("/").unwrap();
    let mut ids: Vec<String> = ns
        .to("all")
        .fetch_sockets()
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    ids.sort();
    let mut want = vec![a.sid.clone(), b.sid.clone()];
    want.sort();
    assert_eq!(ids, want);
    let first = ns.socket(&a.sid).unwrap();
    let hs = first.handshake().unwrap();
    assert_eq!(hs.query().get("tag").map(String::as_str), Some("first"));
    // The request's headers, without those that only negotiated the upgrade.
    assert!(hs.headers.contains_key("host"));
    assert!(!hs.headers.contains_key("sec-websocket-key"));
    assert!(hs.address.unwrap().ip().is_loopback());
    // to(socket id) reaches just that socket.
    ns.to(&a.sid).emit("just-you", json!(true)).unwrap();
    assert_eq!(a.next().await, r#"42["just-you",true]"#);
    // Disconnect every socket of the room: a namespace DISCONNECT each.
    ns.to("all").disconnect_sockets(false);
    assert_eq!(a.next().await, "41");
    assert!(ns.sockets().is_empty());
    assert_eq!(s.hub().connection_count(), 0);
}

#[tokio::test]
async fn polling_answers_cross_origin_requests() {
    let (s, _io) = server(|io| {
        io.ns("/", |_| {});
    })
    .await;
    let r = reqwest::Client::new()
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let pre = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            s.url("/socket.io/?EIO=4&transport=polling"),
        )
        .header("origin", "http://app.example")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status().as_u16(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-headers"],
        "content-type"
    );
}

#[tokio::test]
async fn shutdown_closes_socketio_websockets_with_1001() {
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r2 = reasons.clone();
    let (s, _io) = server(move |io| {
        io.ns("/", move |socket: SocketRef| {
            let r = r2.clone();
            socket.on_disconnect(move |_, reason| r.lock().unwrap().push(reason.as_str()));
        });
    })
    .await;
    let mut a = Sio::connect(&s, "").await;
    s.shutdown().await;
    let code = loop {
        match tokio::time::timeout(common::WAIT, a.ws.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
    assert_eq!(*reasons.lock().unwrap(), vec!["server shutting down"]);
}

/// The JSON of a packet's arguments (`42["e",...]`, `43n[...]`, `42/ns,[...]`).
fn args_of(packet: &str) -> Value {
    let at = packet.find('[').expect("arguments");
    serde_json::from_str(&packet[at..]).unwrap()
}

#[tokio::test]
async fn mapped_events_forward_data_as_sent_and_fall_back_for_anything_unusual() {
    let s = TestServer::start().await;
    let mut a = Sio::connect(&s, "").await;
    let mut b = Sio::connect(&s, "").await;
    let to_b = format!("anon-{}", b.sid);
    let data = r#"{"s":"é\"\u00e9","n":[1,2.5e-3]}"#;
    // The raw path: `data` reaches the recipient as the bytes the sender wrote.
    a.send(&format!(
        r#"421["send",{{"to":"{to_b}","event":"dm","data":{data}}}]"#
    ))
    .await;
    let got = b.next().await;
    assert!(
        got.starts_with(&format!(r#"42["dm",{data},{{"from":"anon-"#)),
        "{got}"
    );
    assert_eq!(
        args_of(&a.next().await),
        json!([{"ok": true, "delivered": 1}])
    );
    // Anything unusual takes the general path (the data is parsed and written again), and
    // still works: an escaped event name, an escaped recipient, a second argument.
    let escaped_to = format!("\\u0061{}", &to_b[1..]);
    for (n, packet) in [
        format!(r#"["s\u0065nd",{{"to":"{to_b}","event":"dm","data":{data}}}]"#),
        format!(r#"["send",{{"to":"{escaped_to}","event":"dm","data":{data}}}]"#),
        format!(r#"["send",{{"to":"{to_b}","event":"dm","data":{data}}},"more"]"#),
    ]
    .iter()
    .enumerate()
    {
        a.send(&format!("42{}{packet}", n + 2)).await;
        let got = b.next().await;
        assert_eq!(
            args_of(&got)[1],
            json!({"s": "é\"é", "n": [1, 0.0025]}),
            "{got}"
        );
        assert!(got.contains(r#""s":"é\"é""#), "written again: {got}");
        let ack = a.next().await;
        assert!(ack.starts_with(&format!("43{}", n + 2)), "{ack}");
        assert_eq!(args_of(&ack), json!([{"ok": true, "delivered": 1}]));
    }
    // A malformed field is answered as before.
    a.send(r#"427["send",{"to":5,"event":"e"}]"#).await;
    let ack = args_of(&a.next().await);
    assert_eq!(ack[0]["code"], "bad_request", "{ack}");

    // publish: flags read on the raw path; a flag that is not a boolean falls back (and
    // counts as false, as it always did).
    for c in [&mut a, &mut b] {
        c.send(r#"428["join",{"room":"r"}]"#).await;
        assert_eq!(args_of(&c.next().await)[0]["ok"], true);
    }
    a.send(r#"429["publish",{"room":"r","event":"e","data":{"k":"\u00e9"},"exclude_self":true}]"#)
        .await;
    let got = b.next().await;
    assert!(got.starts_with(r#"42["e",{"k":"\u00e9"},"#), "{got}");
    assert_eq!(args_of(&a.next().await), json!([{"ok": true, "seq": 1}]));
    a.send(r#"4210["publish",{"room":"r","event":"e","data":{"k":"\u00e9"},"exclude_self":1}]"#)
        .await;
    for c in [&mut a, &mut b] {
        let got = c.next().await;
        assert!(got.starts_with(r#"42["e",{"k":"é"},"#), "{got}");
    }
    assert_eq!(args_of(&a.next().await), json!([{"ok": true, "seq": 2}]));
    b.expect_nothing(Duration::from_millis(100)).await;

    // Another namespace, with an ack id.
    a.send("40/chat,").await;
    assert!(a.next().await.starts_with("40/chat,"));
    a.send(r#"42/chat,11["publish",{"room":"q","event":"e","data":1}]"#)
        .await;
    let ack = a.next().await;
    assert!(ack.starts_with("43/chat,11["), "{ack}");
    assert_eq!(args_of(&ack), json!([{"ok": true, "seq": 1}]));

    // A placeholder in a plain event breaks the protocol, on either path: closed.
    a.send(&format!(
        r#"42["send",{{"to":"{to_b}","event":"e","data":{{"_placeholder":true,"num":0}}}}]"#
    ))
    .await;
    let end = tokio::time::timeout(common::WAIT, async {
        loop {
            match a.ws.next().await {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the session was not closed");
    b.expect_nothing(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn an_application_handler_replaces_the_raw_path_of_a_mapped_event() {
    let (s, _io) = server(|io| {
        let ns = io.ns("/", |socket: SocketRef| {
            // A socket's own handler comes first.
            socket.on("publish", |s, args, _| {
                s.emit("own", args.values[0].clone())
            });
        });
        hubbub::sio::install_hub_events(&ns);
        // A namespace handler given later replaces the mapped one, raw path included.
        ns.on("send", |s, args, _| {
            s.emit("custom", args.values[0].clone())
        });
    })
    .await;
    let mut a = Sio::connect(&s, "").await;
    a.send(r#"42["send",{"to":"nobody","event":"e","data":1}]"#)
        .await;
    assert_eq!(
        a.next().await,
        r#"42["custom",{"data":1,"event":"e","to":"nobody"}]"#
    );
    a.send(r#"42["publish",{"room":"r","event":"e","data":1}]"#)
        .await;
    assert_eq!(
        a.next().await,
        r#"42["own",{"data":1,"event":"e","room":"r"}]"#
    );
}
