//! Auth at the upgrade: a query-token check in ordinary axum middleware. A bad token gets
//! HTTP 401 and never becomes a WebSocket; a good one names the user, whatever the path says.
//! (Full JWT, cookie and basic auth are built into the server; this shows the mechanism.)
//!
//! Run `cargo run --example auth`, then connect to `ws://127.0.0.1:3000/ws?token=t-alice`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::{
    extract::{Query, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use hubbub::{server::shutdown_signal, ws::Identity, Config, Hubbub};

/// token -> user; a real application would look tokens up in its session store.
type Tokens = Arc<HashMap<String, String>>;

async fn check_token(
    State(tokens): State<Tokens>,
    Query(q): Query<HashMap<String, String>>,
    mut req: Request,
    next: Next,
) -> Response {
    match q.get("token").and_then(|t| tokens.get(t)) {
        Some(user) => {
            req.extensions_mut().insert(Identity(user.clone()));
            next.run(req).await
        }
        None => (StatusCode::UNAUTHORIZED, "missing or unknown token").into_response(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let tokens: Tokens = Arc::new(
        [("t-alice", "alice"), ("t-bob", "bob")]
            .into_iter()
            .map(|(t, u)| (t.to_string(), u.to_string()))
            .collect(),
    );
    let hubbub = Hubbub::new(Config::default());
    let app = hubbub
        .ws_routes()
        .route_layer(middleware::from_fn_with_state(tokens, check_token));
    let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
    println!("auth: ws://127.0.0.1:3000/ws?token=t-alice");
    hubbub.serve(listener, app, shutdown_signal()).await
}
