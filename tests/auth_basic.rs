//! Auth mode `basic`: user names and Argon2 password hashes from a users file; the
//! credentials come in `Authorization: Basic` or the Socket.IO CONNECT's
//! `auth: {user, password}`; refusals happen before the upgrade with the same answer for
//! an unknown user and a wrong password.

mod common;

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine as _;
use common::{TestServer, WsMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue};

fn users_file(dir: &tempfile::TempDir) -> String {
    let salt = SaltString::from_b64("YWJjZGVmZ2hpamtsbW5vcA").unwrap();
    let hash = argon2::Argon2::default()
        .hash_password(b"hunter2", &salt)
        .unwrap()
        .to_string();
    let path = dir.path().join("users");
    std::fs::write(&path, format!("# test users\nann:{hash}\n\n")).unwrap();
    path.to_str().unwrap().to_string()
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("Basic {}", b64.encode(format!("{user}:{password}")))
}

async fn open(s: &TestServer, auth: Option<&str>) -> Result<common::Client, (u16, Value)> {
    let mut req = s.ws_url("/ws").into_client_request().unwrap();
    if let Some(a) = auth {
        req.headers_mut()
            .insert("authorization", HeaderValue::from_str(a).unwrap());
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

#[tokio::test]
async fn users_file_credentials_are_checked_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(&dir);
    let s = TestServer::with(&[("auth", "basic"), ("users_file", &file)]).await;
    let mut c = open(&s, Some(&basic("ann", "hunter2"))).await.unwrap();
    assert_eq!(c.recv().await["user"], "ann");
    // A second connection with the same credentials is served from the short cache.
    let mut again = open(&s, Some(&basic("ann", "hunter2"))).await.unwrap();
    assert_eq!(again.recv().await["user"], "ann");
    for (auth, message) in [
        (Some(basic("ann", "wrong")), "bad user name or password"),
        (
            Some(basic("nobody", "hunter2")),
            "bad user name or password",
        ),
        (
            Some("Basic not-base64!".to_string()),
            "a user name and password are required",
        ),
        (None, "a user name and password are required"),
    ] {
        let (status, body) = open(&s, auth.as_deref()).await.err().expect("refused");
        assert_eq!(status, 401, "{message}");
        assert_eq!(body["error"]["message"], message);
    }
    assert_eq!(s.hub().connection_count(), 2);
}

#[tokio::test]
async fn socketio_clients_send_user_and_password_in_auth() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(&dir);
    let s = TestServer::with(&[("auth", "basic"), ("users_file", &file)]).await;
    let mut held = Vec::new();
    for (auth, want) in [
        (r#"{"user":"ann","password":"hunter2"}"#, "40"),
        (r#"{"user":"ann","password":"nope"}"#, "44"),
        ("", "44"),
    ] {
        let url = s.ws_url("/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.next().await.unwrap().unwrap();
        ws.send(WsMessage::text(format!("40{auth}"))).await.unwrap();
        let answer = ws
            .next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .to_string();
        assert!(answer.starts_with(want), "{auth}: {answer}");
        held.push(ws);
    }
    assert!(s.hub().is_online("ann"));
}

#[test]
fn a_basic_server_needs_a_readable_users_file() {
    let values = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let err = hubbub::Config::from_values(&values(&[("auth", "basic")])).unwrap_err();
    assert!(err.to_string().contains("users_file"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("users");
    std::fs::write(&bad, "ann:plaintext-password\n").unwrap();
    let c = hubbub::Config::from_values(&values(&[
        ("auth", "basic"),
        ("users_file", bad.to_str().unwrap()),
    ]))
    .unwrap();
    let err = hubbub::auth::Authenticator::from_config(&c).unwrap_err();
    assert!(err.contains("not an Argon2 PHC hash"), "{err}");
}
