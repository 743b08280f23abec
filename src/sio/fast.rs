//! The fast path for plain Socket.IO events whose handler reads raw JSON (the mapped
//! `send` and `publish`): the packet's head is read in place, its first argument stays a
//! slice of the frame, and nothing builds a `serde_json::Value` tree. Anything unusual (a
//! binary event, an escaped event name, several arguments, a placeholder, a socket with a
//! handler of its own) goes the general way, which decodes the packet fully and answers
//! every error as before.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::engine::Session;
use super::socket::{client_of, AckSender, SocketRef};
use crate::protocol::socketio;

/// Handles an event from its frame and its first argument (raw JSON, a slice of `frame`).
/// `false` sends the event the general way instead; a handler that answers `false` must not
/// have acted on it.
pub(crate) type RawHandler = fn(&SocketRef, &Bytes, &RawValue, Option<AckSender>) -> bool;

/// Handles the text message `text` now if it is a plain EVENT with one argument
/// ([`socketio::event_head`]) and a raw handler; `None` when the general path must decode it.
pub(crate) fn event_now(session: &Arc<Session>, text: &Bytes) -> Option<bool> {
    let head = socketio::event_head(text)?;
    if memchr::memmem::find(head.arg.get().as_bytes(), b"\"_placeholder\"").is_some() {
        return None;
    }
    let socket = {
        let client = client_of(session);
        if client.partial.is_some() {
            return None;
        }
        client.sockets.get(head.ns)?.clone()
    };
    let handler = socket.raw_handler(head.name)?;
    let ack = socket.ack_sender(head.id);
    handler(&socket, text, head.arg, ack).then_some(true)
}
