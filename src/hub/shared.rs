//! History kept by the cluster (the Redis store): when the [`Adapter`] says it keeps
//! history ([`Adapter::keeps_history`]), a message to a history room is not numbered by this
//! node. The adapter has the cluster number it (one `seq` counter per room for every node),
//! keep it and hand it to every node, this one included, in `seq` order; each node then
//! *lands* it ([`Hub::apply_kept`]): appends it to its copy of the room's log and pushes it
//! to its members, under the room's lock as a local publish would. So every node holds the
//! same numbered history, and a client that moves from one node to another resumes with
//! `since` and misses nothing.
//!
//! A node that finds a hole in a room's numbering (it was not listening for a while, or the
//! room is new to it) reads what it missed from the cluster before it lands anything more
//! of that room; messages that arrive meanwhile wait in the room ([`Arrival`]), and what was
//! missed reaches the members too, in order. [`Hub::catch_up`] does the same for a room
//! whose counter is ahead of this node's log (after the node started or came back).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::adapter::{Adapter, Reach};
use super::conn::ConnId;
use super::delivery::{Body, Delivery, Message};
use super::emit::{BroadcastOptions, Emitted};
use super::room::{room_key, Room, RoomSettings, RoomState};
use super::shards::lock;
use super::Hub;
use crate::error::{ErrorCode, HubError};
use crate::store::Keep;

/// What a node answers for a kept message it landed: connections reached, and whether the
/// addressee (of a direct message) had any.
pub type Landed = Box<dyn FnOnce(usize, bool) + Send>;

/// The messages of a room the cluster keeps, read back: whom each reaches, the message, and
/// whether this node published it.
pub type KeptMessages =
    Pin<Box<dyn Future<Output = Result<Vec<(Reach, Arc<Delivery>, bool)>, HubError>> + Send>>;

/// The outcome of a message the cluster numbered and kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kept {
    /// Its `seq` in its room.
    pub seq: u64,
    /// Connections it reached on every node (counted emits only; 0 otherwise).
    pub delivered: usize,
    /// Whether its addressee had a connection on any node (counted emits only).
    pub online: bool,
}

/// Waits for a [`Kept`]: the acknowledgement of a message the cluster keeps.
#[derive(Debug)]
pub struct KeptWait(oneshot::Receiver<Result<Kept, HubError>>);

/// Completes a [`KeptWait`].
#[derive(Debug)]
pub struct KeptReply(oneshot::Sender<Result<Kept, HubError>>);

impl KeptWait {
    /// A wait and the handle that completes it.
    pub fn pending() -> (Self, KeptReply) {
        let (tx, rx) = oneshot::channel();
        (Self(rx), KeptReply(tx))
    }

    /// The outcome; `unavailable` when the cluster never answered.
    pub async fn get(self) -> Result<Kept, HubError> {
        self.0.await.unwrap_or_else(|_| {
            Err(HubError::new(
                ErrorCode::Unavailable,
                "the cluster did not keep the message",
            ))
        })
    }
}

impl KeptReply {
    /// Completes the wait.
    pub fn send(self, outcome: Result<Kept, HubError>) {
        let _ = self.0.send(outcome);
    }
}

/// A kept message waiting in its room while what came before it is read back.
pub(super) struct Arrival {
    reach: Reach,
    d: Arc<Delivery>,
    landed: Option<Landed>,
    /// Published by this node: its `on_kept` hooks run here (once in the cluster).
    mine: bool,
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("d", &self.d)
            .finish_non_exhaustive()
    }
}

/// The name under which the cluster keeps a room's counter and messages (the hub's room
/// key: the name in `/`, `ns` + NUL + name elsewhere).
pub fn kept_key(ns: &str, room: &str) -> String {
    room_key(ns, room).to_string()
}

/// The namespace and room a [`kept_key`] names.
pub fn split_kept_key(key: &str) -> (&str, &str) {
    match key.split_once('\0') {
        Some((ns, room)) if ns.starts_with('/') => (ns, room),
        _ => ("/", key),
    }
}

impl Hub {
    /// The adapter, when it keeps history for the cluster.
    pub(super) fn shared_history(&self) -> Option<&Arc<dyn Adapter>> {
        self.adapter().filter(|a| a.keeps_history())
    }

    /// Hands a message of a history room to the cluster to number and keep (called by a
    /// publish with the room locked; nothing is delivered here: every node, this one
    /// included, lands it when the cluster hands it back). The outcome waits in
    /// [`Emitted::kept`].
    pub(super) fn publish_kept(
        &self,
        adapter: &Arc<dyn Adapter>,
        st: &RoomState,
        opts: &BroadcastOptions,
        d: &Arc<Delivery>,
        to: Option<&Arc<str>>,
    ) -> Result<Emitted, HubError> {
        let reach = self
            .reach(opts, d)
            .ok_or_else(|| HubError::bad_request("this message cannot be kept"))?;
        let keep = Keep {
            count: st.log.capacity(),
            max_age_ms: st.log.ttl_ms(),
        };
        let (wait, reply) = KeptWait::pending();
        if let Err(e) = adapter.publish_kept(&reach, d, keep, opts.counted, reply) {
            self.inner.stats.cluster_failed();
            return Err(e);
        }
        Ok(Emitted {
            online: to.map(|_| false),
            kept: Some(wait),
            ..Emitted::default()
        })
    }

