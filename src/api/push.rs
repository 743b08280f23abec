//! Pushing from a back end: `POST /api/push` (to a user, a room or everyone), the seeds'
//! single-user push `POST /rest/message`, and `POST /api/notify` (a stored notification).
//! A message kept in history (a history room, a direct message) is answered once the store
//! has committed it.

use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{event_name, ApiJson, ApiState};
use crate::error::{ApiError, ErrorCode};
use crate::hub::Payload;
use crate::protocol::v1::RawJson;
use crate::services::notifications::Recipient;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PushBody {
    to: Option<String>,
    room: Option<String>,
    #[serde(default)]
    all: bool,
    event: Option<String>,
    #[serde(default)]
    data: Value,
    from: Option<String>,
}

/// Exactly one target among `to`, `room` and `all: true`.
fn one_target(to: bool, room: bool, all: bool) -> Result<(), ApiError> {
    if usize::from(to) + usize::from(room) + usize::from(all) != 1 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "give exactly one target: `to` (a user), `room`, or `all: true`",
        ));
    }
    Ok(())
}

pub(super) async fn push(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<PushBody>,
) -> Result<Json<Value>, ApiError> {
    let event = event_name(b.event)?;
    one_target(b.to.is_some(), b.room.is_some(), b.all)?;
    let em = match (&b.to, &b.room) {
        (Some(user), _) => s.hub.to_user(user),
        (_, Some(room)) => s.hub.to_room(room),
        _ => s.hub.to_all(),
    };
    let em = match b.from {
        Some(f) => em.from(f),
        None => em,
    };
    let out = em
        .counted()
        .publish(&event, Payload::json(&b.data))?
        .committed()
        .await?;
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
pub(super) struct RestMessage {
    from: String,
    to: String,
    content: Value,
}

pub(super) async fn rest_message(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<RestMessage>,
) -> Result<Json<Value>, ApiError> {
    if b.to.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`to` must not be empty",
        ));
    }
    let out = s
        .hub
        .to_user(&b.to)
        .from(b.from.as_str())
        .counted()
        .publish(
            "message",
            Payload::json(&json!({"from": b.from, "content": b.content})),
        )?
        .committed()
        .await?;
    Ok(Json(if out.online == Some(true) {
        json!({"succeed": true})
    } else {
        json!({"succeed": false, "msg": format!("user `{}` is not online", b.to)})
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifyBody {
    to: Option<String>,
    #[serde(default)]
    all: bool,
    event: Option<String>,
    #[serde(default)]
    data: Value,
}

pub(super) async fn notify(
    State(s): State<ApiState>,
    ApiJson(b): ApiJson<NotifyBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    one_target(b.to.is_some(), false, b.all)?;
    let event = match b.event {
        None => "notification".to_string(),
        some => event_name(some)?,
    };
    let to = match b.to {
        Some(u) if u.is_empty() => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "`to` must not be empty",
            ))
        }
        Some(u) => Recipient::User(u.into()),
        None => Recipient::Everyone,
    };
    let n = s
        .notifications
        .notify(to, &event, RawJson::from_value(&b.data))?;
    if let Some(c) = n.commit {
        c.await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": n.id, "delivered": n.delivered })),
    ))
}
