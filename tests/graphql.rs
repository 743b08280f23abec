//! GraphQL over WebSocket at `/graphql` against a real server on loopback, with an
//! independent WebSocket client speaking both subprotocols by hand: subscriptions receive
//! what v1 clients and the HTTP API publish, in order, with the fields selected; queries and
//! mutations run as operations; every malformed message gets its protocol's error, and the
//! server keeps serving.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// A GraphQL WebSocket client of subprotocol `protocol`.
struct Gql {
    ws: Ws,
}

impl Gql {
    async fn connect(server: &TestServer, path: &str, protocol: &str) -> Self {
        let mut req = server.ws_url(path).into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (ws, response) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol,
            "the server selects the offered subprotocol"
        );
        Self { ws }
    }

    /// Connects and completes `connection_init` as `user` (auth mode `none`).
    async fn ready(server: &TestServer, protocol: &str, user: &str) -> Self {
        let mut c = Self::connect(server, "/graphql", protocol).await;
        c.send(json!({"type": "connection_init", "payload": {"user": user}}))
            .await;
        assert_eq!(c.recv().await, json!({"type": "connection_ack"}));
        c
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::text(t)).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .unwrap();
            match m {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The close code the server ends the connection with.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close in time");
            match m {
                Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("{e}"),
            }
        }
    }

    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("unexpected {t}");
        }
    }
}

/// `GET path`'s JSON body.
async fn get_json(server: &TestServer, path: &str) -> Value {
    server.get(path).await.1
}

/// Polls `check` every 20 ms for up to 5 s.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that `m` is the `error` of operation `id`; its first error's code, if any.
fn error_of(m: &Value, id: &str) -> Value {
    assert_eq!(
        (m["type"].clone(), m["id"].clone()),
        (json!("error"), json!(id)),
        "{m}"
    );
    let first = &m["payload"][0];
    let first = if first.is_null() {
        &m["payload"]
    } else {
        first
    };
    assert!(first["message"].is_string(), "{m}");
    first["extensions"]["code"].clone()
}

fn subscribe(kind: &str, id: &str, query: &str, variables: Value) -> Value {
    json!({"type": kind, "id": id, "payload": {"query": query, "variables": variables}})
}

