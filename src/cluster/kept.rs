//! History kept in Redis (`store = "redis"`): the cluster's side of [`crate::hub::shared`].
//!
//! A message of a history room is numbered, kept and published by one Lua script, so the
//! order Redis publishes a room's messages in is their `seq` order, for every node:
//! `HINCRBY hubbub:seq <room> 1` gives the `seq`, which the script writes into the 4 bytes
//! the broadcast keeps for it ([`wire::encode_kept`]); `XADD hubbub:history:<room>
//! <seq>-0` keeps the broadcast (trimmed to the room's `history` count, and by age with its
//! `history_ttl`); `PUBLISH` hands it to every node, the publisher's included. The script
//! runs in the publisher's queue, in order with the node's other messages, and its answer
//! (the `seq`) is the message's acknowledgement: Redis has it.
//!
//! Rooms made through the API are kept in the hash `hubbub:rooms` (settings as JSON). A
//! node that (re)connects reads the rooms and the counters and catches up every room
//! whose counter is ahead of its copy ([`resync`]); until then, what needs the history
//! (a publish to, or a replay from, a history room) answers `unavailable`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use rmpv::Value as Mp;
use serde_json::json;

use super::link::Reply;
use super::requests::request_id;
use super::wire::{self, KeptMark};
use super::RedisAdapter;
use crate::error::{ErrorCode, HubError};
use crate::hub::{
    kept_key, split_kept_key, Delivery, Hub, Kept, KeptMessages, KeptReply, Landed, Query, Reach,
};
use crate::protocol::msgpack as mp;
use crate::store::Keep;

impl RedisAdapter {
    /// The hash of every kept room's counter (field: the room's [`kept_key`]).
    fn seq_hash(&self) -> String {
        self.names.key("seq")
    }

    /// The hash of the rooms made through the API (field: [`kept_key`], value: settings
    /// JSON).
    fn rooms_hash(&self) -> String {
        self.names.key("rooms")
    }

    /// The stream that keeps a room's messages.
    fn stream_key(&self, key: &str) -> String {
        self.names.key(&format!("history:{key}"))
    }
}

/// Numbers, keeps and publishes one message. KEYS: the stream, the counters. ARGV: the
/// room's field, the channel, the broadcast, the offsets of its `seq` bytes (comma
/// separated), the count kept, the age kept in ms (0: any), the message's `ts`, the highest
/// `seq` 4 bytes hold, the publishing command (`PUBLISH`, or `SPUBLISH` for the sharded
/// flavour).
const PUBLISH_KEPT: &str = r"
local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if top[1] then
  -- The stream is ahead of the counter (the counter was lost): go on after the stream.
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last >= seq then
    seq = last + 1
    redis.call('HSET', KEYS[2], ARGV[1], seq)
  end
end
if seq > tonumber(ARGV[8]) then
  return redis.error_reply('the room has used up its seq numbers')
end
local b = string.char(math.floor(seq / 16777216) % 256, math.floor(seq / 65536) % 256,
  math.floor(seq / 256) % 256, seq % 256)
local p = ARGV[3]
for o in string.gmatch(ARGV[4], '%d+') do
  local i = tonumber(o)
  p = string.sub(p, 1, i) .. b .. string.sub(p, i + 5)
end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], seq .. '-0', 'ts', ARGV[7], 'b', p)
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  -- Entries are in seq order and, near enough, in time order: cut at the first young one.
  local oldest = tonumber(ARGV[7]) - ttl
  local from, count, cut = '-', 1, nil
  while cut == nil do
    local batch = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', count)
    if #batch == 0 then break end
    for _, e in ipairs(batch) do
      if tonumber(e[2][2]) >= oldest then cut = e[1]; break end
      from = '(' .. e[1]
    end
    count = 64
  end
  if cut ~= nil then redis.call('XTRIM', KEYS[1], 'MINID', cut) end
end
redis.call(ARGV[9], ARGV[2], p)
return seq
";

/// Forgets a room: its stream and its settings. Its counter stays, so a room made again
/// under the name goes on numbering (a node that still holds the old copy takes the new
/// messages, and no `seq` is given twice). KEYS: the stream, the rooms. ARGV: the room's
/// field.
const DELETE_ROOM: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

/// Raises a room's counter to at least ARGV[2]. KEYS: the counters. ARGV: the room's field,
/// the seq.
const RAISE_COUNTER: &str = r"
local c = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if c < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
";

