//! Auth mode `jwt` over real sockets: tokens from every place a client can put one,
//! rejection before the upgrade (HTTP 401/403 with the JSON error body, no WebSocket),
//! HS256/RS256/ES256 with pinned algorithms, expiry while connected (4401) and refresh,
//! Socket.IO `auth.token` and `connect_error`, the origin allow-list, and the slowloris
//! timeout on the request headers.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

const SECRET: &str = "a test secret, long enough for HS256";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: Algorithm, claims: Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(
            &std::fs::read(format!("{FIXTURES}/rsa-private.pem")).unwrap(),
        )
        .unwrap(),
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&std::fs::read(format!("{FIXTURES}/ec-private.pem")).unwrap())
                .unwrap()
        }
        other => panic!("no test key for {other:?}"),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap()
}

/// An HS256 token for `sub` that expires in `secs`.
fn token(sub: &str, secs: u64) -> String {
    sign(Algorithm::HS256, json!({"sub": sub, "exp": now() + secs}))
}

async fn jwt_server(extra: &[(&str, &str)]) -> TestServer {
    let mut pairs = vec![("auth", "jwt"), ("jwt_secret", SECRET)];
    pairs.extend_from_slice(extra);
    TestServer::with(&pairs).await
}

/// Opens a WebSocket with extra request headers; `Err` is the HTTP refusal (status, body).
async fn open(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<common::Client, (u16, Value)> {
    let mut req = s.ws_url(path).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(common::Client::from_ws(ws)),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

async fn welcome_user(c: &mut common::Client) -> String {
    let w = c.recv().await;
    assert_eq!(w["op"], "welcome");
    w["user"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_token_is_taken_from_each_place_a_client_can_put_it() {
    let s = jwt_server(&[]).await;
    let t = token("alice", 60);
    let bearer = format!("Bearer {t}");
    let mut c = open(&s, "/ws", &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut c).await, "alice");
    let mut c = open(&s, &format!("/ws?token={t}"), &[]).await.unwrap();
    assert_eq!(welcome_user(&mut c).await, "alice");
    let cookie = format!("theme=dark; hubbub_token={t}");
    let mut c = open(&s, "/ws", &[("cookie", &cookie)]).await.unwrap();
    assert_eq!(welcome_user(&mut c).await, "alice");
    // A browser's `new WebSocket(url, ["bearer", token])`: the server must select `bearer`,
    // or the client fails the connection (tungstenite checks it as a browser does).
    let protocols = format!("bearer, {t}");
    let mut c = open(&s, "/ws", &[("sec-websocket-protocol", &protocols)])
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut c).await, "alice");
    // The token names the user whatever the path says.
    let mut c = open(&s, &format!("/ws/mallory?token={t}"), &[])
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut c).await, "alice");
}

#[tokio::test]
async fn bad_credentials_are_refused_before_the_upgrade() {
    let s = jwt_server(&[
        ("jwt_audience", "hubbub"),
        ("jwt_issuer", "https://id.example"),
    ])
    .await;
    let good = |extra: Value| {
        let mut claims =
            json!({"sub": "bob", "exp": now() + 60, "aud": "hubbub", "iss": "https://id.example"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        sign(Algorithm::HS256, claims)
    };
    let ok = good(json!({}));
    let mut c = open(&s, &format!("/ws?token={ok}"), &[]).await.unwrap();
    assert_eq!(welcome_user(&mut c).await, "bob");

    let forged = {
        let mut parts: Vec<String> = ok.split('.').map(str::to_string).collect();
        parts[2] = sign(Algorithm::HS256, json!({"sub": "x", "exp": 1}))
            .split('.')
            .nth(2)
            .unwrap()
            .to_string();
        parts.join(".")
    };
    let wrong_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "bob", "exp": now() + 60, "aud": "hubbub", "iss": "https://id.example"}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    // `alg: none` with an empty signature.
    let unsigned = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(json!({"sub": "bob", "exp": now() + 60}).to_string())
        )
    };
    let cases = [
        (None, "a token is required"),
        (Some(forged), "bad token signature"),
        (Some(wrong_secret), "bad token signature"),
        (Some(good(json!({"exp": now() - 120}))), "token expired"),
        (
            Some(good(json!({"nbf": now() + 600}))),
            "token not valid yet (nbf)",
        ),
        (
            Some(good(json!({"aud": "another-app"}))),
            "wrong token audience",
        ),
        (
            Some(good(json!({"iss": "https://evil.example"}))),
            "wrong token issuer",
        ),
        (
            Some(sign(
                Algorithm::RS256,
                json!({"sub": "bob", "exp": now() + 60}),
            )),
            "token algorithm RS256 is not accepted",
        ),
        (Some(unsigned), "malformed token"),
        (Some("not.a.jwt".to_string()), "malformed token"),
        (
            Some(good(json!({"sub": ""}))),
            "the token's sub must name a user (1 to 200 bytes)",
        ),
    ];
    for (tok, message) in cases {
        let path = tok.map_or("/ws".to_string(), |t| format!("/ws?token={t}"));
        let (status, body) = open(&s, &path, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("{message}: accepted"));
        assert_eq!(status, 401, "{message}");
        assert_eq!(body["error"]["code"], "unauthorized", "{message}");
        assert_eq!(body["error"]["message"], message);
    }
    assert_eq!(
        s.hub().connection_count(),
        1,
        "no refused request became a connection"
    );
}

