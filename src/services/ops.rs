//! The services' requests over v1 and Socket.IO: rooms (the seeds' RoomController: create,
//! list, get, delete), who is online, and notifications (list, mark read).
//!
//! Each request is one function from the caller's connection and its arguments (a JSON
//! object) to the answer's fields and, for a write, the store's commit; [`install`]
//! registers each as a v1 op (`{"op": "create_room", ...}`, acknowledged with the fields)
//! and as a Socket.IO event of the main namespace (acknowledged with `{ok: true, ...}` or
//! `{ok: false, code, message}`). Answers to writes wait for the commit.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::notifications::{Marks, Notifications, Page};
use crate::error::HubError;
use crate::hub::{Commit, Conn, Hub, Right, RoomSettings};
use crate::sio::{ack_result, Namespace};

/// The answer's fields, and the commit it waits for.
pub type Answer = Result<(Value, Option<Commit>), HubError>;

/// A room to create, as clients and the HTTP API describe it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoom {
    /// Its name (`room` is accepted too).
    #[serde(alias = "room")]
    pub name: String,
    /// At most this many users.
    pub max_users: Option<usize>,
    /// Joining needs a grant.
    #[serde(default)]
    pub private: bool,
    /// Messages kept (the server's `default_history` when absent).
    pub history: Option<usize>,
    /// Seconds a message is kept (the server's `history_ttl` when absent).
    pub history_ttl: Option<u64>,
    /// Presence events (on when absent).
    pub presence: Option<bool>,
    /// The schema messages must follow (`chat`).
    pub schema: Option<String>,
}

impl NewRoom {
    /// The room's settings, with the hub's defaults for what is not given.
    pub fn settings(self, hub: &Hub) -> RoomSettings {
        RoomSettings {
            name: self.name,
            max_users: self.max_users,
            private: self.private,
            history: self.history.unwrap_or(hub.config().default_history),
            history_ttl: self
                .history_ttl
                .unwrap_or(hub.config().history_ttl.as_secs()),
            presence: self.presence.unwrap_or(true),
            schema: self.schema,
        }
    }
}

/// The arguments without the v1 frame's own fields.
fn fields(args: &Value) -> Map<String, Value> {
    let mut m = args.as_object().cloned().unwrap_or_default();
    m.remove("op");
    m.remove("id");
    m
}

fn room_arg(args: &Value) -> Result<String, HubError> {
    match args.get("room") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(HubError::bad_request("`room` must be a string")),
        None => Err(HubError::bad_request("missing field `room`")),
    }
}

/// `create_room`: `{room, max_users?, private?, history?, history_ttl?, presence?,
/// schema?}` → `{room: {...}}`; `room_exists`; needs the `manage` right when auth is on.
pub fn create_room(hub: &Hub, conn: &Conn, args: &Value) -> Answer {
    let spec: NewRoom = serde_json::from_value(Value::Object(fields(args)))
        .map_err(|e| HubError::bad_request(e.to_string()))?;
    hub.authorize(conn, &spec.name, Right::Manage)?;
    let created = hub.create_room(spec.settings(hub))?;
    Ok((json!({ "room": created.info }), created.commit))
}

/// `rooms` → `{rooms: [...]}` (private rooms only for those who may join them).
pub fn list_rooms(hub: &Hub, conn: &Conn) -> Answer {
    let rooms: Vec<_> = hub
        .rooms()
        .into_iter()
        .filter(|r| !r.private || hub.authorize(conn, &r.name, Right::Join).is_ok())
        .collect();
    Ok((json!({ "rooms": rooms }), None))
}

/// `room`: `{room}` → `{room: {...}}`; `room_not_found`.
pub fn get_room(hub: &Hub, args: &Value) -> Answer {
    let name = room_arg(args)?;
    let info = hub
        .room_info(&name)
        .ok_or_else(|| crate::hub::catalog::not_found(&name))?;
    Ok((json!({ "room": info }), None))
}