/// How long an acknowledgement waits for the publishing node's own landing at most (it
/// comes a moment after Redis answered, unless the subscription was lost meanwhile).
const LANDING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Kept messages this node published and waits to land, by token.
#[derive(Debug, Default)]
pub(super) struct Landings(std::sync::Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>);

impl Landings {
    fn start(&self, token: &str) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        super::lock(&self.0).insert(token.to_string(), tx);
        rx
    }

    fn complete(&self, token: &str) {
        if let Some(tx) = super::lock(&self.0).remove(token) {
            let _ = tx.send(());
        }
    }

    fn forget(&self, token: &str) {
        super::lock(&self.0).remove(token);
    }
}

fn unavailable(why: impl Into<String>) -> HubError {
    HubError::new(ErrorCode::Unavailable, why)
}

impl RedisAdapter {
    /// Whether this node's copy of the kept history is usable: listening, and caught up
    /// since it last (re)connected.
    pub(super) fn kept_health(&self) -> Result<(), HubError> {
        self.link.health()?;
        if !self.synced.load(Ordering::Acquire) {
            return Err(unavailable(
                "this node is catching up with the cluster's history",
            ));
        }
        Ok(())
    }

    /// See [`crate::hub::Adapter::publish_kept`].
    pub(super) fn publish_kept(
        &self,
        reach: &Reach,
        d: &Arc<Delivery>,
        keep: Keep,
        counted: bool,
        done: KeptReply,
    ) -> Result<(), HubError> {
        self.kept_health()?;
        let m = d
            .message()
            .filter(|m| m.room.is_some())
            .ok_or_else(|| HubError::bad_request("only a room's message can be kept"))?;
        let room = m.room.as_deref().unwrap_or_default();
        let key = kept_key(&reach.ns, room);
        let count = counted.then(request_id);
        // Uncounted: the acknowledgement also waits (briefly) for this node's own landing.
        let token = (!counted).then(request_id);
        let mark = KeptMark {
            capacity: keep.count as u64,
            ttl_ms: keep.max_age_ms,
            count: count.clone(),
            token: token.clone(),
        };
        let (payload, offsets) = wire::encode_kept(self.config.flavour, &self.uid, reach, m, &mark)
            .ok_or_else(|| HubError::bad_request("this message cannot cross the cluster"))?;
        // The sharded flavour's namespace channel, which every node hears: every node lands
        // every kept message.
        let (channel, publish) = if self.sharded() {
            (self.names.broadcast_channel(&reach.ns, None), "SPUBLISH")
        } else {
            let one = (reach.rooms.len() == 1).then(|| &*reach.rooms[0]);
            (self.names.broadcast_channel(&reach.ns, one), "PUBLISH")
        };
        let offsets: Vec<String> = offsets.iter().map(usize::to_string).collect();
        // The script by its SHA once this node loaded it (a catch-up does), by its text
        // otherwise: the text is most of what a small message would send.
        let mut cmd = match super::lock(&self.kept_sha).clone() {
            Some(sha) => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(sha);
                c
            }
            None => {
                let mut c = redis::cmd("EVAL");
                c.arg(PUBLISH_KEPT);
                c
            }
        };
        cmd.arg(2)
            .arg(self.stream_key(&key))
            .arg(self.seq_hash())
            .arg(&key)
            .arg(channel)
            .arg(payload)
            .arg(offsets.join(","))
            .arg(keep.count.max(1))
            .arg(keep.max_age_ms)
            .arg(m.ts)
            .arg(wire::MAX_KEPT_SEQ)
            .arg(publish);
        // Every Hubbub node, this one included, answers a counted message once it landed it.
        let counts = count.map(|id| {
            let rx = self.pending.start(&id, self.config.request_timeout);
            (id, rx)
        });
        let landing = token.map(|t| {
            let rx = self.landings.start(&t);
            (t, rx)
        });
        let me = self.clone_handle();
        let reply: Reply = Box::new(move |r| {
            let seq = match r {
                Ok(redis::Value::Int(n)) if n > 0 => n as u64,
                other => {
                    let e = match other {
                        Err(e) => e,
                        Ok(v) => unavailable(format!("Redis answered {v:?}")),
                    };
                    if let Some(me) = &me {
                        if e.message.contains("NOSCRIPT") {
                            // Redis lost its scripts (restarted): by text until loaded again.
                            *super::lock(&me.kept_sha) = None;
                        }
                        if let Some((id, _)) = &counts {
                            me.pending.cancel(id);
                        }
                        if let Some((t, _)) = &landing {
                            me.landings.forget(t);
                        }
                    }
                    return done.send(Err(e));
                }
            };
            match (counts, me, landing) {
                (Some((id, rx)), Some(me), _) => {
                    tokio::spawn(async move {
                        let kept =
                            me.count_landings(&id, rx)
                                .await
                                .map(|(delivered, online)| Kept {
                                    seq,
                                    delivered,
                                    online,
                                });
                        done.send(kept);
                    });
                }
                (None, Some(me), Some((t, rx))) => {
                    tokio::spawn(async move {
                        // Redis has it: the wait only orders the ack after the delivery here.
                        let _ = tokio::time::timeout(LANDING_WAIT, rx).await;
                        me.landings.forget(&t);
                        done.send(Ok(Kept {
                            seq,
                            ..Kept::default()
                        }));
                    });
                }
                _ => done.send(Ok(Kept {
                    seq,
                    ..Kept::default()
                })),
            }
        });
        self.link.eval(cmd, reply)
    }
}

