//! Wire protocol v1: JSON text frames on `/ws` (DESIGN.md, "Wire protocol v1").
//!
//! [`parse`] turns one client frame into a [`Request`] or a [`ParseError`] that carries
//! the error code and, when the frame had a valid one, the request `id`. The `data` of a
//! request is kept as a zero-copy slice of the frame ([`RawJson`]), so a publish is
//! validated once and its payload is never re-serialized. The `encode_*` functions
//! write server frames.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::ObjectWriter;
use crate::error::ErrorCode;

/// The largest request `id` plus one: ids are integers with `0 <= id < 2^53`.
pub const MAX_ID: u64 = 1 << 53;
/// The longest room or event name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Whether `s` can name a user: 1 to 200 bytes, no control characters.
pub fn is_user_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

/// Valid JSON text, kept as the bytes it arrived in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawJson(Bytes);

impl RawJson {
    /// JSON `null`.
    pub fn null() -> Self {
        Self(Bytes::from_static(b"null"))
    }

    /// Serializes a value into JSON text.
    pub fn from_value<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => Self(Bytes::from(v)),
            Err(_) => Self::null(),
        }
    }

    /// Checks that `bytes` hold exactly one JSON value, with numbers a double can hold
    /// (see [`super::json::check`]).
    pub fn parse(bytes: Bytes) -> Result<Self, serde_json::Error> {
        super::json::check(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps `bytes` already known to pass [`super::json::check`].
    pub(crate) fn checked(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The JSON text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text as shared bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Parses the text into a `serde_json::Value`.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0).unwrap_or(serde_json::Value::Null)
    }
}

/// One client request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Subscribe to a room, optionally replaying history.
    Join {
        /// The room.
        room: String,
        /// Replay messages after this seq.
        since: Option<u64>,
        /// Replay the n latest messages.
        history: Option<u64>,
    },
    /// Unsubscribe from a room.
    Leave {
        /// The room.
        room: String,
    },
    /// Deliver to a room's members.
    Publish {
        /// The room.
        room: String,
        /// The event name.
        event: String,
        /// The payload.
        data: RawJson,
        /// Drop rather than close a slow recipient.
        volatile: bool,
        /// Do not deliver to the publishing connection.
        exclude_self: bool,
        /// Not kept in the room's history (a typing indicator): no `seq`, never replayed.
        transient: bool,
    },
    /// Deliver to every connection of a user.
    Send {
        /// The user.
        to: String,
        /// The event name.
        event: String,
        /// The payload.
        data: RawJson,
    },
    /// Deliver to every connection of the namespace.
    Broadcast {
        /// The event name.
        event: String,
        /// The payload.
        data: RawJson,
    },
    /// Application-level ping, answered by `pong`.
    Ping,
    /// An op the built-in protocol does not define; application handlers may take it.
    Custom {
        /// The op name.
        op: String,
        /// The whole frame.
        frame: RawJson,
    },
}

/// A parsed frame: the request and its optional id.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The request id, echoed in the reply.
    pub id: Option<u64>,
    /// What the client asks for.
    pub request: Request,
}

/// Why a frame was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The request id, when the frame carried a valid one.
    pub id: Option<u64>,
    /// The error code to send back.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl ParseError {
    fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
        }
    }
}

/// Every field any op may carry, borrowed from the frame.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
    #[serde(borrow)]
    history: Option<&'a RawValue>,
    #[serde(borrow)]
    volatile: Option<&'a RawValue>,
    #[serde(borrow)]
    exclude_self: Option<&'a RawValue>,
    #[serde(borrow)]
    transient: Option<&'a RawValue>,
}

