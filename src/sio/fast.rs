//! The fast path for plain Socket.IO events whose handler reads raw JSON (the mapped
//! `send` and `publish`): the packet's head is read in place, its first argument stays a
//! slice of the frame, and nothing builds a `serde_json::Value` tree. Anything unusual (a
//! binary event, an escaped event name, several arguments, a placeholder, a socket with a
//! handler of its own) goes the general way, which decodes the packet fully and answers
//! every error as before.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::engine::Session;
use super::socket::{client_of, AckSender, SocketRef};

/// Handles an event from its frame and its first argument (raw JSON, a slice of `frame`).
/// `false` sends the event the general way instead; a handler that answers `false` must not
/// have acted on it.
pub(crate) type RawHandler = fn(&SocketRef, &Bytes, &RawValue, Option<AckSender>) -> bool;

/// `["event", argument]`, borrowed from the frame: an event name with an escape, or any
/// other number of arguments, does not fit.
#[derive(Deserialize)]
struct Head<'a>(#[serde(borrow)] &'a str, #[serde(borrow)] &'a RawValue);

/// Handles the text message `text` now if it is an EVENT (`2[/ns,][id][...]`) with a raw
/// handler; `None` when the general path must decode it.
pub(crate) fn event_now(session: &Arc<Session>, text: &Bytes) -> Option<bool> {
    let b = &text[..];
    if b.first() != Some(&b'2') {
        return None;
    }
    let mut i = 1;
    let ns = if b.get(i) == Some(&b'/') {
        let end = i + b[i..].iter().position(|&c| c == b',')?;
        let ns = std::str::from_utf8(&b[i..end]).ok()?;
        i = end + 1;
        ns
    } else {
        "/"
    };
    let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let id = match digits {
        0 => None,
        // Longer ids may overflow: the general path answers them.
        1..=18 => Some(std::str::from_utf8(&b[i..i + digits]).ok()?.parse().ok()?),
        _ => return None,
    };
    let json = &b[i + digits..];
    if json.first() != Some(&b'[') || memchr::memmem::find(json, b"\"_placeholder\"").is_some() {
        return None;
    }
    let Head(name, arg) = serde_json::from_slice(json).ok()?;
    let socket = {
        let client = client_of(session);
        if client.partial.is_some() {
            return None;
        }
        client.sockets.get(ns)?.clone()
    };
    let handler = socket.raw_handler(name)?;
    let ack = socket.ack_sender(id);
    handler(&socket, text, arg, ack).then_some(true)
}
