//! The seeds' Socket.IO chat events, exactly as the seeds write them (DESIGN.md, "Services"),
//! on the main namespace, so their pages work unchanged against Hubbub:
//!
//! - `join` with a string (the user name) names the socket and tells the others
//!   `user joined` (the name); `join` with an object is the mapped hub `join`;
//! - `chat message` (a string) reaches everyone as `chat message` `{user, text}`;
//! - a named socket's disconnect tells the others `user left` (the name);
//! - `join-room` (a room id) joins the room, gives the joiner `room-history` (the room's
//!   kept messages, oldest first) and the others in the room `user-joined` (the socket id);
//! - `send-message` `{roomId, message}` reaches the room as `receive-message`
//!   `{message, senderId, user}` (kept in the room's history);
//! - `message` `{type, payload}` (the seeds' MessageHandler) is checked against the `chat`
//!   schema and reaches `payload.to` (a user) or the sender's room as `message`
//!   `({type, payload}, {from, room?, seq?, ts})`.
//!
//! Failures reach the sender as event `error` `{message}` (and its ack, when it asked for
//! one, as `{ok: false, code, message}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::schema::{check_chat, MAX_CONTENT};
use crate::error::HubError;
use crate::hub::delivery::encode_event;
use crate::hub::{ConnId, Delivery, Hub, Payload, ReplayFrom, Right, SioArgs};
use crate::sio::mapped;
use crate::sio::{ack_result, AckSender, Args, Namespace, SocketRef};

#[derive(Debug, Default)]
struct Member {
    /// The name given with `join`.
    name: Option<String>,
    /// The last room joined with `join-room`.
    room: Option<String>,
}

/// The seeds' chat: what it remembers of each socket.
#[derive(Debug, Default)]
pub struct SeedChat {
    members: Mutex<HashMap<ConnId, Member>>,
}

impl SeedChat {
    fn members(&self) -> MutexGuard<'_, HashMap<ConnId, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The name `s` chose with `join`, else its user.
    fn name_of(&self, s: &SocketRef) -> String {
        self.members()
            .get(&s.conn().id())
            .and_then(|m| m.name.clone())
            .unwrap_or_else(|| s.user().to_string())
    }

    /// Registers the events on the main namespace and the `user left` announcement.
    pub fn install(hub: &Hub, main: &Namespace) -> Arc<Self> {
        let chat = Arc::new(Self::default());
        let c = chat.clone();
        main.on("join", move |s, args, ack| match args.values.first() {
            Some(Value::String(name)) => {
                let name = name.clone();
                c.join(s, name, ack);
            }
            _ => mapped::join(s, args, ack),
        });
        let c = chat.clone();
        main.on("chat message", move |s, args, ack| {
            c.chat_message(s, args, ack)
        });
        let c = chat.clone();
        main.on("join-room", move |s, args, ack| c.join_room(s, args, ack));
        let c = chat.clone();
        main.on("send-message", move |s, args, ack| {
            c.send_message(s, args, ack)
        });
        let c = chat.clone();
        main.on("message", move |s, args, ack| c.message(s, args, ack));
        let weak = Arc::downgrade(&chat);
        hub.on_disconnect(move |hub, conn| {
            let Some(me) = weak.upgrade() else { return };
            let gone = me.members().remove(&conn.id());
            if let Some(name) = gone.and_then(|m| m.name) {
                let _ = hub.to_all().emit("user left", Value::String(name));
            }
        });
        chat
    }

    fn join(&self, s: &SocketRef, name: String, ack: Option<AckSender>) {
        if name.is_empty() || name.len() > 200 {
            return fail(s, ack, HubError::bad_request("a name is 1 to 200 bytes"));
        }
        self.members().entry(s.conn().id()).or_default().name = Some(name.clone());
        let res = s
            .hub()
            .to_all()
            .except(s.conn().id())
            .emit("user joined", Value::String(name));
        done(s, ack, res.map(|_| json!({})));
    }

    fn chat_message(&self, s: &SocketRef, args: Args, ack: Option<AckSender>) {
        let text = match args.values.first() {
            Some(Value::String(t)) if (1..=MAX_CONTENT).contains(&t.chars().count()) => t.clone(),
            _ => {
                let e = format!("`chat message` takes a string of 1 to {MAX_CONTENT} characters");
                return fail(s, ack, HubError::bad_request(e));
            }
        };
        let user = self.name_of(s);
        let res = s
            .hub()
            .to_all()
            .from(s.user())
            .sent_by(s.conn().id())
            .emit("chat message", json!({ "user": user, "text": text }));
        done(s, ack, res.map(|_| json!({})));
    }

