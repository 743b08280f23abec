//! One client connection as the hub sees it ([`Conn`]), and what a front end says about a
//! connection it accepted ([`ConnSpec`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::delivery::Delivery;
use super::grants::Grants;
use super::outbox::{CloseRequest, Outbox, Push};
use super::shards::lock;
use crate::stats::Transport;

/// A connection's key inside this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnId(pub u64);

/// How a front end ends one of its connections (Socket.IO: a namespace DISCONNECT for
/// 4000, the whole session otherwise).
pub type Closer = Box<dyn Fn(u16, &str) + Send + Sync>;

/// How the connections of a front end the hub has no encoding of (GraphQL) write a
/// delivery: the frames it becomes for this connection, none when it wants none of it.
pub trait Frames: Send + Sync {
    /// Hands each frame of `d` to `push`, in order.
    fn frames(&self, d: &Delivery, push: &mut dyn FnMut(super::outbox::OutFrame));
}

/// One client connection as the hub sees it: a v1 WebSocket, or one Socket.IO socket (a
/// namespace of an Engine.IO session, whose sockets share the session's outbox).
pub struct Conn {
    pub(super) key: ConnId,
    pub(super) wire_id: Arc<str>,
    pub(super) user: Arc<str>,
    pub(super) ns: Arc<str>,
    pub(super) transport: Transport,
    pub(super) outbox: Arc<Outbox>,
    pub(super) rooms: Mutex<Vec<Arc<str>>>,
    pub(super) awaiting_pong: AtomicBool,
    /// When the credentials expire, ms since the epoch; 0 when they do not.
    pub(super) expires_at: AtomicU64,
    /// What the credentials allow; unset means unrestricted (auth mode `none`).
    pub(super) grants: OnceLock<Arc<Grants>>,
    pub(super) closer: OnceLock<Closer>,
    /// How it writes deliveries, for a transport the hub has no encoding of.
    pub(super) frames: OnceLock<Arc<dyn Frames>>,
    /// When it was registered, ms since the epoch.
    pub(super) since: u64,
    /// The client's address, when the front end knows it.
    pub(super) address: Option<IpAddr>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.wire_id)
            .field("user", &self.user)
            .field("ns", &self.ns)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// What a front end tells the hub about a connection it accepted.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConnSpec {
    /// The user, anonymous when `None`.
    pub user: Option<String>,
    /// The front end.
    pub transport: Transport,
    /// The namespace (`/` for v1).
    pub ns: Arc<str>,
    /// The outbox to share (Socket.IO sockets of one session); a new one when `None`.
    pub outbox: Option<Arc<Outbox>>,
    /// The connection id to use; generated when `None`.
    pub wire_id: Option<Arc<str>>,
    /// The client's address (shown in a user's list of devices).
    pub address: Option<IpAddr>,
}

impl ConnSpec {
    /// A connection of `transport` in the main namespace.
    pub fn new(user: Option<&str>, transport: Transport) -> Self {
        Self {
            user: user.map(str::to_string),
            transport,
            ns: "/".into(),
            outbox: None,
            wire_id: None,
            address: None,
        }
    }

    /// Records the client's address.
    #[must_use]
    pub fn from_address(mut self, address: Option<IpAddr>) -> Self {
        self.address = address;
        self
    }

    /// Puts the connection in namespace `ns`.
    #[must_use]
    pub fn in_ns(mut self, ns: Arc<str>) -> Self {
        self.ns = ns;
        self
    }

    /// Shares an existing outbox.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Arc<Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Uses a given connection id.
    #[must_use]
    pub fn with_wire_id(mut self, id: Arc<str>) -> Self {
        self.wire_id = Some(id);
        self
    }
}

impl Conn {
    /// The key of this connection on this node.
    pub fn id(&self) -> ConnId {
        self.key
    }

    /// The connection id sent to clients, unique in the cluster.
    pub fn wire_id(&self) -> &str {
        &self.wire_id
    }

    /// The connection id, shared: a map keyed by it holds a reference, not a copy.
    pub(crate) fn wire_id_shared(&self) -> Arc<str> {
        self.wire_id.clone()
    }

    /// The user this connection belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The user as a shared string.
    pub fn user_arc(&self) -> Arc<str> {
        self.user.clone()
    }

    /// When the connection was registered, ms since the epoch.
    pub fn since(&self) -> u64 {
        self.since
    }

    /// The client's address, when known.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }

    /// The front end that accepted this connection.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The namespace (`/` for v1 connections).
    pub fn ns(&self) -> &Arc<str> {
        &self.ns
    }

    /// Sets how the front end closes this connection (once).
    pub fn set_closer(&self, closer: Closer) {
        let _ = self.closer.set(closer);
    }

    /// The outbound queue the front end drains.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Rooms this connection has joined.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.rooms).iter().map(|r| r.to_string()).collect()
    }

    /// Pushes a delivery, encoded for this connection's wire format.
    pub fn deliver(&self, d: &Delivery, volatile: bool) -> Push {
        match self.transport {
            Transport::Ws => self.outbox.push(d.v1_frame(), volatile),
            Transport::SocketIo => self.outbox.push_many(d.sio_frames(), volatile),
            Transport::GraphQl => {
                let mut result = Push::Queued;
                if let Some(f) = self.frames.get() {
                    f.frames(d, &mut |frame| {
                        if result == Push::Queued {
                            result = self.outbox.push(frame, volatile);
                        }
                    });
                }
                result
            }
        }
    }

    /// Sets how this connection writes deliveries (a front end the hub has no encoding
    /// of; only the first call counts).
    pub fn set_frames(&self, frames: Arc<dyn Frames>) {
        let _ = self.frames.set(frames);
    }

    pub(super) fn deliver_unbounded(&self, d: &Delivery) {
        match self.transport {
            Transport::Ws => {
                self.outbox.push_unbounded(d.v1_frame());
            }
            Transport::SocketIo => {
                for f in d.sio_frames() {
                    self.outbox.push_unbounded(f.clone());
                }
            }
            Transport::GraphQl => {
                if let Some(f) = self.frames.get() {
                    f.frames(d, &mut |frame| {
                        self.outbox.push_unbounded(frame);
                    });
                }
            }
        }
    }

    /// Asks the connection to close with `code` and `reason`, the way its front end does.
    pub fn close(&self, code: u16, reason: &str) {
        match self.closer.get() {
            Some(close) => close(code, reason),
            None => self.outbox.close(CloseRequest::Close(code, reason.into())),
        }
    }

    /// Records a pong (or any proof of life the front end accepts).
    pub fn pong_received(&self) {
        self.awaiting_pong.store(false, Ordering::Relaxed);
    }
}