    /// The settings a room the cluster keeps is made with on this node when it first hears
    /// of it: the application's (a conversation), or the defaults with the room's history.
    fn kept_settings(&self, room: &str, keep: Keep) -> RoomSettings {
        self.alias_settings(room).unwrap_or_else(|| RoomSettings {
            history: keep.count,
            history_ttl: keep.max_age_ms / 1000,
            ..self.default_settings(room)
        })
    }

    /// Lands a message the cluster numbered: appended to this node's copy of its room's
    /// log and pushed to the members here that `reach` does not leave out (and to the
    /// addressee's other connections, for a direct message), in `seq` order. A message
    /// this node has already is dropped; one after a hole waits until the hole is read back.
    /// `landed` hears how many connections it reached here. The hub's `on_kept` hooks run
    /// for the messages this node published (`mine`) only: once in the cluster.
    pub fn apply_kept(
        &self,
        reach: Reach,
        d: Arc<Delivery>,
        keep: Keep,
        landed: Option<Landed>,
        mine: bool,
    ) {
        let Some((room, seq)) = d.message().and_then(|m| Some((m.room.clone()?, m.seq?))) else {
            return;
        };
        let settings = self.kept_settings(&room, keep);
        let arrival = Arrival {
            reach,
            d,
            landed,
            mine,
        };
        loop {
            let r = self.room_or_create_with(&arrival.reach.ns, &room, Some(&settings));
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            if let Some(waiting) = st.waiting.as_mut() {
                waiting.push(arrival);
                return;
            }
            let last = st.log.last_seq();
            if seq > last + 1 {
                st.waiting = Some(vec![arrival]);
                drop(st);
                self.read_back(r, last, Some(seq));
                return;
            }
            let landed = self.land(&mut st, arrival, true);
            drop(st);
            landed.into_iter().for_each(|d| self.kept(&d));
            return;
        }
    }

    /// Brings this node's copy of a room up to the cluster's counter `counter` (after this
    /// node started, or came back to Redis): a room this node lacks is made, and what is
    /// missing is read back. Returns once it landed. (A counter behind this node's copy was
    /// raised to it first: see [`Self::kept_rooms`].)
    pub async fn catch_up(&self, ns: &str, room: &str, counter: u64) {
        let ns: Arc<str> = ns.into();
        let settings = self.alias_settings(room);
        let (r, after) = loop {
            let r = self.room_or_create_with(&ns, room, settings.as_ref());
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            if !st.log.enabled() || st.waiting.is_some() || counter <= st.log.last_seq() {
                // Nothing to read back: a room made just now to look is not kept.
                let removable = st.removable();
                drop(st);
                if removable {
                    self.remove_if_removable(&r);
                }
                return;
            }
            st.waiting = Some(Vec::new());
            break (r.clone(), st.log.last_seq());
        };
        self.read_back_now(&r, after, None).await;
    }

    /// Every room of this node that keeps history and has numbered messages, with its last
    /// `seq`: when the cluster's counter of one is behind (Redis lost its data, or the room
    /// was deleted and made again while this node was away), the counter is raised to it
    /// before anything is published, so a `seq` a client has seen is never given again.
    pub fn kept_rooms(&self) -> Vec<(Arc<str>, Arc<str>, u64)> {
        self.all_rooms()
            .into_iter()
            .filter_map(|r| {
                let st = lock(&r.state);
                let last = st.log.last_seq();
                (st.log.enabled() && last > 0 && !st.dead)
                    .then(|| (r.ns.clone(), r.name.clone(), last))
            })
            .collect()
    }

    /// The rooms made through the API (pinned) that this node has.
    pub fn pinned_rooms(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.all_rooms()
            .into_iter()
            .filter(|r| lock(&r.state).pinned)
            .map(|r| (r.ns.clone(), r.name.clone()))
            .collect()
    }

    /// Reads back a room's kept messages with `seq` in (`after`, `before`) on a task, then
    /// lands them and what waited meanwhile.
    fn read_back(&self, r: Arc<Room>, after: u64, before: Option<u64>) {
        let hub = self.downgrade();
        tokio::spawn(async move {
            if let Some(hub) = hub.upgrade() {
                hub.read_back_now(&r, after, before).await;
            }
        });
    }