/// Parses one text frame.
pub fn parse(frame: &Bytes) -> Result<Frame, ParseError> {
    let fields: Fields<'_> = serde_json::from_slice(frame).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ParseError::new(None, ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
            }
            Category::Data => ParseError::new(
                None,
                ErrorCode::BadRequest,
                format!("a frame must be a JSON object with a string `op`: {e}"),
            ),
        }
    })?;
    let id = match fields.id {
        None => None,
        Some(raw) => Some(parse_id(raw)?),
    };
    let bad = |message: String| ParseError::new(id, ErrorCode::BadRequest, message);
    let op: String = match fields.op {
        None => return Err(bad("missing field `op`".into())),
        Some(raw) => {
            serde_json::from_str(raw.get()).map_err(|_| bad("`op` must be a string".into()))?
        }
    };
    // `data` is any JSON; it stays a slice of the frame, never re-serialized, once its
    // numbers are known to survive every reader.
    let data = || match fields.data {
        None => Ok(RawJson::null()),
        Some(raw) => match super::json::check(raw.get().as_bytes()) {
            Ok(()) => Ok(RawJson(frame.slice_ref(raw.get().as_bytes()))),
            Err(e) => Err(ParseError::new(
                id,
                ErrorCode::InvalidJson,
                format!("`data`: {e}"),
            )),
        },
    };
    let request = match op.as_str() {
        "join" => Request::Join {
            room: name(fields.room, "room", &bad)?,
            since: opt_u64(fields.since, "since", &bad)?,
            history: opt_u64(fields.history, "history", &bad)?,
        },
        "leave" => Request::Leave {
            room: name(fields.room, "room", &bad)?,
        },
        "publish" => Request::Publish {
            room: name(fields.room, "room", &bad)?,
            event: name(fields.event, "event", &bad)?,
            data: data()?,
            volatile: opt_bool(fields.volatile, "volatile", &bad)?,
            exclude_self: opt_bool(fields.exclude_self, "exclude_self", &bad)?,
            transient: opt_bool(fields.transient, "transient", &bad)?,
        },
        "send" => Request::Send {
            to: user_name(fields.to, &bad)?,
            event: name(fields.event, "event", &bad)?,
            data: data()?,
        },
        "broadcast" => Request::Broadcast {
            event: name(fields.event, "event", &bad)?,
            data: data()?,
        },
        "ping" => Request::Ping,
        _ => Request::Custom {
            op,
            frame: RawJson(frame.clone()),
        },
    };
    Ok(Frame { id, request })
}

fn parse_id(raw: &RawValue) -> Result<u64, ParseError> {
    match serde_json::from_str::<u64>(raw.get()) {
        Ok(id) if id < MAX_ID => Ok(id),
        _ => Err(ParseError::new(
            None,
            ErrorCode::BadRequest,
            "`id` must be an integer with 0 <= id < 2^53",
        )),
    }
}

fn name(
    raw: Option<&RawValue>,
    field: &str,
    bad: &dyn Fn(String) -> ParseError,
) -> Result<String, ParseError> {
    let raw = raw.ok_or_else(|| bad(format!("missing field `{field}`")))?;
    let s: String =
        serde_json::from_str(raw.get()).map_err(|_| bad(format!("`{field}` must be a string")))?;
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "`{field}` must be a non-empty string of at most {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(s)
}

fn user_name(
    raw: Option<&RawValue>,
    bad: &dyn Fn(String) -> ParseError,
) -> Result<String, ParseError> {
    let raw = raw.ok_or_else(|| bad("missing field `to`".into()))?;
    let s: String =
        serde_json::from_str(raw.get()).map_err(|_| bad("`to` must be a string".into()))?;
    if !is_user_name(&s) {
        return Err(bad(format!(
            "`to` must be a user name: 1 to {MAX_NAME_LEN} bytes, no control characters"
        )));
    }
    Ok(s)
}

fn opt_u64(
    raw: Option<&RawValue>,
    field: &str,
    bad: &dyn Fn(String) -> ParseError,
) -> Result<Option<u64>, ParseError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<u64>(raw.get())
            .map(Some)
            .map_err(|_| bad(format!("`{field}` must be a non-negative integer"))),
    }
}

fn opt_bool(
    raw: Option<&RawValue>,
    field: &str,
    bad: &dyn Fn(String) -> ParseError,
) -> Result<bool, ParseError> {
    match raw {
        None => Ok(false),
        Some(raw) if raw.get() == "null" => Ok(false),
        Some(raw) => serde_json::from_str::<bool>(raw.get())
            .map_err(|_| bad(format!("`{field}` must be a boolean"))),
    }
}

/// Encodes `welcome`.
pub fn encode_welcome(conn: &str, user: &str, heartbeat_ms: u64, max_payload: u64) -> Bytes {
    let mut w = ObjectWriter::with_capacity(96 + conn.len() + user.len());
    w.str("op", "welcome")
        .str("conn", conn)
        .str("user", user)
        .u64("heartbeat_ms", heartbeat_ms)
        .u64("max_payload", max_payload);
    w.finish()
}

/// Starts an `ack` for request `id`; add the op's ack fields, then call `finish`.
pub fn ack_writer(id: u64) -> ObjectWriter {
    let mut w = ObjectWriter::with_capacity(64);
    w.str("op", "ack").u64("id", id);
    w
}

/// Encodes `error`.
pub fn encode_error(id: Option<u64>, code: ErrorCode, message: &str) -> Bytes {
    let mut w = ObjectWriter::with_capacity(48 + message.len());
    w.str("op", "error");
    if let Some(id) = id {
        w.u64("id", id);
    }
    w.str("code", code.as_str()).str("message", message);
    w.finish()
}

