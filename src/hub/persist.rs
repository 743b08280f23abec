//! The hub's side of the durable store ([`crate::store`]): a history message becomes a
//! [`MessageRow`] and back, and stored rooms become rooms again at start.
//!
//! A body is stored as a kind and bytes: a JSON payload as its text (kind 0), a binary
//! payload as its bytes (1), Socket.IO arguments as a JSON array with placeholders (2) and
//! their attachments, each a 4-byte little-endian length and the bytes.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use std::sync::Mutex;

use super::delivery::{Body, Delivery, Message, MessageBody, Payload, SioArgs};
use super::history::HistoryLog;
use super::room::{room_key, Room, RoomState};
use super::Hub;
use crate::protocol::v1::RawJson;
use crate::store::MessageRow;

const JSON: u8 = 0;
const BINARY: u8 = 1;
const ARGS: u8 = 2;

/// The row of a history message (`None` for a delivery without a room or `seq`).
pub fn row_of(d: &Delivery) -> Option<MessageRow> {
    let m = d.message()?;
    let (room, seq) = (m.room.clone()?, m.seq?);
    let (kind, data, attachments) = match &m.body {
        MessageBody::Hub(Payload::Json(raw)) => (JSON, raw.bytes().clone(), Bytes::new()),
        MessageBody::Hub(Payload::Binary(b)) => (BINARY, b.clone(), Bytes::new()),
        MessageBody::Args(args) => {
            let mut attachments = Vec::new();
            for b in &args.bin {
                attachments.extend_from_slice(&(b.len() as u32).to_le_bytes());
                attachments.extend_from_slice(b);
            }
            let data = serde_json::to_vec(&args.values).unwrap_or_else(|_| b"[]".to_vec());
            (ARGS, Bytes::from(data), Bytes::from(attachments))
        }
    };
    Some(MessageRow {
        ns: m.ns.clone(),
        room,
        seq,
        ts: m.ts,
        event: m.event.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        kind,
        data,
        attachments,
    })
}

/// The delivery a stored row was made from; `None` when the row is damaged.
pub fn delivery_of(row: MessageRow) -> Option<Arc<Delivery>> {
    let body = body_of(row.kind, row.data, &row.attachments)?;
    Some(Delivery::new(Body::Message(Message {
        ns: row.ns,
        room: Some(row.room),
        event: row.event,
        body,
        from: row.from,
        to: row.to,
        seq: Some(row.seq),
        ts: row.ts,
        offset: None,
    })))
}

fn body_of(kind: u8, data: Bytes, attachments: &[u8]) -> Option<MessageBody> {
    match kind {
        JSON => RawJson::parse(data)
            .ok()
            .map(|raw| MessageBody::Hub(Payload::Json(raw))),
        BINARY => Some(MessageBody::Hub(Payload::Binary(data))),
        ARGS => {
            let Ok(Value::Array(values)) = serde_json::from_slice(&data) else {
                return None;
            };
            let mut bin = Vec::new();
            let mut rest = attachments;
            while !rest.is_empty() {
                let (len, tail) = rest.split_first_chunk::<4>()?;
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return None;
                }
                bin.push(Bytes::copy_from_slice(&tail[..len]));
                rest = &tail[len..];
            }
            Some(MessageBody::Args(SioArgs { values, bin }))
        }
        _ => None,
    }
}

impl Hub {
    /// Attaches the durable store: from now on history messages, API-created rooms and
    /// deletions are written to it. Call once, after [`Self::restore`] and before serving;
    /// false if a store was attached already.
    pub fn set_store(&self, store: Arc<dyn crate::store::Store>) -> bool {
        self.inner.store.set(store).is_ok()
    }

    /// The attached store, if any.
    pub fn store(&self) -> Option<&Arc<dyn crate::store::Store>> {
        self.inner.store.get()
    }

