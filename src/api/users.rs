//! Users for the seeds' BFF: who is online (users, with their connection counts and since
//! when), a user's devices, logging a user out (all devices, one, or all but one), and a
//! user's notifications.

use axum::{
    extract::{Path, Query, State},
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiJson, ApiState};
use crate::error::{ApiError, ErrorCode};
use crate::services::notifications::{Marks, Page};

pub(super) async fn online(State(s): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let users = s.hub.online_everywhere().await?;
    Ok(Json(json!({ "count": users.len(), "users": users })))
}

pub(super) async fn devices(
    State(s): State<ApiState>,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let connections = s.hub.devices_everywhere(&user).await?;
    Ok(Json(json!({
        "user": user,
        "online": !connections.is_empty(),
        "connections": connections,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisconnectBody {
    /// Only this connection.
    conn: Option<String>,
    /// Every connection but this one ("log out the others").
    except: Option<String>,
}

pub(super) async fn disconnect(
    State(s): State<ApiState>,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    // The body is optional: none disconnects every connection of the user.
    let b: DisconnectBody = if body.iter().all(u8::is_ascii_whitespace) {
        DisconnectBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            let code = if e.is_syntax() || e.is_eof() {
                ErrorCode::InvalidJson
            } else {
                ErrorCode::BadRequest
            };
            ApiError::new(code, e.to_string())
        })?
    };
    if b.conn.is_some() && b.except.is_some() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "give `conn` or `except`, not both",
        ));
    }
    let n = s
        .hub
        .disconnect_everywhere(&user, b.conn, b.except, 4000, "disconnected by the server")
        .await?;
    Ok(Json(json!({ "disconnected": n })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    unread_only: Option<bool>,
    before: Option<u64>,
    limit: Option<usize>,
}

pub(super) async fn notifications(
    State(s): State<ApiState>,
    Path(user): Path<String>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let page = Page {
        unread_only: q.unread_only.unwrap_or(false),
        before: q.before,
        limit: q.limit,
    };
    let (list, unread) = s.notifications.list(&user, page)?;
    Ok(Json(json!({ "notifications": list, "unread": unread })))
}

pub(super) async fn read(
    State(s): State<ApiState>,
    Path(user): Path<String>,
    ApiJson(b): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let marks: Marks = crate::services::ops::marks_of(&b)?;
    let (unread, commit) = s.notifications.read(&user, marks)?;
    if let Some(c) = commit {
        c.await?;
    }
    Ok(Json(json!({ "unread": unread })))
}
