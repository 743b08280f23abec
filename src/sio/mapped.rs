//! The standalone server's Socket.IO events mapped onto hub operations (DESIGN.md,
//! "Socket.IO"): `join`, `leave`, `publish`, `send`, `broadcast` mirror the v1 ops, and
//! `request` asks every socket of a user and collects their answers. Each is acknowledged
//! with `{ok: true, ...the v1 ack fields}` or `{ok: false, code, message}`; a message kept
//! in history is acknowledged once the store has committed it.
//!
//! The handlers are public so that an application can wrap one (the services' `join` also
//! takes the seeds' `join(user name)`) and fall back to it.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::socket::{AckSender, Args, Namespace, SocketRef};
use crate::error::{ErrorCode, HubError};
use crate::hub::{Emitted, Payload, ReplayFrom, Right, SioArgs};
use crate::protocol::v1::RawJson;

/// Answers an acknowledgement with `{ok: true, ...fields}` or `{ok: false, code, message}`;
/// nothing when the client asked for none.
pub fn ack_result(ack: Option<AckSender>, res: Result<Value, HubError>) {
    let Some(ack) = ack else { return };
    let v = match res {
        Ok(mut v) => {
            match &mut v {
                Value::Object(o) => {
                    o.insert("ok".into(), Value::Bool(true));
                }
                _ => v = serde_json::json!({"ok": true}),
            }
            v
        }
        Err(e) => {
            serde_json::json!({"ok": false, "code": e.code.as_str(), "message": e.message})
        }
    };
    ack.send_value(v);
}

/// Acknowledges an emit once it is durable, with the fields `fields` makes of it. A client
/// that asked for no ack hears of a failure (refused, or lost by the store) as an `error`
/// event `{code, message}`, as a v1 client gets an `error` without an id.
fn ack_when_committed(
    s: &SocketRef,
    ack: Option<AckSender>,
    res: Result<Emitted, HubError>,
    fields: impl FnOnce(&Emitted) -> Value + Send + 'static,
) {
    let tell = |s: &SocketRef, ack: Option<AckSender>, e: HubError| match ack {
        Some(_) => ack_result(ack, Err(e)),
        None => s.emit(
            "error",
            serde_json::json!({"code": e.code.as_str(), "message": e.message}),
        ),
    };
    match res {
        // The answer is built only for a client that asked for one (the hot path of `send`).
        Ok(out) if out.is_settled() => {
            if ack.is_some() {
                ack_result(ack, Ok(fields(&out)));
            }
        }
        Ok(out) => {
            let s = s.clone();
            out.when_committed(move |r| match r {
                Ok(out) => ack_result(ack, Ok(fields(&out))),
                Err(e) => tell(&s, ack, e),
            })
        }
        Err(e) => tell(s, ack, e),
    }
}

fn field<'a>(args: &'a Args, name: &str) -> Option<&'a Value> {
    args.values.first().and_then(|a| a.get(name))
}

fn str_field<'a>(args: &'a Args, name: &str) -> Result<&'a str, HubError> {
    field(args, name)
        .and_then(Value::as_str)
        .ok_or_else(|| HubError::bad_request(format!("`{name}` must be a string")))
}

/// The `data` field as a hub payload: attachments become `{"_binary": ...}`.
fn data_of(args: &Args) -> Payload {
    let data = field(args, "data");
    if args.bin.is_empty() {
        // No attachments, so no placeholders to replace: serialize in place.
        return Payload::json(data.unwrap_or(&Value::Null));
    }
    let v = data.cloned().unwrap_or(Value::Null);
    let bin_args = SioArgs {
        values: vec![v],
        bin: args.bin.clone(),
    };
    Payload::json(&bin_args.to_v1_values()[0])
}

/// `join` `{room, since?, history?}` → `{room, seq?, members, gap?}`.
pub fn join(s: &SocketRef, args: Args, ack: Option<AckSender>) {
    let res = (|| {
        let room = str_field(&args, "room")?;
        let replay = match (
            field(&args, "since").and_then(Value::as_u64),
            field(&args, "history").and_then(Value::as_u64),
        ) {
            (Some(n), _) => ReplayFrom::Since(n),
            (None, Some(n)) => ReplayFrom::Latest(n),
            _ => ReplayFrom::None,
        };
        let j =
            s.ns.hub()
                .join_with(s.conn(), room, replay, |_| Vec::new())?;
        let mut v = serde_json::json!({"room": j.room.as_ref(), "members": j.members});
        if let Some(seq) = j.seq {
            v["seq"] = seq.into();
        }
        if j.gap {
            v["gap"] = true.into();
        }
        Ok(v)
    })();
    ack_result(ack, res);
}

