//! GraphQL at `/graphql` (DESIGN.md, "GraphQL"): the schema ([`schema`], on async-graphql),
//! GraphQL over WebSocket in both subprotocols ([`codec`], [`ws`]), and subscriptions run
//! by the hub with one encoded payload per delivery and selection ([`plan`]).
//!
//! A GraphQL connection is a hub connection of transport `graphql`: its subscriptions make
//! it a member of their rooms, so it counts in presence and stats and hears what v1 and
//! Socket.IO clients hear.

pub mod codec;
pub mod plan;
pub mod schema;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use yawc::IncomingUpgrade;

use crate::auth::Authenticator;
use crate::error::{ApiError, ErrorCode};
use crate::hub::Hub;
use crate::identity::{Credentials, Identity};
use crate::ws::{driver::Driver, WsState};
use codec::Protocol;
use schema::{HubbubSchema, Limits, Services};

/// How long a closing connection waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The GraphQL explorer, served at `/graphql` to a browser (its script is `/graphql.js`).
const EXPLORER: &str = include_str!("../../static/graphql.html");

/// Settings of the GraphQL front end.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GraphqlConfig {
    /// The largest request body over HTTP, in bytes (WebSocket messages are bounded by
    /// the WebSocket options).
    pub max_payload: usize,
    /// Subscriptions one connection may hold at once.
    pub max_subscriptions: usize,
    /// How long a client has to send `connection_init`.
    pub init_timeout: Duration,
    /// Depth and complexity limits of documents.
    pub limits: Limits,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            max_subscriptions: 100,
            init_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// Shared state of the GraphQL route; cloning it is one reference count.
#[derive(Clone)]
pub struct GraphqlState {
    inner: Arc<Shared>,
}

struct Shared {
    hub: Hub,
    ws: WsState,
    schema: HubbubSchema,
    auth: Arc<Authenticator>,
    config: GraphqlConfig,
}

impl std::fmt::Debug for GraphqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl GraphqlState {
    /// The state of the route: WebSockets as `ws` makes them, credentials as `auth`
    /// verifies them, the services the schema reaches.
    pub fn new(
        ws: WsState,
        auth: Arc<Authenticator>,
        services: Services,
        config: GraphqlConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                hub: services.hub.clone(),
                schema: schema::build(services, config.limits),
                ws,
                auth,
                config,
            }),
        }
    }
}

/// The route `/graphql`: GraphQL over WebSocket (an upgrade offering a GraphQL
/// subprotocol), queries and mutations over HTTP `POST`, and the explorer page for a
/// browser's `GET`.
pub fn routes(state: GraphqlState) -> Router {
    Router::new()
        .route("/graphql", get(handler).post(http))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.inner.config.max_payload + 1,
        ))
        .with_state(state)
}

#[derive(Debug, serde::Deserialize)]
struct UserQuery {
    user: Option<String>,
}

/// A query or mutation over HTTP (`{query, operationName?, variables?}`), run as the
/// request's credentials say (in auth mode `none`, `?user=` names the user).
async fn http(
    State(state): State<GraphqlState>,
    identity: Option<Extension<Identity>>,
    creds: Option<Extension<Credentials>>,
    axum::extract::Query(q): axum::extract::Query<UserQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // JSON only: a form or text/plain POST, which any web page may send without asking,
    // runs nothing.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        let e = ApiError::new(
            ErrorCode::BadRequest,
            "send the request as JSON (content-type: application/json)",
        );
        return e.into_response();
    }
    let auth = &state.inner.auth;
    let user = match identity {
        Some(Extension(Identity(u))) => Some(u),
        None if !auth.required() => q.user,
        None => return ApiError::from(auth.missing()).into_response(),
    };
    if user
        .as_deref()
        .is_some_and(|u| !crate::protocol::v1::is_user_name(u))
    {
        let msg = "a user name is 1 to 200 bytes, without control characters";
        return ApiError::new(ErrorCode::BadRequest, msg).into_response();
    }
    if body.len() > state.inner.config.max_payload {
        let e = ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large");
        return e.into_response();
    }
    let request = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| codec::Request::from_json(&v).map_err(|e| e.message));
    let request = match request {
        Ok(r) => r,
        Err(why) => return ApiError::new(ErrorCode::BadRequest, why).into_response(),
    };
    let is_subscription = async_graphql::parser::parse_query(&request.query)
        .is_ok_and(|doc| plan::is_subscription(&doc, request.operation_name.as_deref()));
    if is_subscription {
        let e = ApiError::new(
            ErrorCode::BadRequest,
            "subscriptions run over WebSocket (graphql-transport-ws or graphql-ws)",
        );
        return e.into_response();
    }
    let caller = schema::Caller {
        user: user.map(Into::into),
        grants: creds.map(|Extension(c)| Arc::new(c.grants)),
        conn: None,
    };
    let mut gql = async_graphql::Request::new(request.query)
        .variables(async_graphql::Variables::from_json(
            serde_json::Value::Object(request.variables),
        ))
        .data(caller);
    if let Some(n) = request.operation_name {
        gql = gql.operation_name(n);
    }
    let response = state.inner.schema.execute(gql).await;
    axum::Json(response).into_response()
}

async fn handler(
    State(state): State<GraphqlState>,
    peer: crate::ws::Peer,
    identity: Option<Extension<Identity>>,
    creds: Option<Extension<Credentials>>,
    headers: HeaderMap,
    upgrade: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    if upgrade.is_err() && !headers.contains_key(header::UPGRADE) {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            EXPLORER,
        )
            .into_response();
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let Some(protocol) = Protocol::negotiate(&offered) else {
        let e = ApiError::new(
            ErrorCode::BadRequest,
            "GraphQL over WebSocket: offer the subprotocol graphql-transport-ws or graphql-ws",
        );
        return e.into_response();
    };
    let (upgrade, permit) = match crate::ws::admit(&state.inner.ws, crate::ws::ip_of(peer), upgrade)
    {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (mut response, fut) = match upgrade.upgrade(state.inner.ws.options().clone()) {
        Ok(v) => v,
        Err(e) => return ApiError::new(ErrorCode::BadRequest, e.to_string()).into_response(),
    };
    response.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol.name()),
    );
    let user = identity.map(|Extension(Identity(u))| u);
    let creds = creds.map(|Extension(c)| c);
    tokio::spawn(async move {
        match fut.await {
            Ok(socket) => {
                let driver = Driver::new(socket, CLOSE_GRACE);
                tokio::spawn(ws::run(state, driver, protocol, user, creds, permit));
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    response.into_response()
}