#[tokio::test]
async fn rs256_and_es256_verify_with_public_key_files() {
    for (alg, file, other) in [
        (Algorithm::RS256, "rsa-public.pem", Algorithm::ES256),
        (Algorithm::ES256, "ec-public.pem", Algorithm::RS256),
    ] {
        let key = format!("{FIXTURES}/{file}");
        let s = TestServer::with(&[("auth", "jwt"), ("jwt_public_key", &key)]).await;
        let t = sign(alg, json!({"sub": "carol", "exp": now() + 60}));
        let mut c = open(&s, &format!("/ws?token={t}"), &[]).await.unwrap();
        assert_eq!(welcome_user(&mut c).await, "carol");
        // The other family, and an HS256 token signed with the public key's text as the
        // secret (the classic RS/HS confusion), are both refused.
        let t = sign(other, json!({"sub": "carol", "exp": now() + 60}));
        assert_eq!(
            open(&s, &format!("/ws?token={t}"), &[])
                .await
                .err()
                .unwrap()
                .0,
            401
        );
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "carol", "exp": now() + 60}),
            &EncodingKey::from_secret(&std::fs::read(&key).unwrap()),
        )
        .unwrap();
        let (status, body) = open(&s, &format!("/ws?token={confused}"), &[])
            .await
            .err()
            .unwrap();
        assert_eq!(status, 401);
        assert_eq!(
            body["error"]["message"],
            "token algorithm HS256 is not accepted"
        );
    }
}

#[tokio::test]
async fn a_jwks_file_selects_the_key_by_kid() {
    let jwks = format!("{FIXTURES}/jwks.json");
    let s = TestServer::with(&[("auth", "jwt"), ("jwt_public_key", &jwks)]).await;
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{FIXTURES}/rsa-private.pem")).unwrap())
            .unwrap();
    let with_kid = |kid: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, &json!({"sub": "ivy", "exp": now() + 60}), &key).unwrap()
    };
    let mut c = open(&s, &format!("/ws?token={}", with_kid("test-rsa")), &[])
        .await
        .unwrap();
    assert_eq!(welcome_user(&mut c).await, "ivy");
    let (status, body) = open(&s, &format!("/ws?token={}", with_kid("rotated-away")), &[])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "no key for this token");
}

#[tokio::test]
async fn settings_that_would_accept_forged_tokens_are_refused_at_start() {
    let key = format!("{FIXTURES}/rsa-public.pem");
    for (pairs, want) in [
        (vec![("auth", "jwt")], "needs `jwt_secret`"),
        (
            vec![
                ("auth", "jwt"),
                ("jwt_public_key", key.as_str()),
                ("jwt_algorithms", "HS256"),
            ],
            "HS256 has no key",
        ),
        (
            vec![
                ("auth", "jwt"),
                ("jwt_secret", "s"),
                ("jwt_algorithms", "none"),
            ],
            "`NONE` is not accepted",
        ),
    ] {
        let values: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let err = match hubbub::Config::from_values(&values) {
            Err(e) => e.to_string(),
            Ok(c) => hubbub::auth::Authenticator::from_config(&c).unwrap_err(),
        };
        assert!(err.contains(want), "{err}");
    }
}

