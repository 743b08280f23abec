//! Auth mode `cookie` (the BFF pattern): Hubbub forwards the client's `Cookie` header to
//! the application's callback, takes the user and claims from its answer, and reuses the
//! answer briefly. Every refusal happens before the upgrade: no cookie, a malformed one,
//! one the application rejects, an application that is down or slow, a foreign origin.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

/// What the application's callback saw: the `Cookie` and `X-Forwarded-For` headers.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A stand-in for the application: `GET /session` names the user of `sid`.
async fn application() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/session",
        axum::routing::get(move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default()
                };
                let cookie = header("cookie");
                log.lock()
                    .unwrap()
                    .push((cookie.clone(), header("x-forwarded-for")));
                let sid = cookie
                    .split("; ")
                    .find_map(|p| p.strip_prefix("sid="))
                    .unwrap_or("");
                answer(sid).await
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

async fn answer(sid: &str) -> Response {
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match sid {
        "ann-session" => ok(json!({"user": "ann", "name": "Ann"})),
        "kim-session" => ok(json!({"user": "kim", "rooms": {"lobby": ["join"]}})),
        "sam-session" => ok(json!({"user": "sam", "exp": now() + 1})),
        "banned" => StatusCode::FORBIDDEN.into_response(),
        "stale" => (StatusCode::FOUND, [("location", "/login")]).into_response(),
        "bug" => (StatusCode::OK, "<html>welcome</html>").into_response(),
        "crash" => StatusCode::BAD_GATEWAY.into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ok(json!({"user": "late"}))
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn cookie_server(callback: SocketAddr, extra: &[(&str, &str)]) -> TestServer {
    let url = format!("http://{callback}/session");
    let mut pairs = vec![
        ("auth", "cookie"),
        ("auth_callback", url.as_str()),
        ("auth_callback_timeout", "500ms"),
    ];
    pairs.extend_from_slice(extra);
    TestServer::with(&pairs).await
}

async fn open(
    s: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<common::Client, (u16, Value)> {
    let mut req = s.ws_url(path).into_client_request().unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut()
            .append(name, HeaderValue::from_bytes(v.as_bytes()).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(common::Client::from_ws(ws)),
        Err(tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            serde_json::from_slice(&resp.body().clone().unwrap_or_default()).unwrap_or_default(),
        )),
        Err(e) => panic!("{e}"),
    }
}

async fn refused(s: &TestServer, cookie: Option<&str>) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let (status, body) = open(s, "/ws", &headers).await.err().expect("refused");
    let text = |k: &str| body["error"][k].as_str().unwrap_or_default().to_string();
    (status, text("code"), text("message"))
}

#[tokio::test]
async fn the_application_names_the_user_and_its_answer_is_reused() {
    let (app, seen) = application().await;
    let s = cookie_server(app, &[]).await;
    let cookie = "theme=dark; sid=ann-session";
    let mut ann = open(&s, "/ws", &[("cookie", cookie)]).await.unwrap();
    assert_eq!(ann.recv().await["user"], "ann");
    // The callback got the whole Cookie header and the client's address.
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![(cookie.to_string(), "127.0.0.1".to_string())]
    );
    // A reconnect within `auth_cache` is not asked again; another session is.
    let mut again = open(&s, "/ws", &[("cookie", cookie)]).await.unwrap();
    assert_eq!(again.recv().await["user"], "ann");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let mut kim = open(&s, "/ws", &[("cookie", "sid=kim-session")])
        .await
        .unwrap();
    assert_eq!(kim.recv().await["user"], "kim");
    assert_eq!(seen.lock().unwrap().len(), 2);
    // The answer's claims grant rights as a token's do.
    let joined = kim.request(json!({"op": "join", "room": "lobby"})).await;
    assert_eq!(joined["op"], "ack", "{joined}");
    let elsewhere = kim.request(json!({"op": "join", "room": "staff"})).await;
    assert_eq!(elsewhere["code"], "forbidden", "{elsewhere}");
    let publish = kim
        .request(json!({"op": "publish", "room": "lobby", "event": "e"}))
        .await;
    assert_eq!(publish["code"], "forbidden", "{publish}");
}

