//! The hub's side of a cluster. After this node delivered a message to its own connections,
//! the [`Adapter`] carries it to the other nodes ([`Reach`] names its recipients in terms
//! every node understands), and a node delivers what the others send with
//! [`Hub::deliver_remote`]. With no adapter attached (the `local` adapter) a hub is one node.
//!
//! Names across nodes are socket.io's: a connection is also the room named by its id, so
//! "this connection" and "everyone but the sender" travel as room names; a user is the
//! internal room [`user_room`], which no client can join or see.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::access::may_see_presence;
use super::conn::{Conn, ConnId};
use super::delivery::{Body, Delivery};
use super::emit::{BroadcastOptions, Emitted, Target};
use super::room::INTERNAL_MARK as INTERNAL;
use super::shards::lock;
use super::Hub;
use crate::error::{ErrorCode, HubError};

/// Whom a message reaches on the other nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// The namespace.
    pub ns: Arc<str>,
    /// The rooms whose members receive it (a connection id, a [`user_room`]); none: everyone.
    pub rooms: Vec<Arc<str>>,
    /// The rooms whose members are left out (a connection id for the sender).
    pub except: Vec<Arc<str>>,
    /// Dropped for a recipient whose queue is full.
    pub volatile: bool,
}

/// The internal room every connection of `user` is in, as far as other nodes are concerned.
pub fn user_room(user: &str) -> String {
    format!("{INTERNAL}user{INTERNAL}{user}")
}

/// The user a [`user_room`] name stands for.
pub fn room_user(room: &str) -> Option<&str> {
    room.strip_prefix(INTERNAL)?
        .strip_prefix("user")?
        .strip_prefix(INTERNAL)
}

/// How many connections of the other nodes a message reached, once they answered (or the
/// wait ended): what the HTTP API reports as `delivered`.
#[derive(Debug)]
pub struct RemoteCount(tokio::sync::oneshot::Receiver<Result<usize, HubError>>);

/// Completes a [`RemoteCount`].
#[derive(Debug)]
pub struct CountReply(tokio::sync::oneshot::Sender<Result<usize, HubError>>);

impl RemoteCount {
    /// A count and the handle that completes it.
    pub fn pending() -> (Self, CountReply) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self(rx), CountReply(tx))
    }

    /// Waits for the count; `unavailable` when the cluster could not be asked.
    pub async fn get(self) -> Result<usize, HubError> {
        self.0.await.unwrap_or_else(|_| {
            Err(HubError::new(
                ErrorCode::Unavailable,
                "the cluster did not answer",
            ))
        })
    }
}

impl CountReply {
    /// Completes the count.
    pub fn send(self, n: Result<usize, HubError>) {
        let _ = self.0.send(n);
    }
}

/// A question about connections that every node answers for its own (see
/// [`Hub::answer`]); the cluster's answer is the list of the nodes' answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    /// The users in a room: a list of user names, `null` where the room does not exist.
    Presence {
        /// The namespace.
        ns: String,
        /// The room.
        room: String,
    },
    /// The users online: `[{user, connections, since}]`.
    Online,
    /// A user's connections: `[{conn, transport, address, since}]`.
    Devices {
        /// The user.
        user: String,
    },
    /// Close a user's connections (all, `only` one, or all `except` one): how many.
    Disconnect {
        /// The user.
        user: String,
        /// Only this connection id.
        only: Option<String>,
        /// Every connection but this id.
        except: Option<String>,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// A room made through the API on another node, kept by the cluster: made here too.
    RoomSaved {
        /// The namespace.
        ns: String,
        /// The room.
        name: String,
        /// Its settings, JSON.
        settings: String,
    },
    /// A room deleted on another node: deleted here too.
    RoomDeleted {
        /// The namespace.
        ns: String,
        /// The room.
        name: String,
    },
}

/// What an [`Adapter`]'s questions return: each other node's answer.
pub type Answers = Pin<Box<dyn Future<Output = Result<Vec<Value>, HubError>> + Send>>;

