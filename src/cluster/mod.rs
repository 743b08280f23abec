//! The cluster: several Hubbub nodes (and Node socket.io servers) behave as one through
//! Redis. [`RedisAdapter`] is the hub's [`Adapter`] for it.
//!
//! Deliveries travel as `@socket.io/redis-adapter` broadcasts ([`wire`]): a node publishes
//! each message once (on `socket.io#<ns>#`, or `socket.io#<ns>#<room>#` for one room), every
//! node pattern-subscribes to `socket.io#*`, decodes it once and hands it to its hub, which
//! encodes it once per wire format for its own recipients. Questions across nodes (how many
//! connections a push reached, who is in a room, closing a user's devices) are requests with
//! ids whose answers are gathered until every subscribed node answered or the time is up
//! ([`requests`]); those socket.io's adapter knows go on its request channels, so Node
//! servers ask Hubbub nodes and are asked in turn ([`answers`]), Hubbub's own go on
//! `hubbub-request#`. Each node keeps a heartbeat key that expires ([`nodes`]). The Redis
//! connections, their queue and their reconnection are [`link`]'s.

mod answers;
mod kept;
mod link;
mod nodes;
mod notices;
mod requests;
mod sharded;
pub mod store;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::error::{ErrorCode, HubError};
use crate::hub::{Adapter, Answers, CountReply, Delivery, Hub, Query, Reach, WeakHub};
use crate::protocol::msgpack as mp;
pub use answers::{AckSink, AckedBroadcast};
use link::{Incoming, Link, Subscriptions};
pub use notices::{NoticeHandler, Replicated};
use requests::{request_id, Pending};
pub use store::RedisStore;
use wire::{Channel, Flavour};

/// What a node of a cluster needs to know.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// The namespaces this node serves (it answers socket.io requests for these).
    pub namespaces: Vec<String>,
    /// How long a request across the cluster waits for answers.
    pub request_timeout: Duration,
    /// How often the node's heartbeat key is written; it expires after twice this.
    pub heartbeat_interval: Duration,
    /// Whether the cluster numbers and keeps history rooms' messages in Redis
    /// (`store = "redis"`): see [`crate::hub::shared`].
    pub keep_history: bool,
    /// The prefix of socket.io's channels (`@socket.io/redis-adapter`'s `key`; `socket.io`
    /// by default), which also sets Hubbub's own names apart ([`wire::Names`]).
    pub key: String,
    /// Which of the Node adapter's flavours the cluster speaks: classic pub/sub, or sharded
    /// pub/sub (Redis 7 `SPUBLISH`, [`sharded`]).
    pub flavour: Flavour,
}

/// The Redis adapter: one node of a cluster.
#[derive(Debug)]
pub struct RedisAdapter {
    me: std::sync::Weak<RedisAdapter>,
    hub: WeakHub,
    uid: String,
    link: Arc<Link>,
    pending: Arc<Pending>,
    config: ClusterConfig,
    /// Set by [`Self::leave`]: the heartbeat stops.
    left: std::sync::atomic::AtomicBool,
    /// This node's copy of the kept history caught up since the subscriptions were last
    /// made ([`kept::resync`]).
    synced: std::sync::atomic::AtomicBool,
    /// Counts the times the subscriptions were made or lost: a catch-up that started
    /// before the latest does not declare the node caught up.
    generation: std::sync::atomic::AtomicU64,
    /// Where other nodes' notifications go (the notification service).
    notices: notices::Handler,
    /// While notifications are read back: what other nodes published meanwhile.
    notices_waiting: std::sync::Mutex<Option<Vec<Replicated>>>,
    /// Held for a whole catch-up of the notifications, so that two never overlap (one
    /// would take the notices the other holds back, and its older snapshot could then
    /// overwrite them).
    notices_loading: tokio::sync::Mutex<()>,
    /// This node's slot in notification ids, once given.
    slot: std::sync::OnceLock<u64>,
    /// How a Node server's `broadcastWithAck` reaches this node's Socket.IO sockets.
    acked: AckedHook,
    /// This node's kept messages whose acknowledgement waits for their landing here.
    landings: Arc<kept::Landings>,
    /// The SHA of the numbering script, once loaded into Redis.
    kept_sha: std::sync::Mutex<Option<String>>,
    /// The channel and key names of this cluster.
    names: wire::Names,
}

