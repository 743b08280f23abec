//! The HTTP API for back ends (DESIGN.md, "HTTP API"): push, rooms, presence, users,
//! notifications, stats, metrics and health.
//!
//! Handlers translate JSON into hub and service calls and their results into JSON; every
//! failure is an [`ApiError`] with DESIGN.md's status and body. `/api/*`, `/rest/message` and
//! `/metrics` require the API key when one is configured and answer loopback clients only
//! otherwise. One file per group of routes: `push` (push, the seeds' `/rest/message`,
//! notify), `rooms`, `users` (presence, devices, disconnect, notifications) and
//! `health` (stats, metrics, liveness, readiness).

mod health;
mod push;
mod rooms;
mod users;

use std::net::SocketAddr;

use std::sync::Arc;

use axum::{
    extract::{ConnectInfo, FromRequest, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::hub::Hub;
use crate::services::Notifications;

/// State of the API routes.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The hub.
    pub hub: Hub,
    /// The notification service.
    pub notifications: Arc<Notifications>,
    /// The API key, if any.
    pub api_key: Option<String>,
    /// Largest accepted body.
    pub max_payload: usize,
}

/// The API routes, with the key check applied to the protected ones.
pub fn routes(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/api/push", post(push::push))
        .route("/rest/message", post(push::rest_message))
        .route("/api/notify", post(push::notify))
        .route("/api/rooms", post(rooms::create).get(rooms::list))
        .route("/api/rooms/{room}", get(rooms::get).delete(rooms::delete))
        .route("/api/rooms/{room}/history", get(rooms::history))
        .route("/api/presence/{room}", get(rooms::presence))
        .route("/api/users/online", get(users::online))
        .route("/api/users/{user}", get(users::devices))
        .route("/api/users/{user}/disconnect", post(users::disconnect))
        .route("/api/users/{user}/notifications", get(users::notifications))
        .route("/api/users/{user}/notifications/read", post(users::read))
        .route("/api/stats", get(health::stats))
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(axum::extract::DefaultBodyLimit::max(state.max_payload));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(health::readyz))
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

pub(crate) fn event_name(event: Option<String>) -> Result<String, ApiError> {
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