/// Carries this node's deliveries to the other nodes of a cluster.
pub trait Adapter: Send + Sync + std::fmt::Debug + 'static {
    /// Sends a message this node has delivered locally to the nodes that may have more of its
    /// recipients. Must not block: queue the work. `done` is completed once the message
    /// left for the other nodes: with how many connections they reached when `counted`
    /// (every node is asked), with 0 otherwise, or with `unavailable` when it could not be
    /// sent after all. `Err` (`unavailable`) when the cluster cannot be reached now: nothing
    /// was sent.
    fn broadcast(
        &self,
        reach: &Reach,
        d: &Arc<Delivery>,
        counted: bool,
        done: CountReply,
    ) -> Result<(), HubError>;

    /// Asks every other node `q` and gathers their answers (those that answered in time).
    fn ask(&self, q: Query) -> Answers;

    /// Tells every other node to do `q`, without waiting for answers.
    fn tell(&self, q: Query) -> Result<(), HubError>;

    /// The nodes of the cluster, as their heartbeats describe them.
    fn nodes(&self) -> Answers;

    /// Room `room` of `ns` came to this node (`here`) or went from it; so does the room
    /// named by each connection's id. Called with the map's shard locked, so the calls for
    /// one room come in the order of its changes: must not block, nor call back into the
    /// hub.
    fn room_changed(&self, ns: &str, room: &str, here: bool) {
        let _ = (ns, room, here);
    }

    /// Whether the cluster is reachable (readiness).
    fn health(&self) -> Result<(), HubError>;

    /// Whether the cluster numbers and keeps the messages of history rooms (the Redis
    /// store; see [`super::shared`]) rather than each node its own.
    fn keeps_history(&self) -> bool {
        false
    }

    /// Whether the kept history can be used now: reachable, and this node's copy caught up
    /// since it (re)connected.
    fn history_health(&self) -> Result<(), HubError> {
        self.health()
    }

    /// Has message `d` of a history room (without a `seq`) numbered in its room, kept as
    /// `keep` says and handed to every node, this one included, which land it
    /// ([`Hub::apply_kept`]). Must not block. `done` hears its `seq` once the cluster kept
    /// it, with every node's counts when `counted`. `Err` when it cannot be sent now.
    fn publish_kept(
        &self,
        reach: &Reach,
        d: &Arc<Delivery>,
        keep: crate::store::Keep,
        counted: bool,
        done: super::KeptReply,
    ) -> Result<(), HubError> {
        let _ = (reach, d, keep, counted, done);
        Err(HubError::new(
            ErrorCode::Internal,
            "this cluster does not keep history",
        ))
    }

    /// Reads back the kept messages of `room` in `ns` with `seq` above `after` (and below
    /// `before`), oldest first, each with whether this node published it.
    fn read_kept(
        &self,
        ns: &str,
        room: &str,
        after: u64,
        before: Option<u64>,
    ) -> super::KeptMessages {
        let _ = (ns, room, after, before);
        Box::pin(async {
            Err(HubError::new(
                ErrorCode::Internal,
                "this cluster does not keep history",
            ))
        })
    }
}

impl Hub {
    /// Attaches the adapter that makes this hub one node of a cluster. Only the first call
    /// counts.
    pub fn attach_adapter(&self, adapter: Arc<dyn Adapter>) {
        // Every room map and connection shard is held while the adapter is set and told of
        // what is already here, so each room (and connection id) is announced exactly once:
        // either now, or by the change that makes it later.
        let rooms: Vec<_> = self.inner.rooms.all().collect();
        let wire: Vec<_> = self.inner.wire.all().collect();
        if self.inner.adapter.set(adapter.clone()).is_err() {
            return;
        }
        for shard in &rooms {
            for room in shard.values() {
                adapter.room_changed(&room.ns, &room.name, true);
            }
        }
        for shard in &wire {
            for conn in shard.values() {
                adapter.room_changed(&conn.ns, &conn.wire_id, true);
            }
        }
    }

