//! Socket.IO protocol v5 packets, as carried in Engine.IO messages.
//!
//! Format: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, followed for
//! binary packets by that many binary attachments. Binary values inside the payload are
//! `{"_placeholder": true, "num": i}` objects that point at the attachments. Decoding
//! validates like the reference parser (`socket.io-parser`): an unknown type, a bad
//! attachment count or a payload of the wrong shape is an error, and the server closes the
//! connection on it.

use std::fmt::Write as _;

use serde_json::Value;

/// Socket.IO packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `0`: connect to a namespace (client: with an auth payload; server: with the sid).
    Connect,
    /// `1`: disconnect from a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: an acknowledgement.
    Ack,
    /// `4`: a refused connection.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl Kind {
    fn from_digit(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    /// Whether attachments follow.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// Event names a client may not emit.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// A decoded packet (attachments, if any, arrive separately).
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// The packet type.
    pub kind: Kind,
    /// The namespace, `/` when absent.
    pub ns: String,
    /// The acknowledgement id.
    pub id: Option<u64>,
    /// Binary attachments that follow this packet.
    pub attachments: usize,
    /// The JSON payload.
    pub data: Option<Value>,
}

/// A packet that does not follow the format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Empty packet or unknown type.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count is not a number followed by `-`.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// The ack id is out of range.
    #[error("invalid ack id")]
    InvalidId,
    /// The payload is not JSON or does not fit the packet type.
    #[error("invalid payload")]
    InvalidPayload,
}

/// The most attachments one packet may announce (the reference has no limit; a count
/// this large is an attack, not an application).
pub const MAX_ATTACHMENTS: usize = 1024;

/// Decodes one Socket.IO packet from the text of an Engine.IO message.
pub fn decode(s: &str) -> Result<Packet, DecodeError> {
    let b = s.as_bytes();
    let kind = b
        .first()
        .and_then(|c| Kind::from_digit(*c))
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < b.len() && b[i] != b'-' {
            i += 1;
        }
        if i >= b.len() || i == start {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = s[start..i]
            .parse::<usize>()
            .map_err(|_| DecodeError::IllegalAttachments)?;
        if attachments > MAX_ATTACHMENTS {
            return Err(DecodeError::IllegalAttachments);
        }
        i += 1;
    }
    let mut ns = "/".to_string();
    if b.get(i) == Some(&b'/') {
        let start = i;
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        ns = s[start..i].to_string();
        if i < b.len() {
            i += 1; // the comma
        }
    }
    let mut id = None;
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        id = Some(
            s[start..i]
                .parse::<u64>()
                .map_err(|_| DecodeError::InvalidId)?,
        );
    }
    let data = if i < b.len() {
        let v: Value = serde_json::from_str(&s[i..]).map_err(|_| DecodeError::InvalidPayload)?;
        if !payload_fits(kind, &v) {
            return Err(DecodeError::InvalidPayload);
        }
        Some(v)
    } else {
        None
    };
    Ok(Packet {
        kind,
        ns,
        id,
        attachments,
        data,
    })
}

/// A plain EVENT packet's head read in place: `2[/ns,][id]["name", argument]` with exactly
/// one argument, both borrowed from the text.
#[derive(Debug)]
pub struct EventHead<'a> {
    /// The namespace (`/` when the packet names none).
    pub ns: &'a str,
    /// The ack id, when the client asked for an acknowledgement.
    pub id: Option<u64>,
    /// The event name (one with an escape does not fit).
    pub name: &'a str,
    /// The one argument, as raw JSON whose numbers all fit a double.
    pub arg: &'a serde_json::value::RawValue,
}

/// Reads `text` as a plain EVENT with one argument without building a `Value` tree; `None`
/// for anything else (other packet types, attachments, several arguments, an escaped or
/// reserved event name, numbers no double holds), which [`decode`] then handles. Whatever
/// this accepts, [`decode`] decodes to the same namespace, id, name and argument.
pub fn event_head(text: &[u8]) -> Option<EventHead<'_>> {
    #[derive(serde::Deserialize)]
    struct Head<'a>(
        #[serde(borrow)] &'a str,
        #[serde(borrow)] &'a serde_json::value::RawValue,
    );
    if text.first() != Some(&b'2') {
        return None;
    }
    let mut i = 1;
    let ns = if text.get(i) == Some(&b'/') {
        let end = i + text[i..].iter().position(|&c| c == b',')?;
        let ns = std::str::from_utf8(&text[i..end]).ok()?;
        i = end + 1;
        ns
    } else {
        "/"
    };
    let digits = text[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let id = match digits {
        0 => None,
        // Longer ids may overflow: `decode` answers them.
        1..=18 => Some(
            std::str::from_utf8(&text[i..i + digits])
                .ok()?
                .parse()
                .ok()?,
        ),
        _ => return None,
    };
    let json = &text[i + digits..];
    if json.first() != Some(&b'[') {
        return None;
    }
    let Head(name, arg) = serde_json::from_slice(json).ok()?;
    if RESERVED_EVENTS.contains(&name) || super::json::check(arg.get().as_bytes()).is_err() {
        return None;
    }
    Some(EventHead { ns, id, name, arg })
}

fn payload_fits(kind: Kind, v: &Value) -> bool {
    match kind {
        Kind::Connect => v.is_object(),
        Kind::Disconnect => false,
        Kind::ConnectError => v.is_object() || v.is_string(),
        Kind::Event | Kind::BinaryEvent => match v.as_array().and_then(|a| a.first()) {
            Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
            Some(Value::Number(_)) => true,
            _ => false,
        },
        Kind::Ack | Kind::BinaryAck => v.is_array(),
    }
}