/// `delete_room`: `{room}` → `{deleted: room}`; `room_not_found`; needs `manage`.
pub fn delete_room(hub: &Hub, conn: &Conn, args: &Value) -> Answer {
    let name = room_arg(args)?;
    hub.authorize(conn, &name, Right::Manage)?;
    let commit = hub.delete_room(&name)?;
    Ok((json!({ "deleted": name }), commit))
}

/// `online` → `{users: [{user, connections, since}], count}`: who is online (users, not
/// connections), for the chat page.
pub fn online(hub: &Hub) -> Answer {
    let users = hub.online_users();
    Ok((json!({ "count": users.len(), "users": users }), None))
}

/// `notifications`: `{unread_only?, before?, limit?}` → `{notifications: [...], unread}`.
pub fn list_notifications(svc: &Notifications, conn: &Conn, args: &Value) -> Answer {
    let page = page_of(args)?;
    let (list, unread) = svc.list(conn.user(), page)?;
    Ok((json!({ "notifications": list, "unread": unread }), None))
}

/// The listing options of a request.
pub fn page_of(args: &Value) -> Result<Page, HubError> {
    let u64_field = |k: &str| match args.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| HubError::bad_request(format!("`{k}` must be a non-negative integer"))),
    };
    let unread_only = match args.get("unread_only") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(HubError::bad_request("`unread_only` must be a boolean")),
    };
    Ok(Page {
        unread_only,
        before: u64_field("before")?,
        limit: u64_field("limit")?.map(|n| n as usize),
    })
}

/// What a `read` request marks: `{ids: [...]}` or `{all: true}`.
pub fn marks_of(args: &Value) -> Result<Marks, HubError> {
    match (args.get("ids"), args.get("all")) {
        (Some(Value::Array(ids)), None) => ids
            .iter()
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| HubError::bad_request("`ids` must hold integers"))
            })
            .collect::<Result<Vec<u64>, _>>()
            .map(Marks::Ids),
        (None, Some(Value::Bool(true))) => Ok(Marks::All),
        _ => Err(HubError::bad_request(
            "give `ids` (an array of notification ids) or `all: true`",
        )),
    }
}

/// `read`: `{ids}` or `{all: true}` → `{unread}`.
pub fn read(svc: &Notifications, conn: &Conn, args: &Value) -> Answer {
    let marks = marks_of(args)?;
    let (unread, commit) = svc.read(conn.user(), marks)?;
    Ok((json!({ "unread": unread }), commit))
}

type Handler = Arc<dyn Fn(&Hub, &Arc<Conn>, &Value) -> Answer + Send + Sync>;

/// Registers the requests as v1 ops and as events of the Socket.IO namespace `main`.
pub fn install(hub: &Hub, main: &Namespace, notifications: &Arc<Notifications>) {
    let n = notifications.clone();
    let m = notifications.clone();
    let handlers: [(&str, Handler); 7] = [
        ("create_room", Arc::new(|h, c, a| create_room(h, c, a))),
        ("rooms", Arc::new(|h, c, _| list_rooms(h, c))),
        ("room", Arc::new(|h, _, a| get_room(h, a))),
        ("delete_room", Arc::new(|h, c, a| delete_room(h, c, a))),
        ("online", Arc::new(|h, _, _| online(h))),
        (
            "notifications",
            Arc::new(move |_, c, a| list_notifications(&n, c, a)),
        ),
        ("read", Arc::new(move |_, c, a| read(&m, c, a))),
    ];
    for (name, f) in handlers {
        let v1 = f.clone();
        hub.on_op(name, move |call| {
            let answer = v1(&call.hub, &call.conn, &call.frame);
            async move {
                let (fields, commit) = answer?;
                if let Some(c) = commit {
                    c.await?;
                }
                Ok(Some(fields))
            }
        });
        let hub = hub.clone();
        main.on(name, move |s, args, ack| {
            let arg = args.values.first().cloned().unwrap_or(Value::Null);
            match f(&hub, s.conn(), &arg) {
                Ok((fields, Some(commit))) => {
                    commit.then(move |r| ack_result(ack, r.map(|()| fields)));
                }
                Ok((fields, None)) => ack_result(ack, Ok(fields)),
                Err(e) => ack_result(ack, Err(e)),
            }
        });
    }
}