impl RedisAdapter {
    /// Waits for every Hubbub node's answer to a counted kept message (each answers once
    /// it landed it): connections reached, and whether the addressee was online anywhere.
    async fn count_landings(
        &self,
        id: &str,
        rx: tokio::sync::oneshot::Receiver<Vec<Mp>>,
    ) -> Result<(usize, bool), HubError> {
        // Nodes that keep history are those subscribed to the notices: others never answer.
        match self
            .subscribers(&super::Audience::Plain(self.names.hub_notices()))
            .await
        {
            Ok(n) => self.pending.expect(id, n),
            Err(e) => {
                self.pending.cancel(id);
                return Err(e);
            }
        }
        let answers = rx
            .await
            .map_err(|_| unavailable("the cluster did not count the message"))?;
        let mut delivered = 0;
        let mut online = false;
        for a in &answers {
            let Some(answer) = mp::get(a, "answer") else {
                continue;
            };
            delivered += mp::get_u64(answer, "delivered").unwrap_or(0) as usize;
            online |= mp::get(answer, "online").and_then(Mp::as_bool) == Some(true);
        }
        Ok((delivered, online))
    }

    /// Lands a kept message from the cluster on this node, answering its count when the
    /// publisher asked for one.
    pub(super) fn land(&self, hub: &Hub, b: wire::Broadcast) {
        let Some(mark) = b.kept else { return };
        let mine = b.uid == self.uid;
        let landed: Option<Landed> = if let Some(id) = mark.count {
            let (link, channel) = (self.link.clone(), self.names.hub_responses());
            Some(Box::new(move |delivered: usize, online: bool| {
                let body = json!({
                    "requestId": id,
                    "answer": {"delivered": delivered, "online": online},
                });
                let _ = link.publish(channel, Bytes::from(body.to_string()), None);
            }))
        } else if let (Some(t), true) = (mark.token, mine) {
            let landings = self.landings.clone();
            Some(Box::new(move |_: usize, _: bool| landings.complete(&t)))
        } else {
            None
        };
        let keep = Keep {
            count: usize::try_from(mark.capacity).unwrap_or(usize::MAX),
            max_age_ms: mark.ttl_ms,
        };
        hub.apply_kept(b.reach, b.delivery, keep, landed, mine);
    }