    async fn read_back_now(&self, r: &Arc<Room>, after: u64, before: Option<u64>) {
        // Until it succeeds: while Redis cannot be read, nothing new can arrive either (it
        // comes through Redis), and landing what waits over a hole would lose the hole.
        let mut pause = std::time::Duration::from_millis(100);
        let messages = loop {
            let read = match self.shared_history().cloned() {
                Some(a) => a.read_kept(&r.ns, &r.name, after, before).await,
                None => Ok(Vec::new()),
            };
            match read {
                Ok(m) => break m,
                Err(e) if lock(&r.state).dead => {
                    tracing::debug!(room = &*r.name, "room gone while reading back: {e}");
                    break Vec::new();
                }
                Err(e) => {
                    tracing::warn!(
                        room = &*r.name,
                        after,
                        "could not read back missed history: {e}"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
            }
        };
        let mut st = lock(&r.state);
        let mut waiting: std::collections::BTreeMap<u64, Arrival> = st
            .waiting
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| Some((a.d.message()?.seq?, a)))
            .collect();
        let mut landed = Vec::new();
        // A copy this node did not have: what came before is history, not news, for the
        // addressee's other devices (its members get it: they joined an empty copy).
        let news = after > 0;
        for (reach, d, mine) in messages {
            let seq = d.message().and_then(|m| m.seq).unwrap_or_default();
            // A message also waiting lands as it arrived (its count is awaited).
            let (arrival, outside) = match waiting.remove(&seq) {
                Some(a) => (a, true),
                None => (
                    Arrival {
                        reach,
                        d,
                        landed: None,
                        mine,
                    },
                    news,
                ),
            };
            landed.extend(self.land(&mut st, arrival, outside));
        }
        for arrival in waiting.into_values() {
            landed.extend(self.land(&mut st, arrival, true));
        }
        let removable = st.removable();
        drop(st);
        if removable {
            self.remove_if_removable(r);
        }
        landed.iter().for_each(|d| self.kept(d));
    }

    /// Appends one numbered message to the room's log and pushes it to the members here
    /// (the room is locked). Returns it when it was new and this node's (for the hooks).
    /// `outside`: whether the addressee's connections that are not members get it too (not
    /// for history read back into a copy this node did not have).
    fn land(&self, st: &mut RoomState, mut a: Arrival, outside: bool) -> Option<Arc<Delivery>> {
        let fresh = a.d.message()?.seq.filter(|s| *s > st.log.last_seq());
        let Some(seq) = fresh else {
            if let Some(f) = a.landed {
                f(0, false);
            }
            return None;
        };
        // Socket.IO's connection state recovery numbers what this node delivers.
        let recorder = self.recorder(&a.reach.ns);
        if let Some(r) = &recorder {
            if let Some(m) = a.d.message() {
                a.d = Delivery::new(Body::Message(Message {
                    offset: Some(r.next_offset()),
                    ..m.clone()
                }));
            }
        }
        let m = a.d.message()?;
        st.log.expire(m.ts);
        st.log.record(seq, a.d.clone());
        st.published += 1;
        let except = self.excluded(&a.reach);
        let (ns, volatile) = (&a.reach.ns, a.reach.volatile);
        let mut delivered = 0;
        for c in st.members.values() {
            if *c.ns == **ns && !except.contains(&c.key) {
                delivered += self.push_one(c, &a.d, volatile);
            }
        }
        let mut online = false;
        if let Some(user) = m.to.as_ref().filter(|_| outside) {
            for c in self.user_conns(user) {
                if *c.ns != **ns {
                    continue;
                }
                online = true;
                if st.members.contains_key(&c.key) || except.contains(&c.key) {
                    continue;
                }
                delivered += self.push_one(&c, &a.d, volatile);
                st.outside.entry(c.key).or_insert(seq);
            }
            if st.outside.len() > super::fanout::OUTSIDE_PRUNE {
                st.outside.retain(|id, _| self.conn(*id).is_some());
            }
        }
        self.inner.stats.messages_out(delivered as u64);
        if let Some(r) = recorder {
            let opts = BroadcastOptions {
                ns: a.reach.ns.clone(),
                except: except.clone(),
                ..BroadcastOptions::to(super::emit::Target::Many {
                    rooms: m.room.iter().cloned().collect(),
                    conns: Vec::new(),
                })
            };
            r.record(self, &opts, &a.d);
        }
        if let Some(f) = a.landed {
            f(delivered, online);
        }
        a.mine.then_some(a.d)
    }

    /// The connections of this node a kept message leaves out (its sender, named by its
    /// connection id).
    fn excluded(&self, reach: &Reach) -> Vec<ConnId> {
        reach
            .except
            .iter()
            .filter_map(|name| self.conn_by_wire_id(name))
            .map(|c| c.key)
            .collect()
    }

    /// Learns of a room made through the API on another node (its settings, JSON): made
    /// here, or given those settings. Settings that cannot be read are ignored.
    pub fn learn_room(&self, ns: &str, name: &str, settings: &str) {
        let Ok(settings) = serde_json::from_str::<RoomSettings>(settings) else {
            tracing::warn!(room = name, "cluster: unreadable room settings");
            return;
        };
        let ns: Arc<str> = ns.into();
        let r = self.room_or_create_with(&ns, name, Some(&settings));
        let mut st = lock(&r.state);
        st.pinned = true;
        if st.settings != settings {
            let (cap, ttl) = (settings.history, settings.history_ttl.saturating_mul(1000));
            if cap != st.log.capacity() || ttl != st.log.ttl_ms() {
                st.log.resize(cap, ttl);
            }
            st.settings = settings;
        }
    }
}
