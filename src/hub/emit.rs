//! Addressing a message: the [`Target`], the serializable [`BroadcastOptions`] that carry it
//! (and travel unchanged between the nodes of a cluster), the [`Emitter`] builder and what an
//! emit returns ([`Emitted`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::conn::ConnId;
use super::delivery::{MessageBody, Payload, SioArgs};
use super::durable::Commit;
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
    /// The client connection that sent it; `None` when the server did (its HTTP API,
    /// application code). Room schemas allow some messages from the server only.
    #[serde(default)]
    pub sender: Option<ConnId>,
    /// A client sent it without a connection of this hub (a GraphQL request over HTTP):
    /// as [`Self::sender`] for room schemas.
    #[serde(default)]
    pub from_client: bool,
    /// Not kept in a history room (no `seq`): a notice such as the seeds' `user-joined`.
    #[serde(default)]
    pub transient: bool,
    /// Ask the other nodes of a cluster how many connections they reached (see
    /// [`Emitted::cluster_wide`]).
    #[serde(default)]
    pub counted: bool,
    /// This node's recipients only, in a cluster too (socket.io's `local` flag).
    #[serde(default)]
    pub local: bool,
}

impl BroadcastOptions {
    /// Options for `target` in namespace `/`, with no exclusions.
    pub fn to(target: Target) -> Self {
        Self {
            ns: root_ns(),
            target,
            except_rooms: Vec::new(),
            except: Vec::new(),
            from: None,
            volatile: false,
            sender: None,
            from_client: false,
            transient: false,
            counted: false,
            local: false,
        }
    }
}

/// The outcome of an emit.
#[derive(Debug, Default, Serialize)]
pub struct Emitted {
    /// Connections the message was queued for.
    pub delivered: usize,
    /// The room seq, when the room keeps history.
    pub seq: Option<u64>,
    /// For a user target: whether the user had any connection.
    pub online: Option<bool>,
    /// The store's commit of a message kept in history, when a store is attached: the
    /// message's acknowledgement waits for it (DESIGN.md, "Durability").
    #[serde(skip)]
    pub commit: Option<Commit>,
    /// In a cluster: completes once the message left for the other nodes, with how many
    /// connections they reached for a [`Emitter::counted`] emit (0 otherwise).
    #[serde(skip)]
    pub remote: Option<super::RemoteCount>,
    /// For a message of a history room the cluster keeps: completes once the cluster
    /// numbered and kept it, with its `seq` (and the counts of a counted emit).
    #[serde(skip)]
    pub kept: Option<super::KeptWait>,
    /// Why the other nodes of a cluster could not be given the message: its
    /// acknowledgement is then `unavailable` (it reached this node's recipients only).
    #[serde(skip)]
    pub cluster_error: Option<HubError>,
    /// The user whose being offline makes the outcome an error, once the other nodes
    /// answered ([`Self::require_online`]).
    #[serde(skip)]
    pub offline_error: Option<Arc<str>>,
}

impl Emitted {
    /// Calls `f` once the message is durable: at once when nothing is stored, otherwise when
    /// the store has committed it (on the store's thread: `f` must only queue work), with
    /// `unavailable` if the store lost it. In a cluster it also waits (on a task) until Redis
    /// took the message, and for a [`Emitter::counted`] emit until the other nodes counted.
    pub fn when_committed(mut self, f: impl FnOnce(Result<Emitted, HubError>) + Send + 'static) {
        if let Some(e) = self.cluster_error.take() {
            return f(Err(e));
        }
        if self.remote.is_some() || self.kept.is_some() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { f(self.committed().await) });
                return;
            }
            self.remote = None;
            if self.kept.take().is_some() {
                return f(Err(HubError::new(
                    crate::error::ErrorCode::Internal,
                    "a kept message is acknowledged on the runtime only",
                )));
            }
        }
        match self.commit.take() {
            None => f(self.finish()),
            Some(c) => c.then(move |r| f(r.and_then(|()| self.finish()))),
        }
    }

    /// Waits until the message is durable and, in a cluster, has left for the other nodes
    /// (counted, for a counted emit; see [`Self::when_committed`]).
    pub async fn committed(mut self) -> Result<Emitted, HubError> {
        if let Some(e) = self.cluster_error.take() {
            return Err(e);
        }
        if let Some(c) = self.commit.take() {
            c.await?;
        }
        if let Some(k) = self.kept.take() {
            let k = k.get().await?;
            self.seq = Some(k.seq);
            self.delivered += k.delivered;
            self.online = self.online.map(|o| o || k.online);
        }
        self.cluster_wide().await?.finish()
    }

    /// Whether the outcome is final as it is: nothing to wait for (no commit, no count
    /// from other nodes) and nothing left to check.
    pub fn is_settled(&self) -> bool {
        self.commit.is_none()
            && self.remote.is_none()
            && self.kept.is_none()
            && self.cluster_error.is_none()
            && self.offline_error.is_none()
    }

    /// Makes the outcome `user_offline` when the user it was sent to had no connection on
    /// any node and the message was not kept for them: at once on one node, once the other
    /// nodes answered in a cluster.
    pub fn require_online(mut self, user: &str) -> Result<Self, HubError> {
        if self.remote.is_some() || self.kept.is_some() {
            self.offline_error = Some(user.into());
            return Ok(self);
        }
        self.offline_error = None;
        if self.online == Some(false) && self.seq.is_none() {
            return Err(offline(user));
        }
        Ok(self)
    }

    fn finish(mut self) -> Result<Emitted, HubError> {
        match self.offline_error.take() {
            Some(user) if self.online == Some(false) && self.seq.is_none() => Err(offline(&user)),
            _ => Ok(self),
        }
    }
}

fn offline(user: &str) -> HubError {
    HubError::new(
        crate::error::ErrorCode::UserOffline,
        format!("user `{user}` is not online"),
    )
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

    /// Says which client connection sent it (front ends do; see
    /// [`BroadcastOptions::sender`]).
    pub fn sent_by(mut self, conn: ConnId) -> Self {
        self.opts.sender = Some(conn);
        self
    }

    /// Says a client sent it, over no connection of this hub (a request over HTTP): room
    /// schemas treat it as a client's message.
    pub fn from_client(mut self) -> Self {
        self.opts.from_client = true;
        self
    }

    /// Names the sender.
    pub fn from(mut self, user: impl Into<Arc<str>>) -> Self {
        self.opts.from = Some(user.into());
        self
    }

    /// Keeps the message out of the room's history: it is delivered to the members present,
    /// without a `seq`, and never replayed.
    pub fn transient(mut self) -> Self {
        self.opts.transient = true;
        self
    }

    /// Reaches this node's recipients only, in a cluster too (socket.io's `io.local`).
    pub fn local(mut self) -> Self {
        self.opts.local = true;
        self
    }

    /// Asks the other nodes of a cluster how many connections they reached: see
    /// [`Emitted::cluster_wide`] (the HTTP API's `delivered`).
    pub fn counted(mut self) -> Self {
        self.opts.counted = true;
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

    /// Sends a server frame other than a message, such as the notification service's
    /// `unread` (see [`super::Body::Notice`]); `fields` is a JSON object. Returns how many
    /// connections it was queued for.
    pub fn notice(self, name: &str, fields: &serde_json::Value) -> usize {
        self.hub.notice(
            &self.opts,
            name,
            crate::protocol::v1::RawJson::from_value(fields),
        )
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

/// The namespace `/`, shared (an emit does not allocate a name for it).
fn root_ns() -> Arc<str> {
    static ROOT: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "/".into());
    ROOT.clone()
}