    /// The cluster adapter, when this hub is one node of a cluster.
    pub fn adapter(&self) -> Option<&Arc<dyn Adapter>> {
        self.inner.adapter.get()
    }

    /// A connection of this node by its id.
    pub fn conn_by_wire_id(&self, id: &str) -> Option<Arc<Conn>> {
        self.inner.wire.shard(id).get(id).cloned()
    }

    /// Whom `opts` reaches on the other nodes, in names they understand; `None` when it
    /// cannot reach anyone there (one connection of this node).
    pub(super) fn reach(&self, opts: &BroadcastOptions, d: &Delivery) -> Option<Reach> {
        let rooms = match &opts.target {
            Target::All => Vec::new(),
            Target::Room(r) => vec![r.clone()],
            Target::User(u) => {
                let mut rooms: Vec<Arc<str>> = vec![user_room(u).into()];
                // A direct message kept in a conversation also reaches its members (the
                // sender's other devices).
                if let Some(room) = d.message().and_then(|m| m.room.clone()) {
                    rooms.push(room);
                }
                rooms
            }
            Target::Conn(_) => return None,
            Target::Many { rooms, .. } if rooms.is_empty() => return None,
            // Connections named by key are this node's.
            Target::Many { rooms, .. } => rooms.clone(),
        };
        let mut except = opts.except_rooms.clone();
        except.extend(
            opts.except
                .iter()
                .filter_map(|id| self.conn(*id))
                .map(|c| c.wire_id.clone()),
        );
        Some(Reach {
            ns: opts.ns.clone(),
            rooms,
            except,
            volatile: opts.volatile,
        })
    }

    /// Hands a locally delivered message to the adapter. Returns what completes once it left
    /// (with the remote count when `opts` asked for one), or the error that kept it from the
    /// other nodes.
    pub(super) fn to_cluster(
        &self,
        opts: &BroadcastOptions,
        d: &Arc<Delivery>,
    ) -> Result<Option<RemoteCount>, HubError> {
        let Some(adapter) = self.adapter().filter(|_| !opts.local) else {
            return Ok(None);
        };
        let Some(reach) = self.reach(opts, d) else {
            return Ok(None);
        };
        // Even an emit that does not count waits for the message to have left: its
        // acknowledgement is a promise that every node was given it.
        let (count, reply) = RemoteCount::pending();
        match adapter.broadcast(&reach, d, opts.counted, reply) {
            Ok(()) => Ok(Some(count)),
            Err(e) => {
                self.inner.stats.cluster_failed();
                Err(e)
            }
        }
    }

    /// Resolves the names of a [`Reach`] to this node's connections: a room's members, the
    /// connection a connection id names, a user's connections.
    fn resolve_names(&self, ns: &str, names: &[Arc<str>], mut f: impl FnMut(&Arc<Conn>)) {
        for name in names {
            if let Some(user) = room_user(name) {
                self.user_conns(user)
                    .iter()
                    .filter(|c| &*c.ns == ns)
                    .for_each(&mut f);
            } else if let Some(r) = self.room_in(ns, name) {
                let members: Vec<Arc<Conn>> = lock(&r.state).members.values().cloned().collect();
                members.iter().for_each(&mut f);
            } else if let Some(c) = self.conn_by_wire_id(name) {
                if &*c.ns == ns {
                    f(&c);
                }
            }
        }
    }

    /// Whether a message to `name` (a room, a connection id, a [`user_room`]) of namespace
    /// `ns` would reach anyone on this node.
    pub fn names_anyone(&self, ns: &str, name: &str) -> bool {
        if let Some(user) = room_user(name) {
            return self.user_conns(user).iter().any(|c| &*c.ns == ns);
        }
        self.room_in(ns, name).is_some() || self.conn_by_wire_id(name).is_some_and(|c| &*c.ns == ns)
    }

