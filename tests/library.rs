//! Hubbub as a library: mounted into an application's own axum Router beside its routes,
//! under a prefix, with identity from application middleware, hooks, and a Hub handle used
//! from other tasks.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::{
    extract::{Query, Request},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use common::{config, Client, TestServer};
use hubbub::{ws::Identity, Hubbub};
use serde_json::json;

#[tokio::test]
async fn mounted_beside_app_routes_and_under_a_prefix() {
    let hubbub = Hubbub::new(config(&[]));
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the app" }))
        .nest("/v1", hubbub.ws_routes())
        .merge(hubbub.api_routes());
    let s = TestServer::serve(hubbub, app).await;
    let (st, body) = s.get("/hello").await;
    assert_eq!((st, body), (200, json!("hello from the app")));
    let mut c = Client::connect(&s.ws_url("/v1/ws/pat")).await;
    let welcome = c.recv().await;
    assert_eq!(welcome["user"], "pat");
    // Not mounted at the root in this app.
    assert!(tokio_tungstenite::connect_async(s.ws_url("/ws"))
        .await
        .is_err());
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Application auth at the upgrade: `?token=secret-<user>`.
async fn check_token(Query(q): Query<TokenQuery>, mut req: Request, next: Next) -> Response {
    match q.token.as_deref().and_then(|t| t.strip_prefix("secret-")) {
        Some(user) if !user.is_empty() => {
            req.extensions_mut().insert(Identity(user.to_string()));
            next.run(req).await
        }
        _ => (StatusCode::UNAUTHORIZED, "bad token").into_response(),
    }
}

#[tokio::test]
async fn middleware_authenticates_before_the_upgrade() {
    let hubbub = Hubbub::new(config(&[]));
    let app = hubbub
        .ws_routes()
        .route_layer(middleware::from_fn(check_token));
    let s = TestServer::serve(hubbub, app).await;
    let err = tokio_tungstenite::connect_async(s.ws_url("/ws?token=nope"))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.hub().connection_count(), 0);
    // The path cannot override the authenticated identity.
    let mut c = Client::connect(&s.ws_url("/ws/mallory?token=secret-alice")).await;
    assert_eq!(c.recv().await["user"], "alice");
}

#[tokio::test]
async fn hooks_and_a_hub_handle_from_another_task() {
    let s = TestServer::start().await;
    let connects = Arc::new(AtomicUsize::new(0));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let (c1, d1) = (connects.clone(), disconnects.clone());
    s.hub().on_connect(move |hub, conn| {
        c1.fetch_add(1, Ordering::SeqCst);
        let _ = hub
            .to_conn(conn.id())
            .emit("motd", json!(format!("welcome {}", conn.user())));
    });
    s.hub().on_disconnect(move |_, _| {
        d1.fetch_add(1, Ordering::SeqCst);
    });
    let mut c = s.user("kim").await;
    let m = c.recv_message().await;
    assert_eq!(
        (m["event"].clone(), m["data"].clone()),
        (json!("motd"), json!("welcome kim"))
    );
    c.join("ticker").await;
    let hub = s.hub().clone();
    tokio::spawn(async move {
        for i in 0..3 {
            hub.to_room("ticker").emit("tick", json!(i)).unwrap();
        }
    })
    .await
    .unwrap();
    for i in 0..3 {
        assert_eq!(c.recv_message().await["data"], i);
    }
    drop(c);
    s.wait_connections(0).await;
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    assert_eq!(disconnects.load(Ordering::SeqCst), 1);
}