/// The channel a request goes on, and so how its audience is counted.
#[derive(Clone, Debug)]
enum Audience {
    /// A channel (`PUBLISH`, `PUBSUB NUMSUB`).
    Plain(String),
    /// A shard channel (`SPUBLISH`, `PUBSUB SHARDNUMSUB`).
    Shard(String),
}

/// Where [`answers::AckedBroadcast`] is kept once the server gave it.
#[derive(Default)]
struct AckedHook(std::sync::OnceLock<answers::AckedBroadcast>);

impl std::fmt::Debug for AckedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AckedHook")
            .field(&self.0.get().is_some())
            .finish()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisAdapter {
    /// Joins `hub` to the cluster at `config.redis_url` and attaches the adapter to it. The
    /// connections are made in the background (and made again whenever lost): a node
    /// starts while Redis is down, and `/readyz` says so until it is up.
    pub fn start(hub: &Hub, config: ClusterConfig) -> Result<Arc<Self>, HubError> {
        let names = wire::Names::new(&config.key);
        let mut subscriptions = Subscriptions {
            channels: vec![names.hub_requests(), names.hub_responses()],
            ..Subscriptions::default()
        };
        if config.keep_history {
            subscriptions.channels.push(names.hub_notices());
        }
        for ns in &config.namespaces {
            match config.flavour {
                Flavour::Classic => {
                    subscriptions.channels.push(names.request_channel(ns));
                    subscriptions.channels.push(names.response_channel(ns));
                }
                Flavour::Sharded => {
                    let shard = &mut subscriptions.shard_channels;
                    shard.push(names.broadcast_channel(ns, None));
                    shard.push(names.server_channel(ns, hub.node()));
                }
            }
        }
        if config.flavour == Flavour::Classic {
            subscriptions.patterns.push(names.broadcast_pattern());
        }
        let weak = Arc::new(std::sync::OnceLock::<std::sync::Weak<RedisAdapter>>::new());
        let target = weak.clone();
        let watched = weak.clone();
        let link = Link::open(
            &config.redis_url,
            subscriptions,
            move |m| {
                if let Some(a) = target.get().and_then(std::sync::Weak::upgrade) {
                    a.on_message(m);
                }
            },
            move |listening| {
                if let Some(a) = watched.get().and_then(std::sync::Weak::upgrade) {
                    a.on_listening(listening);
                }
            },
        )?;
        let adapter = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            hub: hub.downgrade(),
            uid: hub.node().to_string(),
            link,
            pending: Arc::default(),
            config,
            left: std::sync::atomic::AtomicBool::new(false),
            synced: std::sync::atomic::AtomicBool::new(false),
            generation: std::sync::atomic::AtomicU64::new(0),
            notices: notices::Handler::default(),
            notices_waiting: std::sync::Mutex::new(None),
            notices_loading: tokio::sync::Mutex::new(()),
            slot: std::sync::OnceLock::new(),
            acked: AckedHook::default(),
            landings: Arc::default(),
            kept_sha: std::sync::Mutex::new(None),
            names,
        });
        let _ = weak.set(Arc::downgrade(&adapter));
        // The subscriptions may have been made before the adapter could hear of it.
        if adapter.link.health().is_ok() {
            adapter.on_listening(true);
        }
        nodes::start_heartbeat(&adapter);
        // Rooms already here are followed now; those made later as they come.
        hub.attach_adapter(adapter.clone());
        Ok(adapter)
    }

    /// Lets a Node server's `broadcastWithAck` (`io.timeout(ms).emit(..., callback)`) reach
    /// this node's Socket.IO sockets with an acknowledgement each, relayed to it as they
    /// come (see [`answers::AckedBroadcast`]). Without it, this node answers with how many
    /// connections it reached and no acknowledgements. Only the first call counts.
    pub fn on_acked_broadcast(
        &self,
        f: impl Fn(&Reach, &Arc<Delivery>, Duration, Box<dyn FnOnce(usize) + Send>, AckSink)
            + Send
            + Sync
            + 'static,
    ) {
        let _ = self.acked.0.set(Box::new(f));
    }

    /// This node's id in the cluster (the adapter's `uid`).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Takes this node out of the cluster's list of nodes (at shutdown; the heartbeat stops
    /// with the adapter).
    pub async fn leave(&self) {
        self.left.store(true, std::sync::atomic::Ordering::Release);
        nodes::leave(self).await;
    }

    /// Messages that could not be published to Redis.
    pub fn publish_failures(&self) -> u64 {
        self.link.failed()
    }

    /// Sends `serverSideEmit(event, ...args)` to the other servers of namespace `ns` (Node
    /// socket.io servers call their listeners; Hubbub nodes answer the events
    /// [`answers`] knows) and gathers their acknowledgements.
    pub async fn server_side_emit(
        &self,
        ns: &str,
        event: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, HubError> {
        let id = request_id();
        let mut data = vec![Value::from(event)];
        data.extend(args);
        let answers = if self.sharded() {
            let request = json!({
                "uid": self.uid, "nsp": ns, "type": wire::shard_kind::SERVER_SIDE_EMIT,
                "data": {"requestId": id, "packet": data},
            });
            let channel = Audience::Shard(self.names.broadcast_channel(ns, None));
            self.request(&channel, &id, Bytes::from(request.to_string()))
                .await?
        } else {
            let request = json!({
                "uid": self.uid, "requestId": id, "type": wire::kind::SERVER_SIDE_EMIT,
                "data": data,
            });
            let channel = Audience::Plain(self.names.request_channel(ns));
            self.request(&channel, &id, Bytes::from(request.to_string()))
                .await?
        };
        Ok(answers
            .iter()
            .map(|a| mp::to_json(mp::get(a, "data").unwrap_or(&Mp::Nil), &mut Vec::new()))
            .collect())
    }

    /// Publishes request `id` on `channel` and gathers the answers of the nodes subscribed
    /// to it (all but this one).
    async fn request(
        &self,
        channel: &Audience,
        id: &str,
        payload: Bytes,
    ) -> Result<Vec<Mp>, HubError> {
        let rx = self.send_request(channel, id, payload)?;
        self.answers(channel, id, rx).await
    }

    /// Publishes request `id` now (in order with this node's other messages) and returns
    /// where its answers will arrive; a request Redis does not take is given up.
    fn send_request(
        &self,
        channel: &Audience,
        id: &str,
        payload: Bytes,
    ) -> Result<oneshot::Receiver<Vec<Mp>>, HubError> {
        let rx = self.pending.start(id, self.config.request_timeout);
        let (pending, gone) = (self.pending.clone(), id.to_string());
        let sent: link::Sent = Box::new(move |r| {
            if r.is_err() {
                pending.cancel(&gone);
            }
        });
        let published = match channel {
            Audience::Plain(c) => self.link.publish(c.clone(), payload, Some(sent)),
            Audience::Shard(c) => self.link.spublish(c.clone(), payload, Some(sent)),
        };
        if let Err(e) = published {
            self.pending.cancel(id);
            return Err(e);
        }
        Ok(rx)
    }

    /// Waits for the answers to request `id`: as many as other nodes are subscribed to
    /// `channel`, or those that came in time.
    async fn answers(
        &self,
        channel: &Audience,
        id: &str,
        rx: oneshot::Receiver<Vec<Mp>>,
    ) -> Result<Vec<Mp>, HubError> {
        match self.subscribers(channel).await {
            Ok(n) => self.pending.expect(id, n.saturating_sub(1)),
            Err(e) => {
                self.pending.cancel(id);
                return Err(e);
            }
        }
        rx.await.map_err(|_| {
            HubError::new(
                ErrorCode::Unavailable,
                "the request could not be published to the cluster",
            )
        })
    }

    /// How many connections are subscribed to `channel` (`PUBSUB NUMSUB`, or `SHARDNUMSUB`
    /// for a shard channel).
    async fn subscribers(&self, channel: &Audience) -> Result<usize, HubError> {
        let mut cmd = redis::cmd("PUBSUB");
        match channel {
            Audience::Plain(c) => cmd.arg("NUMSUB").arg(c),
            Audience::Shard(c) => cmd.arg("SHARDNUMSUB").arg(c),
        };
        let (_, n): (String, usize) = self
            .link
            .query::<Vec<(String, usize)>>(&cmd)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(n)
    }

    /// The subscriptions were made (again), or lost: kept history is caught up before it
    /// is used again.
    fn on_listening(&self, listening: bool) {
        use std::sync::atomic::Ordering;
        self.synced.store(false, Ordering::Release);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if !listening || !self.config.keep_history {
            return;
        }
        if let (Some(me), Some(hub)) = (self.clone_handle(), self.hub.upgrade()) {
            tokio::spawn(kept::resync(me, hub, generation));
        }
    }

    fn on_message(&self, m: Incoming<'_>) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let Some(channel) = self.names.classify(m.channel) else {
            return;
        };
        if let Channel::Broadcast { ns, room } = channel {
            if self.sharded() {
                if self.serves(ns) {
                    self.on_shard_message(&hub, ns, room, m.payload);
                }
                return;
            }
            // Every node keeps every kept room: it must read each room's messages.
            let skip =
                !self.config.keep_history && room.is_some_and(|r| !answers::has_room(&hub, ns, r));
            if !self.serves(ns) || skip {
                return;
            }
            match wire::decode_broadcast(m.payload) {
                // As socket.io's adapter: a packet of another namespace than its channel's is
                // not delivered.
                Ok(b) if *b.reach.ns != *ns => {}
                Ok(b) if b.kept.is_some() && self.config.keep_history => self.land(&hub, b),
                Ok(b) if b.uid == self.uid => {}
                Ok(b) => {
                    hub.deliver_remote(&b.reach, &b.delivery);
                }
                Err(e) => tracing::debug!(channel = m.channel, error = %e, "bad broadcast"),
            }
            return;
        }
        if channel == Channel::HubNotice {
            return self.on_notice(m.payload);
        }
        let decoded = match wire::decode_map(m.payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(channel = m.channel, error = %e, "bad request or response");
                return;
            }
        };
        match channel {
            // Acknowledgements of single clients are not answers of a node.
            Channel::Response
                if mp::get_u64(&decoded, "type") != Some(wire::kind::BROADCAST_ACK) =>
            {
                if let Some(id) = mp::get_str(&decoded, "requestId").map(str::to_string) {
                    self.pending.answered(&id, decoded);
                }
            }
            Channel::HubRequest => self.on_hub_request(&hub, &decoded),
            Channel::HubNotice => {}
            Channel::Request { ns }
                if answers::wants_client_acks(&decoded)
                    && mp::get_str(&decoded, "uid") != Some(&self.uid) =>
            {
                match self.acked.0.get() {
                    Some(send) => answers::relay_acks_classic(self, ns, &decoded, send),
                    None => {
                        if let Some((channel, payload)) =
                            answers::answer(&hub, &self.names, ns, &decoded)
                        {
                            let _ = self.link.publish(channel, payload, None);
                        }
                    }
                }
            }
            Channel::Request { ns } if mp::get_str(&decoded, "uid") != Some(&self.uid) => {
                if let Some((channel, payload)) = answers::answer(&hub, &self.names, ns, &decoded) {
                    let _ = self.link.publish(channel, payload, None);
                }
            }
            _ => {}
        }
    }

    fn on_hub_request(&self, hub: &Hub, request: &Mp) {
        if mp::get_str(request, "uid") == Some(&self.uid) {
            return;
        }
        let q: Option<Query> = mp::get(request, "query")
            .map(|q| mp::to_json(q, &mut Vec::new()))
            .and_then(|v| serde_json::from_value(v).ok());
        let Some(q) = q else {
            tracing::debug!("a Hubbub request without a query this node knows");
            return;
        };
        let answer = hub.answer(&q);
        if let Some(id) = mp::get_str(request, "requestId") {
            let body = json!({ "requestId": id, "answer": answer });
            let _ = self.link.publish(
                self.names.hub_responses(),
                Bytes::from(body.to_string()),
                None,
            );
        }
    }

    fn serves(&self, ns: &str) -> bool {
        self.config.namespaces.iter().any(|n| n == ns)
    }
}

