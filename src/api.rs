//! The HTTP API for back ends (DESIGN.md, "HTTP API"): push, rooms, presence, users,
//! stats, metrics and health.
//!
//! Handlers translate JSON into hub calls and hub results into JSON; every failure is an
//! [`ApiError`] with DESIGN.md's status and body. `/api/*`, `/rest/message` and `/metrics`
//! require the API key when one is configured and answer loopback clients only otherwise.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, FromRequest, Path, Query, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode, HubError};
use crate::hub::{Hub, Payload, RoomSettings};
use crate::stats::Transport;

/// State of the API routes.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The hub.
    pub hub: Hub,
    /// The API key, if any.
    pub api_key: Option<String>,
    /// Largest accepted body.
    pub max_payload: usize,
}

/// The API routes, with the key check applied to the protected ones.
pub fn routes(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/api/push", post(push))
        .route("/rest/message", post(rest_message))
        .route("/api/rooms", post(create_room).get(list_rooms))
        .route("/api/rooms/{room}", get(get_room).delete(delete_room))
        .route("/api/rooms/{room}/history", get(history))
        .route("/api/presence/{room}", get(presence))
        .route("/api/users/online", get(users_online))
        .route("/api/users/{user}/disconnect", post(disconnect_user))
        .route("/api/stats", get(stats))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(axum::extract::DefaultBodyLimit::max(state.max_payload));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state)
}

/// Whether a request may use the server API: with a key configured, it must present it as
/// `Authorization: Bearer <key>`; without one, it must come from loopback.
fn api_allowed(
    api_key: Option<&str>,
    authorization: Option<&str>,
    peer: Option<SocketAddr>,
) -> bool {
    match api_key {
        Some(key) => authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), key.as_bytes())),
        None => peer.is_some_and(|p| p.ip().is_loopback()),
    }
}

async fn require_key(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let allowed = api_allowed(
        state.api_key.as_deref(),
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ci| ci.0),
    );
    if !allowed {
        let message = if state.api_key.is_some() {
            "a valid `Authorization: Bearer <api key>` is required"
        } else {
            "no API key is configured: the server API answers loopback clients only"
        };
        return ApiError::new(ErrorCode::Unauthorized, message).into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON body whose rejections use Hubbub's error codes.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => Err(match &rej {
                JsonRejection::JsonSyntaxError(_) => {
                    ApiError::new(ErrorCode::InvalidJson, rej.body_text())
                }
                _ if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the body is larger than max_payload",
                ),
                _ => ApiError::new(ErrorCode::BadRequest, rej.body_text()),
            }),
        }
    }
}

fn event_name(event: Option<String>) -> Result<String, ApiError> {
    let event =
        event.ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "missing field `event`"))?;
    if event.is_empty() || event.len() > crate::protocol::v1::MAX_NAME_LEN {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`event` must be a non-empty string of at most 200 bytes",
        ));
    }
    Ok(event)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    to: Option<String>,
    room: Option<String>,
    #[serde(default)]
    all: bool,
    event: Option<String>,
    #[serde(default)]
    data: Value,
    from: Option<String>,
}

