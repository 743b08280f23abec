//! Error codes shared by every front end and the HTTP API.
//!
//! [`ErrorCode`] is the wire vocabulary of DESIGN.md (`invalid_json`, `bad_request`, ...);
//! [`HubError`] is what hub operations return; [`ApiError`] maps either onto an HTTP status
//! and the JSON body `{"error": {"code", "message"}}`.

use std::fmt;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

/// A machine-readable error code, as sent in `error` frames and HTTP error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or body is not valid JSON.
    InvalidJson,
    /// A field is missing or mistyped, the frame has no `op`, a binary frame on `/ws`, a bad `id`.
    BadRequest,
    /// The `op` is not one the server knows.
    UnknownOp,
    /// An HTTP body over `max_payload`.
    PayloadTooLarge,
    /// Missing or bad credentials.
    Unauthorized,
    /// Credentials are fine but the action is not allowed.
    Forbidden,
    /// The room does not exist.
    RoomNotFound,
    /// The room has reached its `max_users`.
    RoomFull,
    /// A room with that name already exists.
    RoomExists,
    /// The user has no connection.
    UserOffline,
    /// Too many requests.
    RateLimited,
    /// The connection's outbound queue overflowed.
    SlowConsumer,
    /// The server is at `max_connections`.
    ServerFull,
    /// A dependency of the server is down (the store, Redis, the auth callback): retry later.
    Unavailable,
    /// A bug or an unexpected failure on the server side.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::BadRequest => "bad_request",
            Self::UnknownOp => "unknown_op",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RoomNotFound => "room_not_found",
            Self::RoomFull => "room_full",
            Self::RoomExists => "room_exists",
            Self::UserOffline => "user_offline",
            Self::RateLimited => "rate_limited",
            Self::SlowConsumer => "slow_consumer",
            Self::ServerFull => "server_full",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status that goes with this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson | Self::BadRequest | Self::UnknownOp => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::RoomNotFound | Self::UserOffline => StatusCode::NOT_FOUND,
            Self::RoomFull | Self::RoomExists => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::SlowConsumer | Self::ServerFull | Self::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed hub operation: a code plus a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HubError {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// A sentence for people; clients must branch on `code`, not on this.
    pub message: String,
}

impl HubError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `bad_request` with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

/// An error at the HTTP edge, rendered as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError(pub HubError);

impl ApiError {
    /// Builds an HTTP error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(HubError::new(code, message))
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.0.code.as_str(), "message": self.0.message }
        });
        (self.0.code.status(), Json(body)).into_response()
    }
}