    /// See [`crate::hub::Adapter::read_kept`].
    pub(super) fn read_kept(
        &self,
        ns: &str,
        room: &str,
        after: u64,
        before: Option<u64>,
    ) -> KeptMessages {
        let me = self.clone_handle();
        let key = self.stream_key(&kept_key(ns, room));
        Box::pin(async move {
            let me = me.ok_or_else(|| unavailable("the node is shutting down"))?;
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&key).arg(format!("({after}-0"));
            match before {
                Some(b) => cmd.arg(format!("({b}-0")),
                None => cmd.arg("+"),
            };
            let entries: Vec<(String, HashMap<String, Vec<u8>>)> = me.link.query(&cmd).await?;
            let mut out = Vec::with_capacity(entries.len());
            for (id, fields) in entries {
                let decoded = fields.get("b").map(|b| wire::decode_broadcast(b));
                match decoded {
                    Some(Ok(b)) if b.kept.is_some() => {
                        let mine = b.uid == me.uid;
                        out.push((b.reach, b.delivery, mine));
                    }
                    _ => tracing::warn!(stream = key, id, "a damaged kept message is skipped"),
                }
            }
            Ok(out)
        })
    }

    /// Keeps a room made through the API (`settings`: JSON) and tells the other nodes.
    pub(super) fn save_room(
        &self,
        ns: &str,
        name: &str,
        settings: String,
        done: Box<dyn FnOnce(Result<(), HubError>) + Send>,
    ) -> Result<(), HubError> {
        self.link.health()?;
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.rooms_hash())
            .arg(kept_key(ns, name))
            .arg(&settings);
        let q = Query::RoomSaved {
            ns: ns.to_string(),
            name: name.to_string(),
            settings,
        };
        self.room_change(cmd, q, done)
    }

    /// Forgets a room and its messages (its counter stays) and tells the other nodes.
    pub(super) fn delete_room(
        &self,
        ns: &str,
        name: &str,
        done: Box<dyn FnOnce(Result<(), HubError>) + Send>,
    ) -> Result<(), HubError> {
        self.link.health()?;
        let key = kept_key(ns, name);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_ROOM)
            .arg(2)
            .arg(self.stream_key(&key))
            .arg(self.rooms_hash())
            .arg(&key);
        let q = Query::RoomDeleted {
            ns: ns.to_string(),
            name: name.to_string(),
        };
        self.room_change(cmd, q, done)
    }

    /// Runs a change to the kept rooms, then tells the other nodes of it.
    fn room_change(
        &self,
        cmd: redis::Cmd,
        q: Query,
        done: Box<dyn FnOnce(Result<(), HubError>) + Send>,
    ) -> Result<(), HubError> {
        let me = self.clone_handle();
        self.link.eval(
            cmd,
            Box::new(move |r| {
                if r.is_ok() {
                    if let Some(me) = me {
                        let _ = crate::hub::Adapter::tell(&*me, q);
                    }
                }
                done(r.map(|_| ()));
            }),
        )
    }
}

/// Brings this node's copy of the kept history up to the cluster's after it (re)connected:
/// the rooms made through the API, then every room whose counter is ahead of this node's
/// log. History is usable (`synced`) once this is done.
pub(super) async fn resync(me: Arc<RedisAdapter>, hub: Hub, generation: u64) {
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        if me.generation.load(Ordering::Acquire) != generation {
            // The subscriptions were made again since: a newer catch-up is on.
            return;
        }
        let done = match resync_once(&me, &hub).await {
            Ok(rooms) => me.load_notices().await.map(|()| rooms),
            Err(e) => Err(e),
        };
        match done {
            Ok(rooms) => {
                if me.generation.load(Ordering::Acquire) != generation {
                    return;
                }
                me.synced.store(true, Ordering::Release);
                tracing::info!(rooms, "kept history caught up with the cluster");
                return;
            }
            Err(e) => {
                if me.link.health().is_err() {
                    // The next connection starts another resync.
                    return;
                }
                tracing::warn!("could not catch up with the cluster's history: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}

async fn resync_once(me: &RedisAdapter, hub: &Hub) -> Result<usize, HubError> {
    let sha: String = me
        .link
        .query(redis::cmd("SCRIPT").arg("LOAD").arg(PUBLISH_KEPT))
        .await?;
    *super::lock(&me.kept_sha) = Some(sha);
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(me.rooms_hash());
    let rooms: HashMap<String, String> = me.link.query(&cmd).await?;
    for (key, settings) in &rooms {
        let (ns, name) = split_kept_key(key);
        hub.learn_room(ns, name, settings);
    }
    // Rooms made through the API that were deleted while this node was away.
    for (ns, name) in hub.pinned_rooms() {
        if !rooms.contains_key(&kept_key(&ns, &name)) {
            hub.forget_room(&ns, &name);
        }
    }
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(me.seq_hash());
    let mut counters: HashMap<String, u64> = me.link.query(&cmd).await?;
    // Counters behind what this node numbered (Redis lost its data, or a room was made
    // again while this node was away) go on from there: a seq clients saw is not reused.
    for (ns, room, last) in hub.kept_rooms() {
        let key = kept_key(&ns, &room);
        if counters.get(&key).is_some_and(|c| *c >= last) {
            continue;
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RAISE_COUNTER)
            .arg(1)
            .arg(me.seq_hash())
            .arg(&key)
            .arg(last);
        me.link.query::<i64>(&cmd).await?;
        tracing::info!(
            room = &*room,
            seq = last,
            "the cluster's counter of a room went on from this node's"
        );
        counters.insert(key, last);
    }
    let n = counters.len();
    // A few rooms at a time: a node coming back to a cluster of many rooms reads their
    // streams without flooding Redis.
    let catching = counters.into_iter().map(|(key, counter)| async move {
        let (ns, name) = split_kept_key(&key);
        hub.catch_up(ns, name, counter).await;
    });
    futures_util::stream::iter(catching)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    Ok(n)
}