#[tokio::test]
async fn a_subscriber_gets_what_v1_and_the_api_publish_in_order() {
    let server = TestServer::start().await;
    let mut sub = Gql::ready(&server, "graphql-transport-ws", "gina").await;
    sub.send(subscribe(
        "subscribe",
        "s1",
        "subscription ($r: String!) { messages(room: $r) { room event data from seq } }",
        json!({"r": "lobby"}),
    ))
    .await;
    // The subscriber is a member: presence and stats count it as graphql.
    eventually(|| async {
        get_json(&server, "/api/presence/lobby").await["users"] == json!(["gina"])
    })
    .await;
    let stats = get_json(&server, "/api/stats").await;
    assert_eq!(stats["connections"]["graphql"], 1, "{stats}");

    let mut v1 = server.user("victor").await;
    v1.join("lobby").await;
    for i in 0..5 {
        let ack = v1
            .request(json!({"op": "publish", "room": "lobby", "event": "chat", "data": {"n": i}}))
            .await;
        assert_eq!(ack["op"], "ack", "{ack}");
    }
    let (st, _) = server
        .post(
            "/api/push",
            json!({"room": "lobby", "event": "news", "data": "from the api"}),
        )
        .await;
    assert_eq!(st, 200);
    for i in 0..5 {
        let m = sub.recv().await;
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["id"], "s1");
        assert_eq!(
            m["payload"],
            json!({"data": {"messages": {"room": "lobby", "event": "chat", "data": {"n": i}, "from": "victor", "seq": i + 1}}})
        );
    }
    let m = sub.recv().await;
    assert_eq!(m["payload"]["data"]["messages"]["data"], "from the api");
    assert_eq!(m["payload"]["data"]["messages"]["from"], Value::Null);

    // Completed: nothing more, and the room is left.
    sub.send(json!({"type": "complete", "id": "s1"})).await;
    eventually(|| async {
        get_json(&server, "/api/presence/lobby").await["users"] == json!(["victor"])
    })
    .await;
    v1.request(json!({"op": "publish", "room": "lobby", "event": "chat", "data": 9}))
        .await;
    sub.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn subscribers_of_one_selection_share_one_payload() {
    let server = TestServer::start().await;
    let query = "subscription { messages(room: \"r\") { data seq } }";
    let mut a = Gql::ready(&server, "graphql-transport-ws", "a").await;
    let mut b = Gql::ready(&server, "graphql-ws", "b").await;
    let mut other = Gql::ready(&server, "graphql-transport-ws", "c").await;
    a.send(subscribe("subscribe", "1", query, Value::Null))
        .await;
    b.send(subscribe("start", "7", query, Value::Null)).await;
    other
        .send(subscribe(
            "subscribe",
            "x",
            "subscription { messages(room: \"r\") { mine: data __typename } }",
            Value::Null,
        ))
        .await;
    eventually(|| async { get_json(&server, "/api/presence/r").await["count"] == 3 }).await;
    let (_, body) = server
        .post(
            "/api/push",
            json!({"room": "r", "event": "e", "data": [1, 2]}),
        )
        .await;
    assert_eq!(body["delivered"], 3, "{body}");
    let (ma, mb, mo) = (a.recv().await, b.recv().await, other.recv().await);
    assert_eq!(ma["type"], "next");
    assert_eq!(mb["type"], "data", "the legacy protocol's result");
    assert_eq!(mb["id"], "7");
    assert_eq!(ma["payload"], mb["payload"]);
    assert_eq!(
        ma["payload"],
        json!({"data": {"messages": {"data": [1, 2], "seq": 1}}})
    );
    assert_eq!(
        mo["payload"],
        json!({"data": {"messages": {"mine": [1, 2], "__typename": "Message"}}})
    );
}