/// Encodes `pong`.
pub fn encode_pong(id: Option<u64>) -> Bytes {
    match id {
        None => Bytes::from_static(br#"{"op":"pong"}"#),
        Some(id) => {
            let mut w = ObjectWriter::with_capacity(32);
            w.str("op", "pong").u64("id", id);
            w.finish()
        }
    }
}

/// The fields of a `message` frame.
#[derive(Clone, Copy, Debug)]
pub struct MessageFields<'a> {
    /// The room, absent for `send` and `broadcast`.
    pub room: Option<&'a str>,
    /// The event name.
    pub event: &'a str,
    /// The payload as JSON text.
    pub data: &'a [u8],
    /// The sender's user id.
    pub from: Option<&'a str>,
    /// The addressee of a direct message kept in history.
    pub to: Option<&'a str>,
    /// The room sequence number (history rooms only).
    pub seq: Option<u64>,
    /// Milliseconds since the epoch.
    pub ts: u64,
}

/// Encodes `message`.
pub fn encode_message(m: &MessageFields<'_>) -> Bytes {
    let cap = 80
        + m.event.len()
        + m.data.len()
        + m.room.map_or(0, str::len)
        + m.from.map_or(0, str::len)
        + m.to.map_or(0, |t| t.len() + 8);
    let mut w = ObjectWriter::with_capacity(cap);
    w.str("op", "message");
    if let Some(room) = m.room {
        w.str("room", room);
    }
    w.str("event", m.event).raw("data", m.data);
    if let Some(from) = m.from {
        w.str("from", from);
    }
    if let Some(to) = m.to {
        w.str("to", to);
    }
    if let Some(seq) = m.seq {
        w.u64("seq", seq);
    }
    w.u64("ts", m.ts);
    w.finish()
}

/// Encodes a server frame `{"op": name, ...fields}` from the JSON object `fields`.
pub fn encode_notice(name: &str, fields: &[u8]) -> Bytes {
    let mut w = ObjectWriter::with_capacity(16 + name.len() + fields.len());
    w.str("op", name);
    let inner = fields
        .strip_prefix(b"{")
        .and_then(|f| f.strip_suffix(b"}"))
        .unwrap_or_default();
    w.splice(inner);
    w.finish()
}