    /// The connections of this node that `reach` names, each once.
    pub fn reached(&self, reach: &Reach) -> Vec<Arc<Conn>> {
        let mut excluded = std::collections::HashSet::<ConnId>::new();
        self.resolve_names(&reach.ns, &reach.except, |c| {
            excluded.insert(c.key);
        });
        let mut seen = std::collections::HashSet::<ConnId>::new();
        let mut out = Vec::new();
        let mut take = |c: &Arc<Conn>| {
            if !excluded.contains(&c.key) && seen.insert(c.key) {
                out.push(c.clone());
            }
        };
        if reach.rooms.is_empty() {
            for shard in self.inner.conns.all() {
                shard
                    .values()
                    .filter(|c| *c.ns == *reach.ns)
                    .for_each(&mut take);
            }
        } else {
            self.resolve_names(&reach.ns, &reach.rooms, take);
        }
        out
    }

    /// Delivers a message another node sent to this node's connections that `reach` names:
    /// no history, no schema, no further broadcast. Returns how many it was queued for.
    pub fn deliver_remote(&self, reach: &Reach, d: &Arc<Delivery>) -> usize {
        if d.message().is_some_and(|m| m.room.is_none()) {
            d.set_via(&reach.rooms);
        }
        let mut reached = self.reached(reach);
        if let Body::Presence { room, .. } = &d.body {
            let private = self
                .room_in(&reach.ns, room)
                .is_some_and(|r| lock(&r.state).settings.private);
            reached.retain(|c| may_see_presence(c, room, private));
        }
        let delivered: usize = reached
            .iter()
            .map(|c| self.push_one(c, d, reach.volatile))
            .sum();
        self.inner.stats.messages_out(delivered as u64);
        delivered
    }
}

impl Emitted {
    /// Adds what the other nodes of a cluster delivered (when the emit was
    /// [`super::Emitter::counted`]): `delivered` becomes cluster-wide, and `online` true when
    /// any node reached the user. `unavailable` when the cluster could not be asked.
    pub async fn cluster_wide(mut self) -> Result<Emitted, HubError> {
        if let Some(c) = self.remote.take() {
            let n = c.get().await?;
            self.delivered += n;
            if n > 0 {
                self.online = self.online.map(|_| true);
            }
        }
        Ok(self)
    }
}

impl Hub {
    /// This node's answer to `q`.
    pub fn answer(&self, q: &Query) -> Value {
        match q {
            Query::Presence { ns, room } => match self.room_in(ns, room) {
                Some(r) if !super::room::is_internal(room) => json!(lock(&r.state)
                    .users
                    .keys()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()),
                // No such room here.
                _ => Value::Null,
            },
            Query::Online => json!(self.online_users()),
            Query::Devices { user } => json!(self.devices(user)),
            Query::Disconnect {
                user,
                only,
                except,
                code,
                reason,
            } => json!(self.disconnect_user_where(
                user,
                |c| only.as_deref().is_none_or(|o| c.wire_id() == o)
                    && except.as_deref().is_none_or(|e| c.wire_id() != e),
                *code,
                reason,
            )),
            Query::RoomSaved { ns, name, settings } => {
                self.learn_room(ns, name, settings);
                Value::Null
            }
            Query::RoomDeleted { ns, name } => {
                self.forget_room(ns, name);
                Value::Null
            }
        }
    }

    /// The answers of every node to `q`, this node's first: only this node's without a
    /// cluster; `unavailable` when the cluster cannot be asked.
    pub async fn ask_cluster(&self, q: Query) -> Result<Vec<Value>, HubError> {
        let Some(a) = self.adapter() else {
            return Ok(vec![self.answer(&q)]);
        };
        // A question that acts (closing connections) acts nowhere when the cluster cannot
        // be asked, rather than here only.
        if let Err(e) = a.health() {
            self.inner.stats.cluster_failed();
            return Err(e);
        }
        let mut all = vec![self.answer(&q)];
        match a.ask(q).await {
            Ok(more) => all.extend(more),
            Err(e) => {
                self.inner.stats.cluster_failed();
                return Err(e);
            }
        }
        Ok(all)
    }
}