#[tokio::test]
async fn direct_messages_notifications_and_presence() {
    let server = TestServer::start().await;
    let mut g = Gql::ready(&server, "graphql-transport-ws", "gus").await;
    g.send(subscribe(
        "subscribe",
        "d",
        "subscription { direct { event data from to } }",
        Value::Null,
    ))
    .await;
    g.send(subscribe(
        "subscribe",
        "n",
        "subscription { notifications { id event data read } }",
        Value::Null,
    ))
    .await;
    g.send(subscribe(
        "subscribe",
        "p",
        "subscription { presence(room: \"hall\") { room user joined count } }",
        Value::Null,
    ))
    .await;
    eventually(|| async { get_json(&server, "/api/presence/hall").await["count"] == 1 }).await;
    let mut ann = server.user("ann").await;
    let ack = ann
        .request(json!({"op": "send", "to": "gus", "event": "dm", "data": "psst"}))
        .await;
    assert_eq!(ack["delivered"], 1, "{ack}");
    let m = g.recv().await;
    assert_eq!(m["id"], "d");
    assert_eq!(
        m["payload"]["data"]["direct"],
        // `to` names the addressee of messages kept in a conversation (`dm_history`) only.
        json!({"event": "dm", "data": "psst", "from": "ann", "to": null})
    );
    let (st, body) = server
        .post(
            "/api/notify",
            json!({"to": "gus", "event": "hello", "data": {"x": 1}}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let m = g.recv().await;
    assert_eq!(m["id"], "n");
    let n = &m["payload"]["data"]["notifications"];
    assert_eq!(
        (n["event"].clone(), n["data"].clone(), n["read"].clone()),
        (json!("hello"), json!({"x": 1}), json!(false))
    );
    assert_eq!(n["id"], body["id"]);
    ann.join("hall").await;
    let m = g.recv().await;
    assert_eq!(m["id"], "p");
    assert_eq!(
        m["payload"]["data"]["presence"],
        json!({"room": "hall", "user": "ann", "joined": true, "count": 2})
    );
}

#[tokio::test]
async fn queries_and_mutations_run_as_operations() {
    let server = TestServer::start().await;
    let mut watcher = server.user("wes").await;
    watcher.join("board").await;
    let mut g = Gql::ready(&server, "graphql-transport-ws", "gil").await;
    g.send(subscribe(
        "subscribe",
        "m",
        "mutation { publish(room: \"board\", event: \"note\", data: {text: \"hi\"}) { delivered seq } }",
        Value::Null,
    ))
    .await;
    let m = g.recv().await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(
        m["payload"]["data"]["publish"],
        json!({"delivered": 1, "seq": 1})
    );
    assert_eq!(g.recv().await, json!({"type": "complete", "id": "m"}));
    let got = watcher.recv_message().await;
    assert_eq!(
        (got["data"].clone(), got["from"].clone()),
        (json!({"text": "hi"}), json!("gil"))
    );

    g.send(subscribe(
        "subscribe",
        "q",
        "query { rooms { name members } history(room: \"board\") { data from seq } }",
        Value::Null,
    ))
    .await;
    let m = g.recv().await;
    let data = &m["payload"]["data"];
    assert_eq!(
        data["rooms"],
        json!([{"name": "board", "members": 1}]),
        "{m}"
    );
    assert_eq!(
        data["history"],
        json!([{"data": {"text": "hi"}, "from": "gil", "seq": 1}])
    );
    assert_eq!(g.recv().await["type"], "complete");
    // A query over the depth limit is refused by the schema.
    // Twelve levels of nesting, over the limit of 10.
    let deep = format!(
        "query {{ __schema {{ types {{ fields {{ type {}name{} }} }} }} }}",
        "{ ofType ".repeat(8),
        " }".repeat(8)
    );
    g.send(subscribe("subscribe", "deep", &deep, Value::Null))
        .await;
    // Refused before it ran: the protocol's `error`, with the schema's message, and the
    // connection goes on.
    let m = g.recv().await;
    assert_eq!(
        (m["type"].clone(), m["id"].clone()),
        (json!("error"), json!("deep")),
        "{m}"
    );
    assert!(
        m["payload"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nested too deep"),
        "{m}"
    );
}

#[tokio::test]
async fn protocol_errors_close_graphql_transport_ws_with_its_codes() {
    let server = TestServer::start().await;
    // Bad JSON, an unknown type, a message that is no object: 4400.
    for bad in [r#"{"type":"#, r#"{"type":"start","id":"1"}"#, r#"[1]"#] {
        let mut c = Gql::ready(&server, "graphql-transport-ws", "e").await;
        c.send_text(bad).await;
        assert_eq!(c.closed().await.0, 4400, "{bad}");
    }
    // An operation before connection_init: 4401.
    let mut c = Gql::connect(&server, "/graphql", "graphql-transport-ws").await;
    c.send(subscribe(
        "subscribe",
        "1",
        "{ rooms { name } }",
        Value::Null,
    ))
    .await;
    assert_eq!(c.closed().await.0, 4401);
    // A second connection_init: 4429.
    let mut c = Gql::ready(&server, "graphql-transport-ws", "e").await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(c.closed().await.0, 4429);
    // A duplicate id of a live subscription: 4409.
    let mut c = Gql::ready(&server, "graphql-transport-ws", "e").await;
    let q = "subscription { messages(room: \"dup\") { data } }";
    c.send(subscribe("subscribe", "same", q, Value::Null)).await;
    c.send(subscribe("subscribe", "same", q, Value::Null)).await;
    let (code, reason) = c.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (4409, "Subscriber for same already exists")
    );
    // An invalid document is an error for that operation, not a close.
    let mut c = Gql::ready(&server, "graphql-transport-ws", "e").await;
    for (id, q) in [
        ("a", "subscription { nothing { data } }"),
        ("b", "subscription { messages(room: 5) { data } }"),
        ("c", "subscription { messages { data } }"),
        ("d", "not graphql"),
        ("e", "subscription { direct { data } notifications { id } }"),
    ] {
        c.send(subscribe("subscribe", id, q, Value::Null)).await;
        let m = c.recv().await;
        assert_eq!(error_of(&m, id), "bad_request", "{m}");
    }
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn the_legacy_protocol_answers_errors_and_goes_on() {
    let server = TestServer::start().await;
    let mut c = Gql::connect(&server, "/graphql", "graphql-ws").await;
    c.send(subscribe(
        "start",
        "1",
        "subscription { direct { data } }",
        Value::Null,
    ))
    .await;
    let m = c.recv().await;
    assert_eq!(error_of(&m, "1"), "unauthorized", "{m}");
    c.send(json!({"type": "connection_init", "payload": {"user": "leo"}}))
        .await;
    assert_eq!(c.recv().await["type"], "connection_ack");
    for bad in [r#"{"type":"#, r#"{"type":"subscribe","id":"1"}"#] {
        c.send_text(bad).await;
        let m = c.recv().await;
        assert_eq!(m["type"], "error", "{m}");
        assert!(m["payload"]["message"].is_string(), "{m}");
    }
    // A start with the id of a live operation replaces it.
    c.send(subscribe(
        "start",
        "1",
        "subscription { messages(room: \"a\") { data } }",
        Value::Null,
    ))
    .await;
    c.send(subscribe(
        "start",
        "1",
        "subscription { messages(room: \"b\") { data } }",
        Value::Null,
    ))
    .await;
    eventually(|| async {
        get_json(&server, "/api/presence/b").await["count"] == 1
            && get_json(&server, "/api/presence/a").await["users"]
                .as_array()
                .is_none_or(Vec::is_empty)
    })
    .await;
    server
        .post("/api/push", json!({"room": "b", "event": "e", "data": 1}))
        .await;
    let m = c.recv().await;
    assert_eq!(
        (m["type"].clone(), m["id"].clone()),
        (json!("data"), json!("1")),
        "{m}"
    );
    c.send(json!({"type": "connection_terminate"})).await;
    assert_eq!(c.closed().await.0, 1000);
}

#[tokio::test]
async fn an_upgrade_without_a_graphql_subprotocol_is_refused() {
    let server = TestServer::start().await;
    let mut req = server.ws_url("/graphql").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "chat".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
}

mod jwt {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const SECRET: &str = "a test secret, long enough for HS256";

    fn token(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    async fn init(server: &TestServer, payload: Value) -> Gql {
        let mut c = Gql::connect(server, "/graphql", "graphql-transport-ws").await;
        c.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        c
    }

    #[tokio::test]
    async fn rights_come_from_the_token_in_connection_init() {
        let server = TestServer::with(&[("auth", "jwt"), ("jwt_secret", SECRET)]).await;
        // No token, a forged one: 4403.
        let mut c = init(&server, json!({})).await;
        assert_eq!(c.closed().await.0, 4403);
        let forged = format!("{}x", token(json!({"sub": "kim", "exp": now() + 60})));
        let mut c = init(&server, json!({"token": forged})).await;
        assert_eq!(c.closed().await.0, 4403);

        let t = token(json!({"sub": "kim", "exp": now() + 60, "rooms": {"news": ["join"]}}));
        let mut c = init(&server, json!({"token": t})).await;
        assert_eq!(c.recv().await["type"], "connection_ack");
        c.send(subscribe(
            "subscribe",
            "ok",
            "subscription { messages(room: \"news\") { data } }",
            Value::Null,
        ))
        .await;
        c.send(subscribe(
            "subscribe",
            "no",
            "subscription { messages(room: \"secret\") { data } }",
            Value::Null,
        ))
        .await;
        let m = c.recv().await;
        assert_eq!(error_of(&m, "no"), "forbidden", "{m}");
        c.send(subscribe(
            "subscribe",
            "pub",
            "mutation { publish(room: \"news\", event: \"e\", data: 1) { seq } }",
            Value::Null,
        ))
        .await;
        // A mutation that produced nothing ends with the protocol's `error`.
        let m = c.recv().await;
        assert_eq!(error_of(&m, "pub"), "forbidden", "{m}");
        eventually(|| async {
            get_json(&server, "/api/presence/news").await["users"] == json!(["kim"])
        })
        .await;
        server
            .post(
                "/api/push",
                json!({"room": "news", "event": "e", "data": 2}),
            )
            .await;
        let m = c.recv().await;
        assert_eq!(
            (
                m["id"].clone(),
                m["payload"]["data"]["messages"]["data"].clone()
            ),
            (json!("ok"), json!(2))
        );
    }

    #[tokio::test]
    async fn an_expired_token_closes_with_4401() {
        let server = TestServer::with(&[("auth", "jwt"), ("jwt_secret", SECRET)]).await;
        let t = token(json!({"sub": "eve", "exp": now() + 2}));
        let mut c = init(&server, json!({"token": t})).await;
        assert_eq!(c.recv().await["type"], "connection_ack");
        let (code, _) = tokio::time::timeout(Duration::from_secs(8), c.closed())
            .await
            .expect("closed once the token expired");
        assert_eq!(code, 4401);
    }
}

/// `POST /graphql` with `body`: the status and the JSON answer.
async fn post_graphql(
    server: &TestServer,
    path: &str,
    body: &str,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn queries_and_mutations_over_http_and_the_explorer_page() {
    let server = TestServer::start().await;
    let mut watcher = server.user("walt").await;
    watcher.join("wall").await;
    let (st, body) = post_graphql(
        &server,
        "/graphql?user=pat",
        &json!({"query": "mutation ($d: JSON) { publish(room: \"wall\", event: \"post\", data: $d) { delivered seq } }", "variables": {"d": [1, "x"]}}).to_string(),
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["publish"], json!({"delivered": 1, "seq": 1}));
    let m = watcher.recv_message().await;
    assert_eq!(
        (m["data"].clone(), m["from"].clone()),
        (json!([1, "x"]), json!("pat"))
    );
    let (_, body) = post_graphql(
        &server,
        "/graphql",
        r#"{"query": "{ rooms { name members } }"}"#,
        None,
    )
    .await;
    assert_eq!(
        body["data"]["rooms"],
        json!([{"name": "wall", "members": 1}])
    );
    // Subscriptions need a WebSocket; a body that is no request is a 400.
    for bad in [
        r#"{"query": "subscription { direct { data } }"}"#,
        r#"{"query": 5}"#,
        "{",
    ] {
        let (st, body) = post_graphql(&server, "/graphql", bad, None).await;
        assert_eq!(st, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    // A form or text/plain POST (which any page may send) runs nothing.
    let r = reqwest::Client::new()
        .post(server.url("/graphql?user=pat"))
        .header("content-type", "text/plain")
        .body(r#"{"query": "mutation { publish(room: \"wall\", event: \"x\") { seq } }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    watcher.expect_no_message(Duration::from_millis(200)).await;
    // A private room is not listed to a caller without a grant for it.
    let (st, _) = server
        .post("/api/rooms", json!({"name": "vault", "private": true}))
        .await;
    assert_eq!(st, 201);
    let (_, body) = post_graphql(
        &server,
        "/graphql",
        r#"{"query": "{ rooms { name } room(name: \"vault\") { name } }"}"#,
        None,
    )
    .await;
    assert_eq!(
        body["data"],
        json!({"rooms": [{"name": "wall"}], "room": null}),
        "{body}"
    );
    // A browser gets the explorer, whose script is served too; nothing comes from elsewhere.
    let page = reqwest::get(server.url("/graphql")).await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("GraphQL explorer") && html.contains("src=\"/graphql.js\""));
    assert!(!html.contains("https://"), "no asset from another site");
    let js = reqwest::get(server.url("/graphql.js")).await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.text().await.unwrap().contains("graphql-transport-ws"));
}

#[tokio::test]
async fn http_requests_carry_their_credentials() {
    use jsonwebtoken::{EncodingKey, Header};
    const SECRET: &str = "a test secret, long enough for HS256";
    let server = TestServer::with(&[("auth", "jwt"), ("jwt_secret", SECRET)]).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let token = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "ola", "exp": exp, "rooms": {"open": ["join", "publish"]}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let publish = |room: &str| {
        json!({"query": format!("mutation {{ publish(room: \"{room}\", event: \"e\") {{ seq }} }}")}).to_string()
    };
    let (st, body) = post_graphql(&server, "/graphql", &publish("open"), None).await;
    assert_eq!(st, 401, "{body}");
    let (st, body) = post_graphql(&server, "/graphql", &publish("open"), Some(&token)).await;
    assert_eq!(st, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    let (_, body) = post_graphql(&server, "/graphql", &publish("closed"), Some(&token)).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "forbidden",
        "{body}"
    );
}

#[tokio::test]
async fn a_flood_is_refused_then_closed_with_4429() {
    let server = TestServer::with(&[("rate_messages", "5")]).await;
    let mut c = Gql::ready(&server, "graphql-transport-ws", "flo").await;
    // The burst (two seconds' worth) passes.
    for _ in 0..10 {
        c.send(json!({"type": "ping"})).await;
    }
    for _ in 0..10 {
        assert_eq!(c.recv().await, json!({"type": "pong"}));
    }
    c.send(subscribe(
        "subscribe",
        "late",
        "subscription { direct { data } }",
        Value::Null,
    ))
    .await;
    let m = c.recv().await;
    assert_eq!(m["id"], "late");
    assert_eq!(m["payload"][0]["extensions"]["code"], "rate_limited", "{m}");
    for _ in 0..40 {
        c.send(json!({"type": "ping"})).await;
    }
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (4429, "rate limit exceeded"));
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_are_refused() {
    let server = TestServer::with(&[("graphql_max_subscriptions", "2")]).await;
    let mut c = Gql::ready(&server, "graphql-transport-ws", "lim").await;
    for id in ["1", "2", "3"] {
        c.send(subscribe(
            "subscribe",
            id,
            "subscription { direct { data } }",
            Value::Null,
        ))
        .await;
    }
    let m = c.recv().await;
    assert_eq!(error_of(&m, "3"), "limit", "{m}");
    // Completing one makes room again.
    c.send(json!({"type": "complete", "id": "1"})).await;
    c.send(subscribe(
        "subscribe",
        "4",
        "subscription { direct { data } }",
        Value::Null,
    ))
    .await;
    // A round trip: what was sent before it is in place.
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong"}));
    let (st, body) = server
        .post("/api/push", json!({"to": "lim", "event": "e", "data": 5}))
        .await;
    assert_eq!((st, body["delivered"].clone()), (200, json!(1)), "{body}");
    let mut ids = vec![c.recv().await["id"].clone(), c.recv().await["id"].clone()];
    ids.sort_by_key(|v| v.to_string());
    assert_eq!(ids, vec![json!("2"), json!("4")]);
}

#[tokio::test]
async fn a_message_over_max_payload_closes_with_1009() {
    let server = TestServer::with(&[("max_payload", "1KiB")]).await;
    let mut c = Gql::ready(&server, "graphql-transport-ws", "big").await;
    let query = format!(
        "subscription {{ direct {{ data }} }} # {}",
        "x".repeat(2000)
    );
    c.send(subscribe("subscribe", "1", &query, Value::Null))
        .await;
    assert_eq!(c.closed().await.0, 1009);
}

#[tokio::test]
async fn an_emit_to_several_rooms_reaches_each_rooms_subscribers() {
    let server = TestServer::start().await;
    let mut g = Gql::ready(&server, "graphql-transport-ws", "mia").await;
    g.send(subscribe(
        "subscribe",
        "m",
        "subscription { messages(room: \"east\") { event data } }",
        Value::Null,
    ))
    .await;
    g.send(subscribe(
        "subscribe",
        "d",
        "subscription { direct { event } }",
        Value::Null,
    ))
    .await;
    eventually(|| async { get_json(&server, "/api/presence/east").await["count"] == 1 }).await;
    // Socket.IO's io.to("east").to("west").emit(...): the message names no room.
    server
        .hubbub
        .io()
        .of("/")
        .unwrap()
        .to("east")
        .to("west")
        .emit("multi", json!({"k": 1}))
        .unwrap();
    let m = g.recv().await;
    assert_eq!(
        m["id"], "m",
        "through its room, not as a direct message: {m}"
    );
    assert_eq!(
        m["payload"]["data"]["messages"],
        json!({"event": "multi", "data": {"k": 1}})
    );
    g.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_conversation_room_is_subscribed_under_its_client_name() {
    let server = TestServer::with(&[("dm_history", "50")]).await;
    let mut g = Gql::ready(&server, "graphql-transport-ws", "bob").await;
    g.send(subscribe(
        "subscribe",
        "c",
        "subscription { messages(room: \"dm:ann\") { event data from seq } }",
        Value::Null,
    ))
    .await;
    g.send(json!({"type": "ping"})).await;
    assert_eq!(g.recv().await, json!({"type": "pong"}));
    let mut ann = server.user("ann").await;
    let ack = ann
        .request(json!({"op": "send", "to": "bob", "event": "dm", "data": "hey"}))
        .await;
    assert_eq!(ack["seq"], 1, "{ack}");
    let m = g.recv().await;
    assert_eq!(m["id"], "c", "{m}");
    assert_eq!(
        m["payload"]["data"]["messages"],
        json!({"event": "dm", "data": "hey", "from": "ann", "seq": 1})
    );
    // Completed: the conversation is left (the room its client name maps onto).
    g.send(json!({"type": "complete", "id": "c"})).await;
    g.send(json!({"type": "ping"})).await;
    assert_eq!(g.recv().await, json!({"type": "pong"}));
    ann.request(json!({"op": "send", "to": "bob", "event": "dm", "data": "again"}))
        .await;
    g.quiet(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn invalid_utf8_closes_1007_and_a_binary_frame_4400() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
    let server = TestServer::start().await;
    let mut c = Gql::ready(&server, "graphql-transport-ws", "u8").await;
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let frame = Frame::from_payload(header, vec![0xff, 0xfe, b'{'].into());
    c.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(c.closed().await.0, 1007);
    let mut c = Gql::ready(&server, "graphql-transport-ws", "bin").await;
    c.ws.send(Message::Binary(br#"{"type":"ping"}"#.to_vec().into()))
        .await
        .unwrap();
    assert_eq!(c.closed().await.0, 4400);
    // The server goes on; its stats and the dashboard's figures count GraphQL connections.
    let mut g = Gql::ready(&server, "graphql-transport-ws", "stay").await;
    g.send(json!({"type": "ping"})).await;
    assert_eq!(g.recv().await, json!({"type": "pong"}));
    eventually(|| async { get_json(&server, "/api/stats").await["connections"]["graphql"] == 1 })
        .await;
    let figures = hubbub::services::dashboard::snapshot(server.hub());
    assert_eq!(figures["connections"]["graphql"], 1, "{figures}");
    assert_eq!(figures["connections"]["total"], 1, "{figures}");
}