impl Adapter for RedisAdapter {
    fn broadcast(
        &self,
        reach: &Reach,
        d: &Arc<Delivery>,
        counted: bool,
        done: CountReply,
    ) -> Result<(), HubError> {
        self.link.health()?;
        let cannot = || HubError::bad_request("this message cannot cross the cluster");
        if !counted {
            let payload = wire::encode_broadcast(self.config.flavour, &self.uid, reach, d)
                .ok_or_else(cannot)?;
            let payload = Bytes::from(payload);
            let sent: link::Sent = Box::new(move |r| done.send(r.map(|()| 0)));
            if self.sharded() {
                let channel = self.names.shard_broadcast_channel(reach);
                return self.link.spublish(channel, payload, Some(sent));
            }
            let one = (reach.rooms.len() == 1).then(|| &*reach.rooms[0]);
            let channel = self.names.broadcast_channel(&reach.ns, one);
            return self.link.publish(channel, payload, Some(sent));
        }
        // A broadcast that wants the nodes' counts: socket.io's broadcast with acks, which
        // Node servers answer too.
        let (packet, extras) = wire::packet_of(&reach.ns, d).ok_or_else(cannot)?;
        let id = request_id();
        let (channel, request) = if self.sharded() {
            let data = mp::map([
                ("packet", packet),
                ("requestId", Mp::from(&*id)),
                ("opts", wire::opts_of(reach)),
                ("hubbub", extras),
            ]);
            (
                Audience::Shard(self.names.broadcast_channel(&reach.ns, None)),
                wire::shard_message(&self.uid, &reach.ns, wire::shard_kind::BROADCAST, data),
            )
        } else {
            let request = mp::map([
                ("uid", Mp::from(&*self.uid)),
                ("requestId", Mp::from(&*id)),
                ("type", Mp::from(wire::kind::BROADCAST)),
                ("packet", packet),
                ("opts", wire::opts_of(reach)),
                ("hubbub", extras),
            ]);
            (
                Audience::Plain(self.names.request_channel(&reach.ns)),
                request,
            )
        };
        let payload = Bytes::from(mp::encode(&request));
        // Published now, in order with this node's other messages; counted when answered.
        let rx = self.send_request(&channel, &id, payload)?;
        let Some(me) = self.clone_handle() else {
            return Ok(());
        };
        tokio::spawn(async move {
            let counts = me.answers(&channel, &id, rx).await.map(|answers| {
                answers
                    .iter()
                    .filter_map(|a| mp::get_u64(a, "clientCount"))
                    .sum::<u64>() as usize
            });
            done.send(counts);
        });
        Ok(())
    }