/// Encodes `presence`: `joined` is true for a join, false for a leave.
pub fn encode_presence(room: &str, user: &str, joined: bool, count: u64) -> Bytes {
    let mut w = ObjectWriter::with_capacity(64 + room.len() + user.len());
    w.str("op", "presence")
        .str("room", room)
        .str(if joined { "joined" } else { "left" }, user)
        .u64("count", count);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Frame, ParseError> {
        parse(&Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn parses_each_op() {
        let f = p(r#"{"op":"join","room":"r","since":3,"id":1}"#).unwrap();
        assert_eq!(f.id, Some(1));
        assert_eq!(
            f.request,
            Request::Join {
                room: "r".into(),
                since: Some(3),
                history: None
            }
        );
        let f = p(r#"{"op":"publish","room":"r","event":"e","data":{"a":[1, 2]}}"#).unwrap();
        match f.request {
            Request::Publish { data, volatile, .. } => {
                assert_eq!(data.as_bytes(), br#"{"a":[1, 2]}"#);
                assert!(!volatile);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p(r#"{"op":"ping"}"#).unwrap().request, Request::Ping);
        assert!(matches!(
            p(r#"{"op":"typing","x":1}"#).unwrap().request,
            Request::Custom { .. }
        ));
    }

    #[test]
    fn data_numbers_must_fit_a_double() {
        // Found by the fuzzer: forwarded verbatim, `8e11052` became null or Infinity in
        // whoever parsed it.
        for frame in [
            r#"{"op":"publish","room":"r","event":"e","data":{"a":[8e11052]},"id":4}"#,
            r#"{"op":"send","to":"u","event":"e","data":-1e400,"id":4}"#,
            r#"{"op":"broadcast","event":"e","data":[1,{"x":1e999}],"id":4}"#,
        ] {
            let e = p(frame).unwrap_err();
            assert_eq!((e.code, e.id), (ErrorCode::InvalidJson, Some(4)), "{frame}");
            assert!(e.message.contains("number out of range"), "{}", e.message);
        }
        // Big but finite numbers, integers past 2^64 and exponents that fit are data.
        let f = p(
            r#"{"op":"publish","room":"r","event":"e","data":[1e308,123456789012345678901234567890,-0.5e-400]}"#,
        );
        assert!(f.is_ok());
        assert!(RawJson::parse(Bytes::from_static(b"{\"n\":1e309}")).is_err());
        assert!(RawJson::parse(Bytes::from_static(b"[\"1e309\", 1.5]")).is_ok());
    }

    #[test]
    fn data_defaults_to_null() {
        match p(r#"{"op":"broadcast","event":"e"}"#).unwrap().request {
            Request::Broadcast { data, .. } => assert_eq!(data.as_bytes(), b"null"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(p("{nope").unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(p("").unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(p("[1,2]").unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(p("\"join\"").unwrap_err().code, ErrorCode::BadRequest);
        let e = p(r#"{"id":7}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(7)));
        let e = p(r#"{"op":"join","id":8}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, Some(8)));
        let e = p(r#"{"op":"join","room":5,"id":9}"#).unwrap_err();
        assert!(e.message.contains("room"), "{}", e.message);
        let e = p(r#"{"op":"ping","id":-1}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrorCode::BadRequest, None));
        let e = p(r#"{"op":"ping","id":9007199254740992}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = p(r#"{"op":"ping","id":1.5}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let long = "x".repeat(201);
        let e = p(&format!(r#"{{"op":"leave","room":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = p(r#"{"op":"publish","room":"r","event":"e","volatile":"yes"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        let e = p(r#"{"op":"join","room":"r","since":-3}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn notices_splice_their_fields_after_the_op() {
        let n = encode_notice("unread", br#"{"count":3}"#);
        assert_eq!(&n[..], br#"{"op":"unread","count":3}"#);
        assert_eq!(&encode_notice("x", b"{}")[..], br#"{"op":"x"}"#);
        let dm = encode_message(&MessageFields {
            room: None,
            event: "e",
            data: b"1",
            from: Some("ann"),
            to: Some("bob"),
            seq: Some(2),
            ts: 5,
        });
        assert_eq!(
            &dm[..],
            br#"{"op":"message","event":"e","data":1,"from":"ann","to":"bob","seq":2,"ts":5}"#
        );
    }

    #[test]
    fn encoders_produce_the_documented_shapes() {
        let m = encode_message(&MessageFields {
            room: Some("r"),
            event: "e",
            data: b"{\"x\":1}",
            from: Some("u"),
            to: None,
            seq: Some(4),
            ts: 99,
        });
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op":"message","room":"r","event":"e","data":{"x":1},"from":"u","seq":4,"ts":99})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&encode_error(Some(3), ErrorCode::UnknownOp, "no")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op":"error","id":3,"code":"unknown_op","message":"no"})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&encode_presence("r", "bob", false, 2)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op":"presence","room":"r","left":"bob","count":2})
        );
    }
}

#[cfg(test)]
mod never_panics {
    //! A deterministic stand-in for the fuzzer that runs with every `cargo test`: random
    //! bytes and mutations of valid frames must parse or fail with a code, never panic.
    use super::*;

    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_and_mutated_frames() {
        let seeds: [&[u8]; 4] = [
            br#"{"op":"join","room":"r","since":3,"id":1}"#,
            br#"{"op":"publish","room":"r","event":"e","data":{"a":[1,2,{"b":null}]}}"#,
            br#"{"op":"send","to":"bob","event":"dm","data":"\u00e9"}"#,
            br#"{"op":"ping","id":7}"#,
        ];
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut parsed = 0;
        for i in 0..20_000 {
            let mut buf = seeds[i % seeds.len()].to_vec();
            match next(&mut s) % 3 {
                0 => {
                    let n = (next(&mut s) % 64) as usize;
                    buf = (0..n).map(|_| next(&mut s) as u8).collect();
                }
                _ => {
                    for _ in 0..(next(&mut s) % 4 + 1) {
                        let at = (next(&mut s) as usize) % buf.len().max(1);
                        match next(&mut s) % 3 {
                            0 if !buf.is_empty() => buf[at] = next(&mut s) as u8,
                            1 => buf.insert(
                                at.min(buf.len()),
                                b"{}[]\":,\\0-e"[(next(&mut s) % 11) as usize],
                            ),
                            _ if !buf.is_empty() => {
                                buf.remove(at);
                            }
                            _ => {}
                        }
                    }
                }
            }
            match parse(&Bytes::from(buf)) {
                Ok(_) => parsed += 1,
                Err(e) => assert!(!e.message.is_empty()),
            }
        }
        assert!(parsed > 100, "mutations keep some frames valid ({parsed})");
    }
}