    fn join_room(&self, s: &SocketRef, args: Args, ack: Option<AckSender>) {
        let Some(Value::String(room)) = args.values.first() else {
            return fail(s, ack, HubError::bad_request("`join-room` takes a room id"));
        };
        let ns = s.ns().to_string();
        let joined = s
            .hub()
            .join_with(s.conn(), room, ReplayFrom::Gather(u64::MAX), |j| {
                let history: Vec<Value> = j.gathered.iter().map(|d| history_entry(d)).collect();
                encode_event(
                    &ns,
                    "room-history",
                    &SioArgs::one(Value::Array(history)),
                    None,
                )
                .into_vec()
            });
        match joined {
            Ok(j) => {
                self.members().entry(s.conn().id()).or_default().room = Some(room.clone());
                let _ = s
                    .hub()
                    .to_room(room)
                    .except(s.conn().id())
                    .transient()
                    .emit("user-joined", Value::String(s.id().to_string()));
                let mut v = json!({ "room": &*j.room, "members": j.members });
                if let Some(seq) = j.seq {
                    v["seq"] = seq.into();
                }
                ack_result(ack, Ok(v));
            }
            Err(e) => fail(s, ack, e),
        }
    }

    fn send_message(&self, s: &SocketRef, args: Args, ack: Option<AckSender>) {
        let arg = args.values.first();
        let room = match arg.and_then(|a| a.get("roomId")) {
            Some(Value::String(r)) => r.clone(),
            _ => return fail(s, ack, HubError::bad_request("`roomId` must be a string")),
        };
        let message = match arg.and_then(|a| a.get("message")) {
            None | Some(Value::Null) => {
                return fail(s, ack, HubError::bad_request("`message` is required"))
            }
            Some(m) => m.clone(),
        };
        let hub = s.hub();
        let res = hub
            .authorize(s.conn(), &room, Right::Publish)
            .and_then(|()| {
                hub.to_room(&room)
                    .from(s.user())
                    .sent_by(s.conn().id())
                    .emit(
                        "receive-message",
                        json!({ "message": message, "senderId": s.id(), "user": s.user() }),
                    )
            });
        match res {
            Ok(out) => {
                let s = s.clone();
                out.when_committed(move |r| match r {
                    Ok(out) => ack_result(ack, Ok(json!({ "seq": out.seq }))),
                    Err(e) => fail(&s, ack, e),
                })
            }
            Err(e) => fail(s, ack, e),
        }
    }

    fn message(&self, s: &SocketRef, args: Args, ack: Option<AckSender>) {
        let Some(msg) = args.values.first() else {
            return fail(
                s,
                ack,
                HubError::bad_request("`message` takes {type, payload}"),
            );
        };
        if let Err(e) = check_chat(msg, true) {
            return fail(s, ack, e);
        }
        let out = Payload::json(msg);
        let hub = s.hub();
        let to = msg["payload"].get("to").and_then(Value::as_str);
        let room = self
            .members()
            .get(&s.conn().id())
            .and_then(|m| m.room.clone());
        let res = match (to, room) {
            (Some(user), _) => hub
                .to_user(user)
                .from(s.user())
                .sent_by(s.conn().id())
                .publish("message", out),
            (None, Some(room)) => hub
                .authorize(s.conn(), &room, Right::Publish)
                .and_then(|()| {
                    hub.to_room(&room)
                        .from(s.user())
                        .sent_by(s.conn().id())
                        .publish("message", out)
                }),
            (None, None) => Err(HubError::bad_request(
                "no room to send to: join one with `join-room`, or give `payload.to`",
            )),
        };
        match res {
            Ok(out) => {
                let s = s.clone();
                out.when_committed(move |r| match r {
                    Ok(out) => ack_result(ack, Ok(json!({ "delivered": out.delivered }))),
                    Err(e) => fail(&s, ack, e),
                })
            }
            Err(e) => fail(s, ack, e),
        }
    }
}

/// A kept message as `room-history` lists it: the v1 message fields (`room`, `event`,
/// `data`, `from`, `seq`, `ts`), and for the seeds' own `receive-message`, its `message`,
/// `senderId` and `user` beside them, as the event carried them.
fn history_entry(d: &Delivery) -> Value {
    let mut v = d.to_history_json();
    if let (Some(obj), Some(m)) = (v.as_object_mut(), d.message()) {
        if &*m.event == "receive-message" {
            if let Some(Value::Object(data)) = obj.get("data").cloned() {
                for k in ["message", "senderId", "user"] {
                    if let Some(x) = data.get(k) {
                        obj.insert(k.to_string(), x.clone());
                    }
                }
            }
        }
    }
    v
}

/// Tells the sender: event `error` `{message}`, and its ack when it asked for one.
fn fail(s: &SocketRef, ack: Option<AckSender>, e: HubError) {
    s.emit(
        "error",
        json!({ "message": e.message, "code": e.code.as_str() }),
    );
    ack_result(ack, Err(e));
}

fn done(s: &SocketRef, ack: Option<AckSender>, res: Result<Value, HubError>) {
    match res {
        Ok(v) => ack_result(ack, Ok(v)),
        Err(e) => fail(s, ack, e),
    }
}
