//! Engine.IO protocol v4 packets: WebSocket frames and HTTP long-polling payloads.
//!
//! A packet is a one-digit type and an optional payload (`4hello`, `2probe`). Over WebSocket
//! each packet is one frame and binary messages are raw binary frames; over polling, packets
//! are joined by the record separator `\x1e` and binary messages are `b` + base64. These are
//! pure functions: the transport logic lives in [`crate::sio`].

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// The record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// One Engine.IO packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake (server to client only).
    Open(Bytes),
    /// `1`: close the session.
    Close,
    /// `2`: ping, with an optional payload (`probe` during an upgrade).
    Ping(Bytes),
    /// `3`: pong, with an optional payload.
    Pong(Bytes),
    /// `4`: a text message.
    Message(Bytes),
    /// A binary message (a binary WebSocket frame, or `b<base64>` in polling).
    Binary(Bytes),
    /// `5`: complete an upgrade.
    Upgrade,
    /// `6`: no operation (ends a pending poll during an upgrade).
    Noop,
}

/// A packet that does not follow the format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Empty packet.
    #[error("empty packet")]
    Empty,
    /// The first character is not a known packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A text packet that is not UTF-8.
    #[error("packet is not valid UTF-8")]
    NotUtf8,
    /// `b` followed by invalid base64.
    #[error("invalid base64 in a binary packet")]
    Base64,
}

/// Decodes one text packet (a WebSocket text frame, or one item of a polling payload).
pub fn decode_text(packet: Bytes) -> Result<Packet, DecodeError> {
    let Some(&first) = packet.first() else {
        return Err(DecodeError::Empty);
    };
    if std::str::from_utf8(&packet).is_err() {
        return Err(DecodeError::NotUtf8);
    }
    let rest = || packet.slice(1..);
    Ok(match first {
        b'0' => Packet::Open(rest()),
        b'1' => Packet::Close,
        b'2' => Packet::Ping(rest()),
        b'3' => Packet::Pong(rest()),
        b'4' => Packet::Message(rest()),
        b'5' => Packet::Upgrade,
        b'6' => Packet::Noop,
        b'b' => Packet::Binary(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(&packet[1..])
                .map_err(|_| DecodeError::Base64)?,
        )),
        other => return Err(DecodeError::UnknownType(other as char)),
    })
}

/// Decodes a polling request body into its packets.
pub fn decode_payload(body: &Bytes) -> Result<Vec<Packet>, DecodeError> {
    body.split(|b| *b == SEPARATOR)
        .map(|part| decode_text(body.slice_ref(part)))
        .collect()
}

/// Encodes a text packet of type `kind` with `payload` (a WebSocket text frame).
pub fn encode_text(kind: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + payload.len());
    b.put_u8(b'0' + kind);
    b.put_slice(payload);
    b.freeze()
}

/// What a polling response carries: text packets as they are, binary ones base64-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollItem<'a> {
    /// An encoded text packet (`4...`, `2`, `6`).
    Text(&'a [u8]),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Joins packets into one polling payload.
pub fn encode_payload<'a>(items: impl IntoIterator<Item = PollItem<'a>>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match item {
            PollItem::Text(t) => out.put_slice(t),
            PollItem::Binary(b) => {
                out.put_u8(b'b');
                let encoded = base64::engine::general_purpose::STANDARD.encode(b);
                out.put_slice(encoded.as_bytes());
            }
        }
    }
    out.freeze()
}

/// The `open` packet's JSON payload.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake<'a> {
    /// The session id.
    pub sid: &'a str,
    /// Transports the client may upgrade to.
    pub upgrades: &'a [&'a str],
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the client has to answer.
    pub ping_timeout: u64,
    /// Largest payload the server accepts, in bytes.
    pub max_payload: u64,
}

/// Encodes the `open` packet.
pub fn encode_open(h: &Handshake<'_>) -> Bytes {
    let json = serde_json::to_vec(h).unwrap_or_default();
    encode_text(0, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn decodes_each_packet_type() {
        assert_eq!(decode_text(b("1")), Ok(Packet::Close));
        assert_eq!(decode_text(b("2probe")), Ok(Packet::Ping(b("probe"))));
        assert_eq!(decode_text(b("3")), Ok(Packet::Pong(b(""))));
        assert_eq!(decode_text(b("4hello")), Ok(Packet::Message(b("hello"))));
        assert_eq!(decode_text(b("5")), Ok(Packet::Upgrade));
        assert_eq!(decode_text(b("6")), Ok(Packet::Noop));
        assert_eq!(
            decode_text(b("bAQIDBA==")),
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        );
        assert_eq!(decode_text(b("")), Err(DecodeError::Empty));
        assert_eq!(decode_text(b("abc")), Err(DecodeError::UnknownType('a')));
        assert_eq!(decode_text(b("b!!")), Err(DecodeError::Base64));
        assert_eq!(
            decode_text(Bytes::from_static(&[b'4', 0xff])),
            Err(DecodeError::NotUtf8)
        );
    }

    #[test]
    fn polling_payloads_round_trip() {
        let body = b("4hello\x1ebAQIDBA==\x1e2");
        let packets = decode_payload(&body).unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message(b("hello")),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Ping(b("")),
            ]
        );
        let out = encode_payload([
            PollItem::Text(b"4hello"),
            PollItem::Binary(&[1, 2, 3, 4]),
            PollItem::Text(b"2"),
        ]);
        assert_eq!(out, body);
        assert!(
            decode_payload(&b("4a\x1e\x1e4b")).is_err(),
            "an empty packet is invalid"
        );
    }

    #[test]
    fn open_packet_has_the_handshake_fields() {
        let p = encode_open(&Handshake {
            sid: "abc",
            upgrades: &["websocket"],
            ping_interval: 300,
            ping_timeout: 200,
            max_payload: 1_000_000,
        });
        assert_eq!(p[0], b'0');
        let v: serde_json::Value = serde_json::from_slice(&p[1..]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000})
        );
    }
}