async fn push(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<PushBody>,
) -> Result<Json<Value>, ApiError> {
    let event = event_name(b.event)?;
    let targets = usize::from(b.to.is_some()) + usize::from(b.room.is_some()) + usize::from(b.all);
    if targets != 1 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "give exactly one target: `to` (a user), `room`, or `all: true`",
        ));
    }
    let em = match (&b.to, &b.room) {
        (Some(user), _) => s.hub.to_user(user),
        (_, Some(room)) => s.hub.to_room(room),
        _ => s.hub.to_all(),
    };
    let em = match b.from {
        Some(f) => em.from(f),
        None => em,
    };
    let out = em.publish(&event, Payload::json(&b.data))?;
    let mut body = json!({ "delivered": out.delivered });
    if let Some(online) = out.online {
        body["online"] = json!(online);
    }
    if let Some(seq) = out.seq {
        body["seq"] = json!(seq);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
struct RestMessage {
    from: String,
    to: String,
    content: Value,
}

async fn rest_message(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<RestMessage>,
) -> Result<Json<Value>, ApiError> {
    if b.to.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`to` must not be empty",
        ));
    }
    let out = s.hub.to_user(&b.to).from(b.from.as_str()).publish(
        "message",
        Payload::json(&json!({"from": b.from, "content": b.content})),
    )?;
    Ok(Json(if out.online == Some(true) {
        json!({"succeed": true})
    } else {
        json!({"succeed": false, "msg": format!("user `{}` is not online", b.to)})
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoom {
    name: String,
    max_users: Option<usize>,
    #[serde(default)]
    private: bool,
    history: Option<usize>,
    presence: Option<bool>,
}

async fn create_room(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<CreateRoom>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let info = s.hub.create_room(RoomSettings {
        name: b.name,
        max_users: b.max_users,
        private: b.private,
        history: b.history.unwrap_or(s.hub.config().default_history),
        presence: b.presence.unwrap_or(true),
    })?;
    Ok((StatusCode::CREATED, Json(json!(info))))
}

async fn list_rooms(State(s): State<ApiState>) -> Json<Value> {
    Json(json!({ "rooms": s.hub.rooms() }))
}

fn not_found(room: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RoomNotFound,
        format!("room `{room}` does not exist"),
    )
}

async fn get_room(
    State(s): State<ApiState>,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.hub
        .room_info(&room)
        .map(|i| Json(json!(i)))
        .ok_or_else(|| not_found(&room))
}

async fn delete_room(
    State(s): State<ApiState>,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if s.hub.delete_room(&room) {
        Ok(Json(json!({ "deleted": room })))
    } else {
        Err(not_found(&room))
    }
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

/// Largest page of `GET /api/rooms/{room}/history`.
const HISTORY_PAGE_MAX: usize = 500;

async fn history(
    State(s): State<ApiState>,
    Path(room): Path<String>,
    q: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > HISTORY_PAGE_MAX {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("`limit` must be between 1 and {HISTORY_PAGE_MAX}"),
        ));
    }
    let (messages, next) = s
        .hub
        .history(&room, q.before, limit)
        .ok_or_else(|| not_found(&room))?;
    let messages: Vec<Value> = messages.iter().map(|d| d.to_history_json()).collect();
    Ok(Json(json!({ "messages": messages, "next_before": next })))
}

async fn presence(
    State(s): State<ApiState>,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let users = s.hub.presence(&room).ok_or_else(|| not_found(&room))?;
    Ok(Json(
        json!({ "room": room, "count": users.len(), "users": users }),
    ))
}

async fn users_online(State(s): State<ApiState>) -> Json<Value> {
    let users = s.hub.users_online();
    Json(json!({ "count": users.len(), "users": users }))
}

async fn disconnect_user(State(s): State<ApiState>, Path(user): Path<String>) -> Json<Value> {
    let n = s
        .hub
        .disconnect_user(&user, 4000, "disconnected by the server");
    Json(json!({ "disconnected": n }))
}

async fn stats(State(s): State<ApiState>) -> Json<Value> {
    let st = s.hub.stats();
    let ws = st.connections(Transport::Ws);
    let sio = st.connections(Transport::SocketIo);
    Json(json!({
        "node": s.hub.node(),
        "connections": { "total": ws + sio, "ws": ws, "socketio": sio },
        "users_online": s.hub.users_online().len(),
        "rooms": s.hub.rooms().len(),
        "messages_in": st.messages_in_total(),
        "messages_out": st.messages_out_total(),
        "bytes_out": st.bytes_out_total(),
        "slow_consumer_closes": st.slow_consumer_total(),
        "heartbeat_reaped": st.reaped_total(),
    }))
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.hub.stats().render(),
    )
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.hub.is_shutting_down() {
        ApiError(HubError::new(ErrorCode::ServerFull, "shutting down")).into_response()
    } else {
        Json(json!({"status": "ready"})).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_key_only_loopback_is_allowed() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert!(api_allowed(None, None, Some(lo)));
        assert!(api_allowed(None, None, Some(lo6)));
        assert!(!api_allowed(None, None, Some(remote)));
        assert!(!api_allowed(None, None, None), "unknown peers are refused");
    }

    #[test]
    fn with_a_key_the_bearer_must_match_from_anywhere() {
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(api_allowed(
            Some("s3cret"),
            Some("Bearer s3cret"),
            Some(remote)
        ));
        assert!(!api_allowed(
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some(remote)
        ));
        assert!(!api_allowed(Some("s3cret"), Some("s3cret"), Some(remote)));
        assert!(
            !api_allowed(Some("s3cret"), None, Some(lo)),
            "loopback needs the key too"
        );
    }
}