/// `leave` `{room}` → `{room}`.
pub fn leave(s: &SocketRef, args: Args, ack: Option<AckSender>) {
    let res = str_field(&args, "room").map(|room| {
        s.leave(room);
        serde_json::json!({ "room": room })
    });
    ack_result(ack, res);
}

/// How a `publish` is delivered: its optional flags.
struct PublishFlags {
    volatile: bool,
    exclude_self: bool,
    transient: bool,
}

/// `publish` `{room, event, data, volatile?, exclude_self?, transient?}` → `{seq?}`.
pub fn publish(s: &SocketRef, args: Args, ack: Option<AckSender>) {
    let flag = |name| field(&args, name) == Some(&Value::Bool(true));
    let flags = PublishFlags {
        volatile: flag("volatile"),
        exclude_self: flag("exclude_self"),
        transient: flag("transient"),
    };
    let res = str_field(&args, "room").and_then(|room| {
        let event = str_field(&args, "event")?;
        publish_to(s, room, event, data_of(&args), &flags)
    });
    ack_publish(s, ack, res);
}

/// `publish` from its raw JSON (see [`super::fast`]).
fn publish_raw(s: &SocketRef, frame: &Bytes, arg: &RawValue, ack: Option<AckSender>) -> bool {
    #[derive(Deserialize)]
    struct Fields<'a> {
        room: &'a str,
        event: &'a str,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
        #[serde(default)]
        volatile: bool,
        #[serde(default)]
        exclude_self: bool,
        #[serde(default)]
        transient: bool,
    }
    let Ok(f) = serde_json::from_str::<Fields<'_>>(arg.get()) else {
        return false;
    };
    let data = raw_data(frame, f.data);
    let flags = PublishFlags {
        volatile: f.volatile,
        exclude_self: f.exclude_self,
        transient: f.transient,
    };
    let res = publish_to(s, f.room, f.event, data, &flags);
    ack_publish(s, ack, res);
    true
}

fn publish_to(
    s: &SocketRef,
    room: &str,
    event: &str,
    data: Payload,
    flags: &PublishFlags,
) -> Result<Emitted, HubError> {
    let hub = s.ns.hub();
    hub.authorize(s.conn(), room, Right::Publish)?;
    let mut em = hub
        .to_room(room)
        .ns(s.ns.name_arc())
        .from(s.conn().user_arc())
        .sent_by(s.conn().id());
    if flags.exclude_self {
        em = em.except(s.conn().id());
    }
    if flags.volatile {
        em = em.volatile();
    }
    if flags.transient {
        em = em.transient();
    }
    em.publish(event, data)
}

fn ack_publish(s: &SocketRef, ack: Option<AckSender>, res: Result<Emitted, HubError>) {
    ack_when_committed(s, ack, res, |out| match out.seq {
        Some(seq) => serde_json::json!({ "seq": seq }),
        None => serde_json::json!({}),
    });
}

/// `send` `{to, event, data}` → `{delivered, seq?}`; `user_offline` when the user has no
/// connection and the message is not kept for them.
pub fn send(s: &SocketRef, args: Args, ack: Option<AckSender>) {
    let res = str_field(&args, "to").and_then(|to| {
        let event = str_field(&args, "event")?;
        send_to(s, to, event, data_of(&args))
    });
    ack_send(s, ack, res);
}

/// `send` from its raw JSON (see [`super::fast`]).
fn send_raw(s: &SocketRef, frame: &Bytes, arg: &RawValue, ack: Option<AckSender>) -> bool {
    #[derive(Deserialize)]
    struct Fields<'a> {
        to: &'a str,
        event: &'a str,
        #[serde(borrow)]
        data: Option<&'a RawValue>,
    }
    let Ok(f) = serde_json::from_str::<Fields<'_>>(arg.get()) else {
        return false;
    };
    let data = raw_data(frame, f.data);
    let res = send_to(s, f.to, f.event, data);
    ack_send(s, ack, res);
    true
}

