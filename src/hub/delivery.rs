//! What the hub delivers: one [`Delivery`] per message, encoded once per wire format.
//!
//! A delivery is built once, wrapped in an `Arc`, and handed to every recipient. The first
//! recipient of a given wire format encodes it; everyone else gets a reference-counted clone
//! of the same bytes. History keeps the same `Arc`, so a replay costs no encoding either.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use bytes::Bytes;

use super::outbox::OutFrame;
use crate::protocol::{json::ObjectWriter, v1, v1::RawJson};

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
            Self::Binary(b) => {
                let mut w = ObjectWriter::with_capacity(16 + b.len() * 4 / 3);
                w.str(
                    "_binary",
                    &base64::engine::general_purpose::STANDARD.encode(b),
                );
                w.finish()
            }
        }
    }

    /// The payload as a `serde_json::Value`.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Self::Json(raw) => raw.to_value(),
            Self::Binary(_) => serde_json::from_slice(&self.to_v1_json()).unwrap_or_default(),
        }
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

impl From<serde_json::Value> for Payload {
    fn from(v: serde_json::Value) -> Self {
        Self::json(&v)
    }
}

/// A message to an event: what `publish`, `send`, `broadcast` and the HTTP API deliver.
#[derive(Clone, Debug)]
pub struct Message {
    /// The room it was published to, if any.
    pub room: Option<Arc<str>>,
    /// The event name.
    pub event: Arc<str>,
    /// The payload.
    pub data: Payload,
    /// The sender's user id, when a user sent it.
    pub from: Option<Arc<str>>,
    /// The room sequence number (history rooms only).
    pub seq: Option<u64>,
    /// Milliseconds since the epoch.
    pub ts: u64,
}

/// What a delivery carries.
#[derive(Clone, Debug)]
pub enum Body {
    /// An application message.
    Message(Message),
    /// A user's first connection joined a room, or its last one left.
    Presence {
        /// The room.
        room: Arc<str>,
        /// The user.
        user: Arc<str>,
        /// True on join, false on leave.
        joined: bool,
        /// Users in the room after the change.
        count: u64,
    },
}

/// One message on its way to many recipients, with its encodings cached.
#[derive(Debug)]
pub struct Delivery {
    /// What is delivered.
    pub body: Body,
    v1: OnceLock<Bytes>,
}

impl Delivery {
    /// Wraps a body for delivery.
    pub fn new(body: Body) -> Arc<Self> {
        Arc::new(Self {
            body,
            v1: OnceLock::new(),
        })
    }

    /// The message, when this is one.
    pub fn message(&self) -> Option<&Message> {
        match &self.body {
            Body::Message(m) => Some(m),
            Body::Presence { .. } => None,
        }
    }

    /// The v1 text frame, encoded on first use.
    pub fn v1_frame(&self) -> OutFrame {
        OutFrame::Text(self.v1.get_or_init(|| self.encode_v1()).clone())
    }

    fn encode_v1(&self) -> Bytes {
        match &self.body {
            Body::Message(m) => {
                let data = m.data.to_v1_json();
                v1::encode_message(&v1::MessageFields {
                    room: m.room.as_deref(),
                    event: &m.event,
                    data: &data,
                    from: m.from.as_deref(),
                    seq: m.seq,
                    ts: m.ts,
                })
            }
            Body::Presence {
                room,
                user,
                joined,
                count,
            } => v1::encode_presence(room, user, *joined, *count),
        }
    }

    /// The v1 `message` object without `op`, as the history API returns it.
    pub fn to_history_json(&self) -> serde_json::Value {
        let mut v: serde_json::Value =
            serde_json::from_slice(self.v1.get_or_init(|| self.encode_v1())).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.remove("op");
        }
        v
    }
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

    #[test]
    fn encodes_once_and_shares_bytes() {
        let d = Delivery::new(Body::Message(Message {
            room: Some("r".into()),
            event: "e".into(),
            data: Payload::Binary(Bytes::from_static(b"\x00\x01")),
            from: None,
            seq: Some(1),
            ts: 5,
        }));
        let (OutFrame::Text(a), OutFrame::Text(b)) = (d.v1_frame(), d.v1_frame()) else {
            panic!("v1 frames are text")
        };
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second recipient shares the bytes"
        );
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["data"], serde_json::json!({"_binary": "AAE="}));
        assert_eq!(d.to_history_json().get("op"), None);
    }
}