#[tokio::test]
async fn with_the_cache_off_every_connection_is_checked() {
    let (app, seen) = application().await;
    let s = cookie_server(app, &[("auth_cache", "0")]).await;
    for _ in 0..3 {
        let mut c = open(&s, "/ws", &[("cookie", "sid=ann-session")])
            .await
            .unwrap();
        assert_eq!(c.recv().await["user"], "ann");
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn sessions_the_application_refuses_never_upgrade() {
    let (app, seen) = application().await;
    let s = cookie_server(app, &[]).await;
    for (cookie, status, code, message) in [
        (None, 401, "unauthorized", "a session cookie is required"),
        (
            Some("sid=forged"),
            401,
            "unauthorized",
            "the session cookie was not accepted",
        ),
        (
            Some("sid=stale"),
            401,
            "unauthorized",
            "the session cookie was not accepted",
        ),
        (
            Some("sid=banned"),
            403,
            "forbidden",
            "the application refused this session",
        ),
    ] {
        assert_eq!(
            refused(&s, cookie).await,
            (status, code.to_string(), message.to_string()),
            "{cookie:?}"
        );
    }
    // Refusals are not cached: each was asked (the request without a cookie was not).
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(s.hub().connection_count(), 0);
    // And each is counted.
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hubbub_upgrades_rejected_total{reason=\"unauthorized\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_cookie_is_refused_without_asking_the_application() {
    let (app, seen) = application().await;
    let s = cookie_server(app, &[]).await;
    for bad in [
        "sid",
        "=ann-session",
        "sid=ann session",
        "sid=\"ann-session",
        "s id=ann-session",
        "sid=ann-session, other=1",
    ] {
        let (status, code, message) = refused(&s, Some(bad)).await;
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (401, "unauthorized", "malformed Cookie header"),
            "{bad:?}"
        );
    }
    // Bytes that are not text (the Rust client refuses to send them, so raw TCP does).
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let request = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Cookie: sid=caf\xc3\xa9\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut tcp, request)
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut answer)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("malformed Cookie header"), "{answer}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_application_that_is_down_slow_or_broken_lets_nobody_in() {
    // Nothing listens on a port that was just released.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let s = cookie_server(down, &[]).await;
    let (status, code, message) = refused(&s, Some("sid=ann-session")).await;
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            500,
            "internal",
            "the session check is unavailable; retry later"
        )
    );

    let (app, _) = application().await;
    let s = cookie_server(app, &[]).await;
    for sid in ["sid=slow", "sid=bug", "sid=crash"] {
        let started = std::time::Instant::now();
        let (status, code, _) = refused(&s, Some(sid)).await;
        assert_eq!((status, code.as_str()), (500, "internal"), "{sid}");
        // The 500 ms callback timeout, not the application's 3 s.
        assert!(started.elapsed() < Duration::from_secs(2), "{sid}");
    }
    // Once the application answers again, the same server lets the user in.
    let mut ann = open(&s, "/ws", &[("cookie", "sid=ann-session")])
        .await
        .unwrap();
    assert_eq!(ann.recv().await["user"], "ann");
}

#[tokio::test]
async fn a_foreign_page_cannot_ride_the_cookie() {
    let (app, seen) = application().await;
    let s = cookie_server(app, &[]).await;
    let own = format!("http://{}", s.addr);
    let (status, body) = open(
        &s,
        "/ws",
        &[
            ("cookie", "sid=ann-session"),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .err()
    .expect("cross-site connection refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert!(seen.lock().unwrap().is_empty());
    let mut ann = open(
        &s,
        "/ws",
        &[("cookie", "sid=ann-session"), ("origin", &own)],
    )
    .await
    .unwrap();
    assert_eq!(ann.recv().await["user"], "ann");
}

#[tokio::test]
async fn a_session_with_an_expiry_closes_with_4401() {
    let (app, _) = application().await;
    let s = cookie_server(app, &[]).await;
    let mut sam = open(&s, "/ws", &[("cookie", "sid=sam-session")])
        .await
        .unwrap();
    assert_eq!(sam.recv().await["user"], "sam");
    // Tokens do not renew a cookie session: the client reconnects instead.
    let renew = sam.request(json!({"op": "auth", "token": "x"})).await;
    assert_eq!(renew["code"], "bad_request", "{renew}");
    let (code, _) = sam.expect_close().await;
    assert_eq!(code, 4401);
}

#[tokio::test]
async fn socketio_clients_are_named_by_the_handshake_cookie() {
    let (app, _) = application().await;
    let s = cookie_server(app, &[]).await;
    let mut held = Vec::new();
    for (cookie, want) in [
        (Some("sid=ann-session"), "40"),
        (Some("sid=forged"), "handshake refused"),
        (None, "44"),
    ] {
        let mut req = s
            .ws_url("/socket.io/?EIO=4&transport=websocket")
            .into_client_request()
            .unwrap();
        if let Some(c) = cookie {
            req.headers_mut()
                .insert("cookie", HeaderValue::from_str(c).unwrap());
        }
        let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(v) => v,
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401, "{cookie:?}");
                assert_eq!(want, "handshake refused");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        ws.next().await.unwrap().unwrap();
        ws.send(WsMessage::text("40")).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap().into_text().unwrap();
        assert!(answer.starts_with(want), "{cookie:?}: {answer}");
        if want == "44" {
            assert!(answer.contains("a session cookie is required"), "{answer}");
        }
        held.push(ws);
    }
    assert!(s.hub().is_online("ann"));
    // The refused CONNECT left an Engine.IO session but no hub connection.
    assert_eq!(s.hub().connection_count(), 1);
}

#[test]
fn a_cookie_server_needs_an_http_callback() {
    let values = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for (pairs, want) in [
        (vec![("auth", "cookie")], "auth_callback"),
        (
            vec![("auth", "cookie"), ("auth_callback", "ftp://app/session")],
            "must be http or https",
        ),
        (
            vec![("auth", "cookie"), ("auth_callback", "not a url")],
            "auth_callback",
        ),
    ] {
        let c = hubbub::Config::from_values(&values(&pairs)).unwrap();
        let err = hubbub::auth::Authenticator::from_config(&c).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
}