    /// Brings back rooms read from the store: their settings (the defaults for rooms that
    /// were not created through the API), `seq` counters and kept messages. Rooms that
    /// exist already and damaged messages are skipped; returns how many rooms came back.
    ///
    /// `margin` ([`crate::store::Snapshot::margin`]) moves every history room's counter on:
    /// after a run that did not end cleanly, seqs delivered live but never committed are not
    /// given again (a client that saw one would otherwise miss its successor).
    pub fn restore(&self, rows: Vec<crate::store::RoomRow>, margin: u64) -> usize {
        let mut restored = 0;
        for row in rows {
            let pinned = row.settings.is_some();
            let settings = match row.settings.as_deref().map(serde_json::from_str) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    tracing::warn!("store: room `{}` has unreadable settings ({e})", row.name);
                    self.default_settings(&row.name)
                }
                None => self
                    .alias_settings(&row.name)
                    .unwrap_or_else(|| self.default_settings(&row.name)),
            };
            let last_seq = if settings.history > 0 {
                row.last_seq.saturating_add(margin)
            } else {
                row.last_seq
            };
            let total = row.messages.len();
            let entries: Vec<(u64, Arc<Delivery>)> = row
                .messages
                .into_iter()
                .filter_map(|m| {
                    let seq = m.seq;
                    delivery_of(m).map(|d| (seq, d))
                })
                .collect();
            if entries.len() < total {
                tracing::warn!(
                    "store: room `{}`: {} damaged messages skipped",
                    row.name,
                    total - entries.len()
                );
            }
            let log = HistoryLog::restored(
                settings.history,
                settings.history_ttl.saturating_mul(1000),
                last_seq,
                entries,
            );
            if !pinned && log.is_empty() {
                continue;
            }
            let ns: Arc<str> = row.ns.as_str().into();
            let key = room_key(&ns, &row.name);
            let mut rooms = self.inner.rooms.shard(&*key);
            if rooms.contains_key(&key) {
                continue;
            }
            self.room_changed(&ns, &row.name, true);
            rooms.insert(
                key.clone(),
                Arc::new(Room {
                    name: row.name.as_str().into(),
                    key,
                    ns,
                    state: Mutex::new(RoomState::new(settings, pinned, log)),
                }),
            );
            restored += 1;
        }
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::socketio::placeholder;
    use serde_json::json;

    fn round_trip(body: MessageBody) -> MessageBody {
        let d = Delivery::new(Body::Message(Message {
            ns: "/chat".into(),
            room: Some("r".into()),
            event: "e".into(),
            body,
            from: Some("ann".into()),
            to: Some("bob".into()),
            seq: Some(7),
            ts: 123,
            offset: Some("o".into()),
        }));
        let row = row_of(&d).expect("a history message has a row");
        assert_eq!(
            (&*row.ns, &*row.room, row.seq, row.ts),
            ("/chat", "r", 7, 123)
        );
        let back = delivery_of(row).expect("decodes");
        let m = back.message().unwrap();
        assert_eq!(
            (m.from.as_deref(), m.offset.as_deref()),
            (Some("ann"), None)
        );
        m.body.clone()
    }

    #[test]
    fn every_body_shape_survives_storage() {
        match round_trip(MessageBody::Hub(Payload::json(&json!({"text": "hi"})))) {
            MessageBody::Hub(Payload::Json(raw)) => assert_eq!(raw.as_bytes(), br#"{"text":"hi"}"#),
            other => panic!("{other:?}"),
        }
        let bin = MessageBody::Hub(Payload::Binary(Bytes::from_static(&[0, 159, 255])));
        assert!(
            matches!(round_trip(bin), MessageBody::Hub(Payload::Binary(b)) if b[..] == [0, 159, 255])
        );
        let args = SioArgs {
            values: vec![json!("a"), placeholder(0), json!({"k": placeholder(1)})],
            bin: vec![Bytes::from_static(b"one"), Bytes::new()],
        };
        match round_trip(MessageBody::Args(args.clone())) {
            MessageBody::Args(back) => assert_eq!(back, args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damaged_rows_are_refused() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        assert!(body_of(JSON, b(b"{not json"), &[]).is_none());
        assert!(body_of(ARGS, b(b"{}"), &[]).is_none());
        assert!(body_of(ARGS, b(b"[]"), &[9, 0, 0, 0, 1]).is_none());
        assert!(body_of(ARGS, b(b"[]"), &[1, 0]).is_none());
        assert!(body_of(7, Bytes::new(), &[]).is_none());
    }

    #[test]
    fn deliveries_without_room_or_seq_have_no_row() {
        let d = Delivery::new(Body::Message(Message {
            ns: "/".into(),
            room: Some("r".into()),
            event: "e".into(),
            body: MessageBody::Hub(Payload::null()),
            from: None,
            to: None,
            seq: None,
            ts: 0,
            offset: None,
        }));
        assert!(row_of(&d).is_none());
    }
}