#[tokio::test]
async fn an_expiring_token_closes_with_4401_unless_refreshed() {
    let s = jwt_server(&[]).await;
    let mut short = open(&s, &format!("/ws?token={}", token("dave", 1)), &[])
        .await
        .unwrap();
    welcome_user(&mut short).await;
    let mut refreshed = open(&s, &format!("/ws?token={}", token("dave", 1)), &[])
        .await
        .unwrap();
    welcome_user(&mut refreshed).await;
    // Another user's token is not a refresh.
    let wrong = refreshed
        .request(json!({"op": "auth", "token": token("erin", 60)}))
        .await;
    assert_eq!(wrong["code"], "forbidden", "{wrong}");
    let ack = refreshed
        .request(json!({"op": "auth", "token": token("dave", 60)}))
        .await;
    assert_eq!(ack["op"], "ack", "{ack}");
    assert!(ack["expires_at"].as_u64().unwrap() >= (now() + 59) * 1000);
    let (code, reason) = short.expect_close().await;
    assert_eq!((code, reason.as_str()), (4401, "token expired"));
    // Past the first token's expiry, the refreshed connection still answers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pong = refreshed.request(json!({"op": "ping"})).await;
    assert_eq!(pong["op"], "pong");
}

#[tokio::test]
async fn browser_origins_follow_the_allow_list() {
    // jwt mode without a list: the server's own origin only.
    let s = jwt_server(&[]).await;
    let t = token("frank", 60);
    let own = s.url("");
    let (status, body) = open(
        &s,
        &format!("/ws?token={t}"),
        &[("origin", "https://evil.example")],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert!(open(&s, &format!("/ws?token={t}"), &[("origin", &own)])
        .await
        .is_ok());
    // An explicit list, in mode none too.
    let s = TestServer::with(&[(
        "allowed_origins",
        "https://app.example, https://admin.example",
    )])
    .await;
    assert!(open(&s, "/ws", &[("origin", "https://app.example")])
        .await
        .is_ok());
    assert_eq!(
        open(&s, "/ws", &[("origin", "https://evil.example")])
            .await
            .err()
            .unwrap()
            .0,
        403
    );
    let (status, _) = s
        .send(
            reqwest::Method::GET,
            "/socket.io/?EIO=4&transport=polling",
            None,
        )
        .await;
    assert_eq!(status, 200, "no Origin header: not a browser page");
    let r = reqwest::Client::new()
        .get(s.url("/socket.io/?EIO=4&transport=polling"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

/// A Socket.IO client over WebSocket; `connect` sends the CONNECT with `auth`.
async fn sio_connect(
    s: &TestServer,
    query: &str,
    auth: Value,
) -> Result<(common::Ws, String), String> {
    let url = s.ws_url(&format!("/socket.io/?EIO=4&transport=websocket{query}"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'));
    ws.send(WsMessage::text(format!("40{auth}"))).await.unwrap();
    loop {
        let text = ws
            .next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .to_string();
        if text == "2" {
            continue;
        }
        return if text.starts_with("40") {
            Ok((ws, text))
        } else {
            Err(text)
        };
    }
}

#[tokio::test]
async fn socketio_clients_authenticate_with_auth_token_or_the_handshake() {
    let s = jwt_server(&[]).await;
    let (mut ws, _) = sio_connect(&s, "", json!({"token": token("gina", 60)}))
        .await
        .unwrap();
    assert!(s.hub().is_online("gina"));
    // The token in the handshake's query works too.
    let (_ws2, _) = sio_connect(&s, &format!("&token={}", token("hank", 60)), json!({}))
        .await
        .unwrap();
    assert!(s.hub().is_online("hank"));
    // Refusals are connect_error packets with {code, message}.
    let err = sio_connect(&s, "", json!({})).await.unwrap_err();
    let data: Value = serde_json::from_str(&err[2..]).unwrap();
    assert_eq!(data["message"], "a token is required");
    assert_eq!(data["data"]["code"], "unauthorized");
    let err = sio_connect(&s, "", json!({"token": token("gina", 0).replace('.', "x")}))
        .await
        .unwrap_err();
    assert!(err.starts_with("44"), "{err}");
    // A bad token in the handshake request is refused before the session exists.
    let err = sio_connect(&s, "&token=forged", json!({}))
        .await
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
    // The `auth` event refreshes, answering through the ack.
    ws.send(WsMessage::text(format!(
        r#"421["auth",{{"token":"{}"}}]"#,
        token("gina", 120)
    )))
    .await
    .unwrap();
    loop {
        let text = ws
            .next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .to_string();
        if let Some(ack) = text.strip_prefix("431") {
            let v: Value = serde_json::from_str(ack).unwrap();
            assert_eq!(v[0]["ok"], true, "{v}");
            assert!(v[0]["expires_at"].as_u64().unwrap() >= (now() + 119) * 1000);
            break;
        }
    }
}

#[tokio::test]
async fn a_client_that_never_sends_its_request_headers_is_dropped() {
    let s = TestServer::with(&[("handshake_timeout", "1s")]).await;
    let started = std::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(
        s.url("")
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .await
    .unwrap();
    // Half a request line, then silence.
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("the server drops the connection")
        .unwrap_or(0);
    // Dropped (perhaps after a 408 answer), well before the test's own limit.
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A client that does send its request is served as usual.
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn claims_grant_rights_per_room_and_private_rooms_need_a_grant() {
    let s = jwt_server(&[]).await;
    let (st, _) = s
        .post("/api/rooms", json!({"name": "vip", "private": true}))
        .await;
    assert_eq!(st, 201);
    let limited = sign(
        Algorithm::HS256,
        json!({"sub": "kim", "exp": now() + 60, "rooms": {
            "lobby": ["join", "publish"],
            "news": ["join", "presence"],
            "team-*": ["join", "history", "presence"]
        }}),
    );
    let mut kim = open(&s, &format!("/ws?token={limited}"), &[])
        .await
        .unwrap();
    welcome_user(&mut kim).await;
    for (req, want) in [
        (json!({"op": "join", "room": "lobby"}), "ack"),
        (
            json!({"op": "publish", "room": "lobby", "event": "e"}),
            "ack",
        ),
        (json!({"op": "join", "room": "news"}), "ack"),
        (json!({"op": "join", "room": "team-a", "history": 5}), "ack"),
        (
            json!({"op": "publish", "room": "news", "event": "e"}),
            "forbidden",
        ),
        (
            json!({"op": "join", "room": "news", "history": 5}),
            "forbidden",
        ),
        (json!({"op": "join", "room": "elsewhere"}), "forbidden"),
        (json!({"op": "join", "room": "vip"}), "forbidden"),
        (json!({"op": "broadcast", "event": "e"}), "forbidden"),
    ] {
        let r = kim.request(req.clone()).await;
        let got = if r["op"] == "ack" {
            "ack"
        } else {
            r["code"].as_str().unwrap()
        };
        assert_eq!(got, want, "{req} -> {r}");
    }
    // Without a `rooms` claim: every room but the private ones; `broadcast` needs its claim.
    let open_token = sign(Algorithm::HS256, json!({"sub": "lee", "exp": now() + 60}));
    let mut lee = open(&s, &format!("/ws?token={open_token}"), &[])
        .await
        .unwrap();
    welcome_user(&mut lee).await;
    assert_eq!(
        lee.request(json!({"op": "join", "room": "anything"})).await["op"],
        "ack"
    );
    assert_eq!(
        lee.request(json!({"op": "join", "room": "vip"})).await["code"],
        "forbidden"
    );
    let admin = sign(
        Algorithm::HS256,
        json!({"sub": "max", "exp": now() + 60, "broadcast": true, "rooms": {"*": ["join", "publish", "presence", "history"]}}),
    );
    let mut max = open(&s, &format!("/ws?token={admin}"), &[]).await.unwrap();
    welcome_user(&mut max).await;
    assert_eq!(
        max.request(json!({"op": "join", "room": "vip"})).await["op"],
        "ack"
    );
    assert_eq!(
        max.request(json!({"op": "broadcast", "event": "e"})).await["op"],
        "ack"
    );
    // Everyone gets the broadcast (kim also has her own lobby message queued before it).
    for c in [&mut kim, &mut lee] {
        while c.recv_op("message").await["from"] != "max" {}
    }
    // Presence events reach only those with the right: kim has none in lobby, lee has.
    assert_eq!(
        lee.request(json!({"op": "join", "room": "lobby"})).await["op"],
        "ack"
    );
    assert_eq!(
        max.request(json!({"op": "join", "room": "lobby"})).await["op"],
        "ack"
    );
    let p = lee.recv_op("presence").await;
    assert_eq!(p["joined"], "max");
    kim.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn socketio_mapped_events_follow_the_same_rights() {
    let s = jwt_server(&[]).await;
    let t = sign(
        Algorithm::HS256,
        json!({"sub": "nia", "exp": now() + 60, "rooms": {"news": ["join"]}}),
    );
    let (mut ws, _) = sio_connect(&s, "", json!({"token": t})).await.unwrap();
    ws.send(WsMessage::text(
        r#"421["publish",{"room":"news","event":"e"}]"#,
    ))
    .await
    .unwrap();
    ws.send(WsMessage::text(r#"422["join",{"room":"news"}]"#))
        .await
        .unwrap();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let text = ws
            .next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .to_string();
        if text.starts_with("43") {
            answers.push(text);
        }
    }
    let publish: Value = serde_json::from_str(&answers[0][3..]).unwrap();
    assert_eq!(publish[0]["code"], "forbidden", "{publish}");
    let join: Value = serde_json::from_str(&answers[1][3..]).unwrap();
    assert_eq!(join[0]["ok"], true, "{join}");
}

#[tokio::test]
async fn a_single_session_claim_replaces_that_users_older_connections() {
    let s = jwt_server(&[]).await;
    let single = sign(
        Algorithm::HS256,
        json!({"sub": "oli", "exp": now() + 60, "single_session": true}),
    );
    let mut first = open(&s, &format!("/ws?token={single}"), &[]).await.unwrap();
    welcome_user(&mut first).await;
    let plain = token("pat", 60);
    let mut pat1 = open(&s, &format!("/ws?token={plain}"), &[]).await.unwrap();
    welcome_user(&mut pat1).await;
    let mut pat2 = open(&s, &format!("/ws?token={plain}"), &[]).await.unwrap();
    welcome_user(&mut pat2).await;
    let mut second = open(&s, &format!("/ws?token={single}"), &[]).await.unwrap();
    welcome_user(&mut second).await;
    let (code, reason) = first.expect_close().await;
    assert_eq!(
        (code, reason.as_str()),
        (4409, "replaced by a newer session")
    );
    assert_eq!(second.request(json!({"op": "ping"})).await["op"], "pong");
    // A user without the claim keeps every connection (the setting is off).
    assert_eq!(pat1.request(json!({"op": "ping"})).await["op"], "pong");
    assert_eq!(pat2.request(json!({"op": "ping"})).await["op"], "pong");
}

#[tokio::test]
async fn a_recovered_socketio_session_keeps_its_tokens_expiry_and_rights() {
    let s = jwt_server(&[("socketio_recovery", "1m")]).await;
    let t = sign(
        Algorithm::HS256,
        json!({"sub": "uma", "exp": now() + 2, "rooms": {"news": ["join"]}}),
    );
    let (ws, connected) = sio_connect(&s, "", json!({"token": t})).await.unwrap();
    let first: Value = serde_json::from_str(&connected[2..]).unwrap();
    let pid = first["pid"].as_str().unwrap().to_string();
    // The transport drops without a goodbye: the socket is kept for recovery.
    drop(ws);
    s.wait_connections(0).await;
    let (mut ws, connected) = sio_connect(&s, "", json!({"pid": pid})).await.unwrap();
    let again: Value = serde_json::from_str(&connected[2..]).unwrap();
    assert_eq!(again["sid"], first["sid"], "recovered without a token");
    // The rights came back with it...
    ws.send(WsMessage::text(r#"421["join",{"room":"elsewhere"}]"#))
        .await
        .unwrap();
    // ...and so did the expiry: the socket is disconnected when the token runs out.
    let mut answered = false;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            let text = m.to_text().unwrap_or_default().to_string();
            if let Some(ack) = text.strip_prefix("431") {
                let v: Value = serde_json::from_str(ack).unwrap();
                assert_eq!(v[0]["code"], "forbidden", "{v}");
                answered = true;
            }
            if text.starts_with("41") || m.is_close() {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the recovered socket outlived its token");
    assert!(answered);
    // A socket whose token expires while it is away is not recovered: the middleware asks
    // for a token again.
    let (ws, connected) = sio_connect(&s, "", json!({"token": token("uma", 1)}))
        .await
        .unwrap();
    let pid = serde_json::from_str::<Value>(&connected[2..]).unwrap()["pid"]
        .as_str()
        .unwrap()
        .to_string();
    drop(ws);
    s.wait_connections(0).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = sio_connect(&s, "", json!({"pid": pid})).await.unwrap_err();
    assert!(err.contains("a token is required"), "{err}");
}
