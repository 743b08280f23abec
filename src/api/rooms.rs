//! Rooms for back ends: create, list, get, delete (the seeds' RoomController), a room's
//! history pages and who is in it.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiJson, ApiState};
use crate::error::{ApiError, ErrorCode};
use crate::hub::catalog::not_found;
use crate::services::ops::NewRoom;

pub(super) async fn create(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<NewRoom>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let info = s.hub.create_room(b.settings(&s.hub))?.committed().await?;
    Ok((StatusCode::CREATED, Json(json!(info))))
}

pub(super) async fn list(State(s): State<ApiState>) -> Json<Value> {
    Json(json!({ "rooms": s.hub.rooms() }))
}

pub(super) async fn get(
    State(s): State<ApiState>,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.hub
        .room_info(&room)
        .map(|i| Json(json!(i)))
        .ok_or_else(|| not_found(&room).into())
}

pub(super) async fn delete(
    State(s): State<ApiState>,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(c) = s.hub.delete_room(&room)? {
        c.await?;
    }
    Ok(Json(json!({ "deleted": room })))
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

/// Largest page of `GET /api/rooms/{room}/history`.
const HISTORY_PAGE_MAX: usize = 500;

pub(super) async fn history(
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
    let (messages, next) = s.hub.history(&room, q.before, limit)?;
    let messages: Vec<Value> = messages.iter().map(|d| d.to_history_json()).collect();
    Ok(Json(json!({ "messages": messages, "next_before": next })))
}

pub(super) async fn presence(
    State(s): State<ApiState>,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let users = s
        .hub
        .presence_everywhere(&room)
        .await?
        .ok_or_else(|| not_found(&room))?;
    Ok(Json(
        json!({ "room": room, "count": users.len(), "users": users }),
    ))
}