fn send_to(s: &SocketRef, to: &str, event: &str, data: Payload) -> Result<Emitted, HubError> {
    if !crate::protocol::v1::is_user_name(to) {
        return Err(HubError::bad_request(
            "`to` must be a user name: 1 to 200 bytes, no control characters",
        ));
    }
    let out =
        s.ns.hub()
            .to_user(to)
            .ns(s.ns.name_arc())
            .from(s.conn().user_arc())
            .sent_by(s.conn().id())
            .counted()
            .publish(event, data)?;
    out.require_online(to)
}

fn ack_send(s: &SocketRef, ack: Option<AckSender>, res: Result<Emitted, HubError>) {
    ack_when_committed(s, ack, res, |out| {
        let mut v = serde_json::json!({ "delivered": out.delivered });
        if let Some(seq) = out.seq {
            v["seq"] = seq.into();
        }
        v
    });
}

/// A raw `data` argument as a payload sharing the frame's bytes (its numbers were checked
/// with the whole argument, [`crate::protocol::socketio::event_head`]).
fn raw_data(frame: &Bytes, data: Option<&RawValue>) -> Payload {
    match data {
        None => Payload::null(),
        Some(raw) => Payload::Json(RawJson::checked(frame.slice_ref(raw.get().as_bytes()))),
    }
}

/// `request` `{to, event, data, timeout_ms?}`: asks every socket of user `to` in this
/// namespace and answers `{responses: [...], timeouts}`.
pub fn request(s: &SocketRef, args: Args, ack: Option<AckSender>) {
    let parsed = (|| {
        let to = str_field(&args, "to")?.to_string();
        let event = str_field(&args, "event")?.to_string();
        let timeout = field(&args, "timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(5000);
        Ok((to, event, timeout.min(60_000)))
    })();
    let (to, event, timeout) = match parsed {
        Ok(v) => v,
        Err(e) => return ack_result(ack, Err(e)),
    };
    let targets: Vec<SocketRef> =
        s.ns.sockets()
            .into_iter()
            .filter(|t| t.user() == to && t.id() != s.id())
            .collect();
    if targets.is_empty() {
        return ack_result(
            ack,
            Err(HubError::new(
                ErrorCode::UserOffline,
                format!("user `{to}` is not online"),
            )),
        );
    }
    let data = field(&args, "data").cloned().unwrap_or(Value::Null);
    let bin = args.bin.clone();
    tokio::spawn(async move {
        let asks = targets.iter().map(|t| {
            let args = Args {
                values: vec![data.clone()],
                bin: bin.clone(),
            };
            t.emit_with_ack(&event, args, Duration::from_millis(timeout))
        });
        let results = futures_util::future::join_all(asks).await;
        let responses: Vec<Value> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|a| a.values.first().cloned().unwrap_or(Value::Null))
            .collect();
        let timeouts = results.iter().filter(|r| r.is_err()).count();
        ack_result(
            ack,
            Ok(serde_json::json!({"responses": responses, "timeouts": timeouts})),
        );
    });
}

/// `broadcast` `{event, data}` → `{}`.
pub fn broadcast(s: &SocketRef, args: Args, ack: Option<AckSender>) {
    let res = (|| {
        let event = str_field(&args, "event")?;
        let hub = s.ns.hub();
        hub.authorize_broadcast(s.conn())?;
        hub.to_all()
            .ns(s.ns.name_arc())
            .from(s.conn().user_arc())
            .sent_by(s.conn().id())
            .publish(event, data_of(&args))?;
        Ok(serde_json::json!({}))
    })();
    ack_result(ack, res);
}

/// Registers the mapped events on a namespace.
pub fn install_hub_events(ns: &Namespace) {
    ns.on("join", join);
    ns.on("leave", leave);
    ns.on("publish", publish);
    ns.on_raw("publish", publish_raw);
    ns.on("send", send);
    ns.on_raw("send", send_raw);
    ns.on("request", request);
    ns.on("broadcast", broadcast);
}