    fn ask(&self, q: Query) -> Answers {
        let me = self.clone_handle();
        Box::pin(async move {
            let Some(me) = me else {
                return Ok(Vec::new());
            };
            me.link.health()?;
            let id = request_id();
            let body = json!({ "uid": me.uid, "requestId": id, "query": q });
            let channel = Audience::Plain(me.names.hub_requests());
            let answers = me
                .request(&channel, &id, Bytes::from(body.to_string()))
                .await?;
            Ok(answers
                .iter()
                .map(|a| mp::to_json(mp::get(a, "answer").unwrap_or(&Mp::Nil), &mut Vec::new()))
                .collect())
        })
    }

    fn tell(&self, q: Query) -> Result<(), HubError> {
        let body = json!({ "uid": self.uid, "query": q });
        self.link.publish(
            self.names.hub_requests(),
            Bytes::from(body.to_string()),
            None,
        )
    }

    fn room_changed(&self, ns: &str, room: &str, here: bool) {
        self.follow_room(ns, room, here);
    }

    fn nodes(&self) -> Answers {
        let me = self.clone_handle();
        Box::pin(async move {
            match me {
                Some(me) => nodes::list(&me).await,
                None => Ok(Vec::new()),
            }
        })
    }

    fn health(&self) -> Result<(), HubError> {
        if self.config.keep_history {
            // Ready once this node's copy of the history caught up too.
            return self.kept_health();
        }
        self.link.health()
    }

    fn keeps_history(&self) -> bool {
        self.config.keep_history
    }

    fn history_health(&self) -> Result<(), HubError> {
        self.kept_health()
    }

    fn publish_kept(
        &self,
        reach: &Reach,
        d: &Arc<Delivery>,
        keep: crate::store::Keep,
        counted: bool,
        done: crate::hub::KeptReply,
    ) -> Result<(), HubError> {
        RedisAdapter::publish_kept(self, reach, d, keep, counted, done)
    }

    fn read_kept(
        &self,
        ns: &str,
        room: &str,
        after: u64,
        before: Option<u64>,
    ) -> crate::hub::KeptMessages {
        RedisAdapter::read_kept(self, ns, room, after, before)
    }
}

impl RedisAdapter {
    /// A handle for tasks.
    fn clone_handle(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }
}