/// Writes a packet header: type, attachment count, namespace and ack id.
pub fn encode_header(kind: Kind, attachments: usize, ns: &str, id: Option<u64>) -> String {
    let mut s = String::with_capacity(16 + ns.len());
    s.push(kind.digit());
    if kind.is_binary() {
        let _ = write!(s, "{attachments}-");
    }
    if ns != "/" {
        s.push_str(ns);
        s.push(',');
    }
    if let Some(id) = id {
        let _ = write!(s, "{id}");
    }
    s
}

/// Encodes a packet whose payload is already JSON text (or none).
pub fn encode(kind: Kind, attachments: usize, ns: &str, id: Option<u64>, json: &[u8]) -> Vec<u8> {
    let header = encode_header(kind, attachments, ns, id);
    let mut out = Vec::with_capacity(1 + header.len() + json.len());
    out.push(b'4'); // the Engine.IO message type
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(json);
    out
}

/// Whether `v` is a binary placeholder, and which attachment it points at.
pub fn placeholder_num(v: &Value) -> Option<usize> {
    let o = v.as_object()?;
    if o.get("_placeholder")? != &Value::Bool(true) {
        return None;
    }
    o.get("num")?.as_u64().map(|n| n as usize)
}

/// A placeholder for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

/// Checks that every placeholder points at an existing attachment.
pub fn placeholders_valid(v: &Value, attachments: usize) -> bool {
    match v {
        Value::Array(a) => a.iter().all(|x| placeholders_valid(x, attachments)),
        Value::Object(_) => match placeholder_num(v) {
            Some(n) => n < attachments,
            None => v
                .as_object()
                .is_some_and(|o| o.values().all(|x| placeholders_valid(x, attachments))),
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_reference_examples() {
        let p = decode("0").unwrap();
        assert_eq!((p.kind, p.ns.as_str(), p.data), (Kind::Connect, "/", None));
        let p = decode(r#"0/admin,{"token":"123"}"#).unwrap();
        assert_eq!(
            (p.ns.as_str(), p.data),
            ("/admin", Some(json!({"token":"123"})))
        );
        let p = decode("0/random").unwrap();
        assert_eq!(p.ns, "/random");
        let p = decode(r#"2["hello",1]"#).unwrap();
        assert_eq!((p.kind, p.id), (Kind::Event, None));
        let p = decode(r#"2/admin,456["project:delete",123]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", Some(456)));
        let p = decode(r#"3/admin,456[]"#).unwrap();
        assert_eq!(
            (p.kind, p.id, p.data),
            (Kind::Ack, Some(456), Some(json!([])))
        );
        let p = decode(r#"51-["hello",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.kind, p.attachments), (Kind::BinaryEvent, 1));
        let p = decode(r#"52-789["m",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.attachments, p.id), (2, Some(789)));
        let p = decode("1/admin,").unwrap();
        assert_eq!((p.kind, p.ns.as_str()), (Kind::Disconnect, "/admin"));
    }

    #[test]
    fn rejects_what_the_reference_rejects() {
        for bad in [
            "",
            "abc",
            "7",
            "2{}",
            r#"2abc["a"]"#,
            r#"2["connect"]"#,
            "2[]",
            "0[]",
            "1{}",
            "5[\"a\"]",
            "5x-[\"a\"]",
            r#"3{}"#,
            "2[1",
            "99999999999999999999999[]",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(decode(r#"4{"message":"no"}"#).is_ok());
        assert!(decode(r#"2[7]"#).is_ok(), "numeric event names are allowed");
    }

    #[test]
    fn encodes_headers() {
        assert_eq!(encode_header(Kind::Event, 0, "/", None), "2");
        assert_eq!(
            encode_header(Kind::Ack, 0, "/admin", Some(12)),
            "3/admin,12"
        );
        assert_eq!(encode_header(Kind::BinaryEvent, 2, "/", Some(7)), "52-7");
        assert_eq!(
            encode(Kind::Connect, 0, "/custom", None, br#"{"sid":"x"}"#),
            br#"40/custom,{"sid":"x"}"#.to_vec()
        );
    }

    #[test]
    fn placeholders_must_point_at_attachments() {
        let v = json!(["e", {"a": [placeholder(0)]}, placeholder(1)]);
        assert!(placeholders_valid(&v, 2));
        assert!(!placeholders_valid(&v, 1));
        assert_eq!(placeholder_num(&placeholder(3)), Some(3));
        assert_eq!(
            placeholder_num(&json!({"_placeholder": false, "num": 1})),
            None
        );
    }

    #[test]
    fn event_head_reads_plain_events_in_place_and_leaves_the_rest() {
        let h = event_head(br#"2/chat,12["send",{"to":"a","data":[1,"\u00e9"]}]"#).unwrap();
        assert_eq!((h.ns, h.id, h.name), ("/chat", Some(12), "send"));
        assert_eq!(h.arg.get(), r#"{"to":"a","data":[1,"\u00e9"]}"#);
        let h = event_head(br#"2["e",null]"#).unwrap();
        assert_eq!((h.ns, h.id, h.arg.get()), ("/", None, "null"));
        for other in [
            &br#"2["e"]"#[..],                            // no argument
            br#"2["e",1,2]"#,                             // two
            br#"2["\u0065",1]"#,                          // an escaped name
            br#"2["connect",1]"#,                         // a reserved name
            br#"2["e",1e400]"#,                           // a number no double holds
            br#"51-["e",{"_placeholder":true,"num":0}]"#, // attachments
            br#"3["e",1]"#,                               // an ack
            br#"21234567890123456789["e",1]"#,            // an id that may overflow
            br#"2["e",1] x"#,                             // trailing text
        ] {
            assert!(
                event_head(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
