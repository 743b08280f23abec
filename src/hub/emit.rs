//! Addressing a message: the [`Target`], the serializable [`BroadcastOptions`] that carry it
//! (and travel unchanged between the nodes of a cluster), the [`Emitter`] builder and what an
//! emit returns ([`Emitted`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::conn::ConnId;
use super::delivery::{MessageBody, Payload, SioArgs};
use super::Hub;
use crate::error::HubError;

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every connection.
    All,
    /// The members of a room.
    Room(Arc<str>),
    /// Every connection of a user.
    User(Arc<str>),
    /// One connection.
    Conn(ConnId),
    /// The members of any of these rooms, and these connections, each once.
    Many {
        /// Rooms.
        rooms: Vec<Arc<str>>,
        /// Connections.
        conns: Vec<ConnId>,
    },
}

/// How a message is delivered: the target and its modifiers. Serializable, so that the same
/// options can travel to the other nodes of a cluster unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastOptions {
    /// The namespace (`/` is shared by v1 and Socket.IO's main namespace).
    pub ns: Arc<str>,
    /// Who receives it.
    pub target: Target,
    /// Members of these rooms are left out.
    pub except_rooms: Vec<Arc<str>>,
    /// Connections left out (typically the sender).
    pub except: Vec<ConnId>,
    /// The sender's user id, shown to recipients as `from`.
    pub from: Option<Arc<str>>,
    /// Drop rather than close a recipient whose queue is full.
    pub volatile: bool,
}

/// The outcome of an emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Emitted {
    /// Connections the message was queued for.
    pub delivered: usize,
    /// The room seq, when the room keeps history.
    pub seq: Option<u64>,
    /// For a user target: whether the user had any connection.
    pub online: Option<bool>,
}

/// Builds an emit: `hub.to_room("lobby").except(me).emit("chat", data)`.
#[derive(Debug)]
#[must_use = "an emitter does nothing until `emit` is called"]
pub struct Emitter<'a> {
    pub(super) hub: &'a Hub,
    pub(super) opts: BroadcastOptions,
}

impl Emitter<'_> {
    /// Leaves a connection out.
    pub fn except(mut self, conn: ConnId) -> Self {
        self.opts.except.push(conn);
        self
    }

    /// Names the sender.
    pub fn from(mut self, user: impl Into<Arc<str>>) -> Self {
        self.opts.from = Some(user.into());
        self
    }

    /// Makes the message volatile: dropped for recipients whose queue is full.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// Emits in namespace `ns` instead of `/`.
    pub fn ns(mut self, ns: impl Into<Arc<str>>) -> Self {
        self.opts.ns = ns.into();
        self
    }

    /// Leaves out the members of `room`.
    pub fn except_room(mut self, room: impl Into<Arc<str>>) -> Self {
        self.opts.except_rooms.push(room.into());
        self
    }

    /// Sends `event` with `data` exactly as given: Socket.IO clients get `(event, data)`,
    /// v1 clients a `message`.
    pub fn emit(self, event: &str, data: impl Into<Payload>) -> Result<Emitted, HubError> {
        let args = match data.into() {
            Payload::Json(raw) => SioArgs::one(raw.to_value()),
            Payload::Binary(b) => SioArgs {
                values: vec![crate::protocol::socketio::placeholder(0)],
                bin: vec![b],
            },
        };
        self.emit_args(event, args)
    }

    /// Sends `event` with several Socket.IO arguments (v1 clients get them as an array).
    pub fn emit_args(self, event: &str, args: SioArgs) -> Result<Emitted, HubError> {
        self.hub
            .dispatch(&self.opts, event.into(), MessageBody::Args(args))
    }

    /// Publishes `event` with `data` as a hub message (what v1 ops and the HTTP API send):
    /// Socket.IO clients get `(event, data, {room, from, seq, ts})`.
    pub fn publish(self, event: &str, data: impl Into<Payload>) -> Result<Emitted, HubError> {
        self.hub
            .dispatch(&self.opts, event.into(), MessageBody::Hub(data.into()))
    }
}
