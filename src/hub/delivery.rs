//! What the hub delivers: one [`Delivery`] per message, encoded once per wire format.
//!
//! A delivery is built once, wrapped in an `Arc`, and handed to every recipient. The first
//! recipient of a given wire format encodes it; everyone else gets a reference-counted clone
//! of the same bytes. History keeps the same `Arc`, so a replay costs no encoding either.
//!
//! Two shapes of message exist (DESIGN.md, "Socket.IO"): a *hub* message (made by a v1 op,
//! a mapped Socket.IO event or the HTTP API) reaches Socket.IO clients as
//! `[event, data, {room, from, seq, ts}]`; an *exact* message (emitted by server-side code)
//! reaches them with exactly the arguments given. Both reach v1 clients as `message`.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

use super::outbox::OutFrame;
use crate::protocol::{json::ObjectWriter, socketio, v1, v1::RawJson};

/// A message payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Any JSON value, as validated JSON text.
    Json(RawJson),
    /// Raw bytes (Socket.IO attachments; `{"_binary": "<base64>"}` for v1 clients).
    Binary(Bytes),
}

impl Payload {
    /// JSON `null`.
    pub fn null() -> Self {
        Self::Json(RawJson::null())
    }

    /// Serializes any value as a JSON payload.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        Self::Json(RawJson::from_value(value))
    }

    /// The payload as v1 JSON text (binary becomes `{"_binary": "<base64>"}`).
    pub fn to_v1_json(&self) -> Bytes {
        match self {
            Self::Json(raw) => raw.bytes().clone(),
            Self::Binary(b) => binary_object(b),
        }
    }

    /// The payload as a `serde_json::Value` (binary as `{"_binary": ...}`).
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.to_v1_json()).unwrap_or_default()
    }

    /// Size of the payload in bytes, for accounting.
    pub fn len(&self) -> usize {
        match self {
            Self::Json(raw) => raw.as_bytes().len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Value> for Payload {
    fn from(v: Value) -> Self {
        Self::json(&v)
    }
}

fn binary_object(b: &[u8]) -> Bytes {
    let mut w = ObjectWriter::with_capacity(16 + b.len() * 4 / 3);
    w.str(
        "_binary",
        &base64::engine::general_purpose::STANDARD.encode(b),
    );
    w.finish()
}

/// Socket.IO event arguments: JSON values in which binary values are
/// `{"_placeholder": true, "num": i}` objects pointing into `bin`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SioArgs {
    /// The arguments.
    pub values: Vec<Value>,
    /// Binary attachments referred to by placeholders.
    pub bin: Vec<Bytes>,
}

impl SioArgs {
    /// One JSON argument.
    pub fn one(v: Value) -> Self {
        Self {
            values: vec![v],
            bin: Vec::new(),
        }
    }

    /// Replaces placeholders with `{"_binary": "<base64>"}` objects, for v1 clients.
    pub fn to_v1_values(&self) -> Vec<Value> {
        self.values
            .iter()
            .map(|v| replace_placeholders(v, &self.bin))
            .collect()
    }
}

fn replace_placeholders(v: &Value, bin: &[Bytes]) -> Value {
    if let Some(n) = socketio::placeholder_num(v) {
        if let Some(b) = bin.get(n) {
            return serde_json::from_slice(&binary_object(b)).unwrap_or_default();
        }
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| replace_placeholders(x, bin)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), replace_placeholders(x, bin)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Turns `{"_binary": "<base64>"}` objects (v1's binary) into placeholders and attachments.
fn extract_binary(v: &mut Value, bin: &mut Vec<Bytes>) {
    if let Value::Object(o) = v {
        if o.len() == 1 {
            if let Some(Value::String(b64)) = o.get("_binary") {
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    *v = socketio::placeholder(bin.len());
                    bin.push(Bytes::from(bytes));
                    return;
                }
            }
        }
    }
    match v {
        Value::Array(a) => a.iter_mut().for_each(|x| extract_binary(x, bin)),
        Value::Object(o) => o.values_mut().for_each(|x| extract_binary(x, bin)),
        _ => {}
    }
}

/// What a message carries, in one of the two shapes.
#[derive(Clone, Debug)]
pub enum MessageBody {
    /// A hub message: one payload; Socket.IO clients also get `{room, from, seq, ts}`.
    Hub(Payload),
    /// Socket.IO arguments, delivered exactly as given.
    Args(SioArgs),
}

/// A message to an event: what `publish`, `send`, `broadcast`, the HTTP API and server-side
/// emits deliver.
#[derive(Clone, Debug)]
pub struct Message {
    /// The namespace (`/` for v1 clients and the HTTP API).
    pub ns: Arc<str>,
    /// The room it was published to, if any.
    pub room: Option<Arc<str>>,
    /// The event name.
    pub event: Arc<str>,
    /// The payload.
    pub body: MessageBody,
    /// The sender's user id, when a user sent it.
    pub from: Option<Arc<str>>,
    /// The user it was addressed to, for a direct message kept in history.
    pub to: Option<Arc<str>>,
    /// The room sequence number (history rooms only).
    pub seq: Option<u64>,
    /// Milliseconds since the epoch.
    pub ts: u64,
    /// Socket.IO connection-state-recovery offset, appended as the last argument.
    pub offset: Option<Arc<str>>,
}

impl Message {
    /// The room as clients see it: none for the hub's internal rooms (a direct-message
    /// conversation), whose name means nothing to them.
    pub fn shown_room(&self) -> Option<&str> {
        self.room
            .as_deref()
            .filter(|r| !super::room::is_internal(r))
    }

    /// The `data` v1 clients see: the payload, or the arguments (one: itself; several: an
    /// array), binary as `{"_binary": ...}`.
    pub fn v1_data(&self) -> Bytes {
        match &self.body {
            MessageBody::Hub(p) => p.to_v1_json(),
            MessageBody::Args(a) => {
                let mut values = a.to_v1_values();
                let v = if values.len() == 1 {
                    values.pop().unwrap_or_default()
                } else {
                    Value::Array(values)
                };
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
        }
    }

    /// The common case written straight into one buffer: a hub-shaped JSON message with no
    /// binary inside becomes `42<ns,>["event",<data as sent>,{meta}(,"offset")]` without
    /// building a `Value` tree. `None` when the message needs the general path.
    fn encode_sio_direct(&self) -> Option<OutFrame> {
        let MessageBody::Hub(Payload::Json(raw)) = &self.body else {
            return None;
        };
        let data = raw.as_bytes();
        if data.windows(9).any(|w| w == b"\"_binary\"") {
            return None;
        }
        let len = |s: Option<&str>| s.map_or(0, |s| s.len() + 10);
        let cap = 64
            + self.ns.len()
            + self.event.len()
            + data.len()
            + len(self.from.as_deref())
            + len(self.shown_room())
            + len(self.to.as_deref())
            + len(self.offset.as_deref());
        // One buffer: `4` (the Engine.IO message type), the Socket.IO event header, then
        // the arguments, the meta object written in place.
        let mut out = Vec::with_capacity(cap);
        out.extend_from_slice(b"42");
        if &*self.ns != "/" {
            out.extend_from_slice(self.ns.as_bytes());
            out.push(b',');
        }
        out.push(b'[');
        serde_json::to_writer(&mut out, self.event.as_ref()).ok()?;
        out.push(b',');
        out.extend_from_slice(data);
        out.push(b',');
        let mut meta = ObjectWriter::within(out);
        if let Some(from) = &self.from {
            meta.str("from", from);
        }
        if let Some(room) = self.shown_room() {
            meta.str("room", room);
        }
        if let Some(seq) = self.seq {
            meta.u64("seq", seq);
        }
        if let Some(to) = &self.to {
            meta.str("to", to);
        }
        meta.u64("ts", self.ts);
        let mut out = meta.finish_vec();
        if let Some(off) = &self.offset {
            out.push(b',');
            serde_json::to_writer(&mut out, off.as_ref()).ok()?;
        }
        out.push(b']');
        Some(OutFrame::Text(Bytes::from(out)))
    }

    /// The Socket.IO event arguments (without the event name).
    pub fn sio_args(&self) -> SioArgs {
        match &self.body {
            MessageBody::Args(a) => a.clone(),
            MessageBody::Hub(p) => {
                let mut bin = Vec::new();
                let data = match p {
                    Payload::Binary(b) => {
                        bin.push(b.clone());
                        socketio::placeholder(0)
                    }
                    Payload::Json(raw) => {
                        let mut v = raw.to_value();
                        if raw.as_bytes().windows(9).any(|w| w == b"\"_binary\"") {
                            extract_binary(&mut v, &mut bin);
                        }
                        v
                    }
                };
                let mut meta = serde_json::Map::new();
                if let Some(room) = self.shown_room() {
                    meta.insert("room".into(), Value::from(room));
                }
                if let Some(from) = &self.from {
                    meta.insert("from".into(), Value::from(from.as_ref()));
                }
                if let Some(seq) = self.seq {
                    meta.insert("seq".into(), Value::from(seq));
                }
                if let Some(to) = &self.to {
                    meta.insert("to".into(), Value::from(to.as_ref()));
                }
                meta.insert("ts".into(), Value::from(self.ts));
                SioArgs {
                    values: vec![data, Value::Object(meta)],
                    bin,
                }
            }
        }
    }
}

/// What a delivery carries.
#[derive(Clone, Debug)]
pub enum Body {
    /// An application message.
    Message(Message),
    /// A user's first connection joined a room, or its last one left.
    Presence {
        /// The namespace.
        ns: Arc<str>,
        /// The room.
        room: Arc<str>,
        /// The user.
        user: Arc<str>,
        /// True on join, false on leave.
        joined: bool,
        /// Users in the room after the change.
        count: u64,
    },
    /// A server frame other than a message (the notification service's `notification` and
    /// `unread`): v1 clients get `{"op": name, ...fields}`, Socket.IO clients the event
    /// `name` with `fields` as its one argument.
    Notice {
        /// The namespace.
        ns: Arc<str>,
        /// The op (v1) or event (Socket.IO) name.
        name: Arc<str>,
        /// A JSON object.
        fields: RawJson,
    },
}

/// One message on its way to many recipients, with its encodings cached.
#[derive(Debug)]
pub struct Delivery {
    /// What is delivered.
    pub body: Body,
    v1: OnceLock<Bytes>,
    sio: OnceLock<SioFrames>,
    /// The rooms it was addressed to when its message names none (an emit to several rooms,
    /// a broadcast from another server): how a recipient tells which of its rooms it came
    /// through.
    via: OnceLock<Box<[Arc<str>]>>,
    /// Encodings of other front ends, by a key of theirs (a GraphQL selection's shape).
    shaped: OnceLock<std::sync::Mutex<Shaped>>,
}

/// A delivery's Socket.IO frames: almost always one (no attachments), then kept unboxed.
#[derive(Debug)]
enum SioFrames {
    One(OutFrame),
    Many(Box<[OutFrame]>),
}

impl SioFrames {
    fn as_slice(&self) -> &[OutFrame] {
        match self {
            Self::One(f) => std::slice::from_ref(f),
            Self::Many(fs) => fs,
        }
    }
}

/// Encodings kept per delivery at most (see [`Delivery::shared`]).
const SHARED_MAX: usize = 8;

/// Encodings by key (see [`Delivery::shared`]): a few at most, so a list.
type Shaped = Vec<(Arc<str>, Bytes)>;

impl Delivery {
    /// Wraps a body for delivery.
    pub fn new(body: Body) -> Arc<Self> {
        Arc::new(Self {
            body,
            v1: OnceLock::new(),
            sio: OnceLock::new(),
            via: OnceLock::new(),
            shaped: OnceLock::new(),
        })
    }

    /// Records the rooms a delivery whose message names none was addressed to (only the
    /// first call counts).
    pub fn set_via(&self, rooms: &[Arc<str>]) {
        if !rooms.is_empty() {
            let _ = self.via.set(rooms.into());
        }
    }

    /// The rooms it was addressed to, when its message names none ([`Self::set_via`]).
    pub fn via(&self) -> &[Arc<str>] {
        self.via.get().map_or(&[], |v| v)
    }

    /// The encoding named `key`, made by `encode` the first time it is asked for and shared
    /// by every recipient that asks for the same key (GraphQL subscribers that selected the
    /// same fields).
    pub fn shared(&self, key: &Arc<str>, encode: impl FnOnce(&Self) -> Bytes) -> Bytes {
        let cache = self.shaped.get_or_init(Default::default);
        let mut cache = super::shards::lock(cache);
        if let Some((_, b)) = cache.iter().find(|(k, _)| k == key) {
            return b.clone();
        }
        let b = encode(self);
        // A few shapes are shared by many; past that each asks for its own, uncached, so
        // no client can grow a kept message's memory with shapes of its making.
        if cache.len() < SHARED_MAX {
            cache.push((key.clone(), b.clone()));
        }
        b
    }

    /// The message, when this is one.
    pub fn message(&self) -> Option<&Message> {
        match &self.body {
            Body::Message(m) => Some(m),
            Body::Presence { .. } | Body::Notice { .. } => None,
        }
    }

    /// The v1 text frame, encoded on first use.
    pub fn v1_frame(&self) -> OutFrame {
        OutFrame::Text(self.v1_bytes().clone())
    }

    fn v1_bytes(&self) -> &Bytes {
        self.v1.get_or_init(|| self.encode_v1())
    }

    /// The Engine.IO frames for Socket.IO clients (an event packet, then any binary
    /// attachments), encoded on first use.
    pub fn sio_frames(&self) -> &[OutFrame] {
        self.sio.get_or_init(|| self.encode_sio()).as_slice()
    }

    fn encode_v1(&self) -> Bytes {
        match &self.body {
            Body::Message(m) => {
                let data = m.v1_data();
                v1::encode_message(&v1::MessageFields {
                    room: m.shown_room(),
                    event: &m.event,
                    data: &data,
                    from: m.from.as_deref(),
                    to: m.to.as_deref(),
                    seq: m.seq,
                    ts: m.ts,
                })
            }
            Body::Presence {
                room,
                user,
                joined,
                count,
                ..
            } => v1::encode_presence(room, user, *joined, *count),
            Body::Notice { name, fields, .. } => v1::encode_notice(name, fields.as_bytes()),
        }
    }

    fn encode_sio(&self) -> SioFrames {
        let (ns, event, args) = match &self.body {
            Body::Message(m) => {
                if let Some(frame) = m.encode_sio_direct() {
                    return SioFrames::One(frame);
                }
                let mut args = m.sio_args();
                if let Some(off) = &m.offset {
                    args.values.push(Value::from(off.as_ref()));
                }
                (m.ns.clone(), m.event.clone(), args)
            }
            Body::Presence {
                ns,
                room,
                user,
                joined,
                count,
            } => {
                let key = if *joined { "joined" } else { "left" };
                let mut o = serde_json::Map::new();
                o.insert("room".into(), Value::from(room.as_ref()));
                o.insert(key.into(), Value::from(user.as_ref()));
                o.insert("count".into(), Value::from(*count));
                (
                    ns.clone(),
                    Arc::from("presence"),
                    SioArgs::one(Value::Object(o)),
                )
            }
            Body::Notice { ns, name, fields } => {
                (ns.clone(), name.clone(), SioArgs::one(fields.to_value()))
            }
        };
        SioFrames::Many(encode_event(&ns, &event, &args, None))
    }

    /// The v1 `message` object without `op`, as the history API returns it.
    pub fn to_history_json(&self) -> Value {
        let mut v: Value = serde_json::from_slice(self.v1_bytes()).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.remove("op");
        }
        v
    }
}

/// Encodes a Socket.IO event (`42[...]` or `45n-[...]` plus attachments) as Engine.IO frames.
pub fn encode_event(ns: &str, event: &str, args: &SioArgs, id: Option<u64>) -> Box<[OutFrame]> {
    let mut array = Vec::with_capacity(args.values.len() + 1);
    array.push(Value::from(event));
    array.extend(args.values.iter().cloned());
    encode_packet(
        socketio::Kind::Event,
        ns,
        id,
        &Value::Array(array),
        &args.bin,
    )
}

/// Encodes any Socket.IO packet with a JSON payload and attachments as Engine.IO frames;
/// the binary kind is chosen when attachments exist.
pub fn encode_packet(
    kind: socketio::Kind,
    ns: &str,
    id: Option<u64>,
    payload: &Value,
    bin: &[Bytes],
) -> Box<[OutFrame]> {
    let json = serde_json::to_vec(payload).unwrap_or_default();
    let kind = match (kind, bin.is_empty()) {
        (socketio::Kind::Event, false) => socketio::Kind::BinaryEvent,
        (socketio::Kind::Ack, false) => socketio::Kind::BinaryAck,
        (k, _) => k,
    };
    let mut frames = Vec::with_capacity(1 + bin.len());
    frames.push(OutFrame::Text(Bytes::from(socketio::encode(
        kind,
        bin.len(),
        ns,
        id,
        &json,
    ))));
    frames.extend(bin.iter().cloned().map(OutFrame::Binary));
    frames.into_boxed_slice()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(body: MessageBody) -> Arc<Delivery> {
        Delivery::new(Body::Message(Message {
            ns: "/".into(),
            room: Some("r".into()),
            event: "e".into(),
            body,
            from: Some("u".into()),
            to: None,
            seq: Some(1),
            ts: 5,
            offset: None,
        }))
    }

    fn text(f: &OutFrame) -> &[u8] {
        match f {
            OutFrame::Text(b) => b,
            OutFrame::Binary(_) => panic!("expected text"),
        }
    }

    #[test]
    fn encodes_once_and_shares_bytes() {
        let d = msg(MessageBody::Hub(Payload::Binary(Bytes::from_static(
            b"\x00\x01",
        ))));
        let (OutFrame::Text(a), OutFrame::Text(b)) = (d.v1_frame(), d.v1_frame()) else {
            panic!("v1 frames are text")
        };
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second recipient shares the bytes"
        );
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["data"], json!({"_binary": "AAE="}));
        assert_eq!(d.to_history_json().get("op"), None);
    }

    #[test]
    fn hub_messages_reach_socketio_with_meta_and_binary_as_attachments() {
        let d = msg(MessageBody::Hub(Payload::json(
            &json!({"pic": {"_binary": "AAE="}, "n": 1}),
        )));
        let frames = d.sio_frames();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            std::str::from_utf8(text(&frames[0])).unwrap(),
            r#"451-["e",{"n":1,"pic":{"_placeholder":true,"num":0}},{"from":"u","room":"r","seq":1,"ts":5}]"#
        );
        assert_eq!(frames[1], OutFrame::Binary(Bytes::from_static(&[0, 1])));
    }

    #[test]
    fn the_direct_socketio_encoding_matches_the_general_one() {
        for (ns, room, from, seq, offset) in [
            ("/", Some("r\"1"), Some("u"), Some(7), Some("o-1")),
            ("/chat", None, None, None, None),
        ] {
            let m = Message {
                ns: ns.into(),
                room: room.map(Into::into),
                event: "ev\n".into(),
                body: MessageBody::Hub(Payload::json(&json!({"a": [1, "x"], "b": null}))),
                from: from.map(Into::into),
                to: None,
                seq,
                ts: 99,
                offset: offset.map(Into::into),
            };
            let OutFrame::Text(direct) = m.encode_sio_direct().expect("the direct path") else {
                panic!("text")
            };
            let mut args = m.sio_args();
            if let Some(off) = &m.offset {
                args.values.push(Value::from(off.as_ref()));
            }
            let general = encode_event(ns, &m.event, &args, None);
            let (a, b) = (
                socketio::decode(&std::str::from_utf8(&direct).unwrap()[1..]),
                socketio::decode(&std::str::from_utf8(text(&general[0])).unwrap()[1..]),
            );
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert!(a.is_ok());
        }
    }

    #[test]
    fn exact_args_reach_v1_as_data_and_socketio_unchanged() {
        let args = SioArgs {
            values: vec![json!("a"), json!({"b": socketio::placeholder(0)})],
            bin: vec![Bytes::from_static(&[7])],
        };
        let d = msg(MessageBody::Args(args));
        let v: Value = serde_json::from_slice(text(&d.v1_frame())).unwrap();
        assert_eq!(v["data"], json!(["a", {"b": {"_binary": "Bw=="}}]));
        let frames = d.sio_frames();
        assert_eq!(
            std::str::from_utf8(text(&frames[0])).unwrap(),
            r#"451-["e","a",{"b":{"_placeholder":true,"num":0}}]"#
        );
    }

    #[test]
    fn presence_reaches_socketio_as_an_event_in_its_namespace() {
        let d = Delivery::new(Body::Presence {
            ns: "/chat".into(),
            room: "r".into(),
            user: "bob".into(),
            joined: true,
            count: 2,
        });
        assert_eq!(
            std::str::from_utf8(text(&d.sio_frames()[0])).unwrap(),
            r#"42/chat,["presence",{"count":2,"joined":"bob","room":"r"}]"#
        );
    }
}
