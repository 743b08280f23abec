//! What crosses Redis, in `@socket.io/redis-adapter`'s formats, turned into hub terms:
//! channel names, broadcasts and the request/response messages. The classic flavour
//! (`createAdapter`) sends broadcasts as `[uid, packet, opts]` in MessagePack and requests
//! as JSON or MessagePack maps with a numeric `type`; the sharded flavour
//! (`createShardedAdapter`) sends everything as socket.io-adapter's cluster messages,
//! `{uid, nsp, type, data}` ([`shard_kind`]), in JSON or MessagePack.
//!
//! A Hubbub node adds one element to a broadcast, a map of what the hub needs to rebuild
//! the exact message on another Hubbub node (`{hubbub: "hub" | "args" | "presence" |
//! "notice", room, from, to, seq, ts, ...}`); Node's adapter reads the first three and
//! ignores it. What a Node server or emitter sends has no such element and becomes an
//! *exact* message: the event and its arguments.

use std::sync::Arc;

use bytes::Bytes;
use rmpv::Value as Mp;

use crate::hub::{now_ms, Body, Delivery, Message, MessageBody, Payload, Reach, SioArgs};
use crate::protocol::msgpack::{self as mp, MsgpackError};
use crate::protocol::v1::RawJson;

/// socket.io-redis-adapter's default channel prefix (`key`).
pub const PREFIX: &str = "socket.io";

/// socket.io's packet type for an event.
const EVENT: u64 = 2;

/// The request types of `@socket.io/redis-adapter` (its `RequestType`).
pub mod kind {
    /// Socket ids in rooms (`allSockets`).
    pub const SOCKETS: u64 = 0;
    /// Every room (`allRooms`).
    pub const ALL_ROOMS: u64 = 1;
    /// Make sockets join rooms (`socketsJoin`).
    pub const REMOTE_JOIN: u64 = 2;
    /// Make sockets leave rooms (`socketsLeave`).
    pub const REMOTE_LEAVE: u64 = 3;
    /// Disconnect sockets (`disconnectSockets`).
    pub const REMOTE_DISCONNECT: u64 = 4;
    /// Sockets with their details (`fetchSockets`).
    pub const REMOTE_FETCH: u64 = 5;
    /// An event for the servers themselves (`serverSideEmit`).
    pub const SERVER_SIDE_EMIT: u64 = 6;
    /// A broadcast that wants each node's client count (`broadcastWithAck`).
    pub const BROADCAST: u64 = 7;
    /// The answer to [`BROADCAST`]: how many clients a node reached.
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    /// A client's acknowledgement of a [`BROADCAST`].
    pub const BROADCAST_ACK: u64 = 9;
}

/// The message types of the sharded flavour (socket.io-adapter's `ClusterAdapter`
/// `MessageType`).
pub mod shard_kind {
    /// A broadcast; with a `requestId`, one that wants client counts and acknowledgements.
    pub const BROADCAST: u64 = 3;
    /// Make sockets join rooms (`socketsJoin`).
    pub const SOCKETS_JOIN: u64 = 4;
    /// Make sockets leave rooms (`socketsLeave`).
    pub const SOCKETS_LEAVE: u64 = 5;
    /// Disconnect sockets (`disconnectSockets`).
    pub const DISCONNECT_SOCKETS: u64 = 6;
    /// Sockets with their details (`fetchSockets`).
    pub const FETCH_SOCKETS: u64 = 7;
    /// The answer to [`FETCH_SOCKETS`].
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    /// An event for the servers themselves (`serverSideEmit`).
    pub const SERVER_SIDE_EMIT: u64 = 9;
    /// The answer to [`SERVER_SIDE_EMIT`] with an acknowledgement.
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    /// The answer to a [`BROADCAST`] with a `requestId`: how many clients a node reached.
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    /// A client's acknowledgement of a [`BROADCAST`] with a `requestId`.
    pub const BROADCAST_ACK: u64 = 12;
}

/// Which of `@socket.io/redis-adapter`'s two flavours a cluster speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavour {
    /// `createAdapter`: `PUBLISH`, a pattern subscription, request and response channels.
    #[default]
    Classic,
    /// `createShardedAdapter` (Redis 7): `SPUBLISH`/`SSUBSCRIBE`, one channel per namespace,
    /// one per room (subscribed while the room exists) and one per server for responses.
    Sharded,
}

/// The names a cluster uses in Redis: socket.io's channels, whose prefix is the adapter's
/// `key` (`socket.io` unless set, as `@socket.io/redis-adapter`'s `key` option), and Hubbub's
/// own channels and keys (`hubbub-request#`, `hubbub:seq`, ...; prefixed `<key>:` for any
/// other key), so clusters with different keys share one Redis without meeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    key: String,
    hub: String,
}

impl Default for Names {
    fn default() -> Self {
        Self::new(PREFIX)
    }
}

impl Names {
    /// The names of a cluster whose adapter `key` is `key`.
    pub fn new(key: &str) -> Self {
        let hub = if key == PREFIX {
            "hubbub".to_string()
        } else {
            format!("{key}:hubbub")
        };
        Self {
            key: key.to_string(),
            hub,
        }
    }

    /// The channel a broadcast to namespace `ns` is published on: `socket.io#/#`, or with
    /// exactly one room `socket.io#/#room#` (so a node without that room can skip it).
    pub fn broadcast_channel(&self, ns: &str, one_room: Option<&str>) -> String {
        match one_room {
            Some(r) => format!("{}#{ns}#{r}#", self.key),
            None => format!("{}#{ns}#", self.key),
        }
    }

    /// The pattern matching every namespace's broadcast channels.
    pub fn broadcast_pattern(&self) -> String {
        format!("{}#*", self.key)
    }

    /// The request channel of namespace `ns`: being subscribed to it is what makes a node
    /// counted (`PUBSUB NUMSUB`) by the others' requests.
    pub fn request_channel(&self, ns: &str) -> String {
        format!("{}-request#{ns}#", self.key)
    }

    /// The response channel of namespace `ns`.
    pub fn response_channel(&self, ns: &str) -> String {
        format!("{}-response#{ns}#", self.key)
    }

    /// The sharded flavour's channel for answers to server `uid` of namespace `ns`.
    pub fn server_channel(&self, ns: &str, uid: &str) -> String {
        format!("{}#{ns}#{uid}#", self.key)
    }

    /// The channel the sharded flavour publishes a broadcast on: the room's own for exactly
    /// one room that is no socket id (20 characters, as socket.io's) and no internal room,
    /// the namespace's otherwise (as `createShardedAdapter`'s default `dynamic` mode).
    pub fn shard_broadcast_channel(&self, reach: &Reach) -> String {
        match reach.rooms.as_slice() {
            [room] if is_public_room(room) => self.broadcast_channel(&reach.ns, Some(room)),
            _ => self.broadcast_channel(&reach.ns, None),
        }
    }

    /// Hubbub's own request channel (questions only Hubbub nodes answer).
    pub fn hub_requests(&self) -> String {
        format!("{}-request#", self.hub)
    }

    /// Hubbub's own response channel.
    pub fn hub_responses(&self) -> String {
        format!("{}-response#", self.hub)
    }

    /// The channel notifications and read marks are published on (a cluster's store).
    pub fn hub_notices(&self) -> String {
        format!("{}-notice#", self.hub)
    }

    /// Hubbub's Redis key `name` (`hubbub:<name>`).
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.hub)
    }

    /// What `channel` carries; `None` for a channel of no interest.
    pub fn classify<'a>(&self, channel: &'a str) -> Option<Channel<'a>> {
        if let Some(rest) = channel.strip_prefix(self.hub.as_str()) {
            match rest {
                "-request#" => return Some(Channel::HubRequest),
                "-response#" => return Some(Channel::Response),
                "-notice#" => return Some(Channel::HubNotice),
                _ => {}
            }
        }
        let rest = channel.strip_prefix(self.key.as_str())?;
        if let Some(r) = rest.strip_prefix("-request#") {
            return Some(Channel::Request {
                ns: r.strip_suffix('#')?,
            });
        }
        if rest.starts_with("-response#") {
            return Some(Channel::Response);
        }
        let (ns, room) = self.parse_broadcast_channel(channel)?;
        Some(Channel::Broadcast { ns, room })
    }

    /// The namespace and the room a broadcast channel names (`socket.io#/chat#room#`).
    pub fn parse_broadcast_channel<'a>(
        &self,
        channel: &'a str,
    ) -> Option<(&'a str, Option<&'a str>)> {
        let rest = channel.strip_prefix(self.key.as_str())?.strip_prefix('#')?;
        let rest = rest.strip_suffix('#')?;
        // The namespace starts with `/` and holds no `#`; a room may.
        match rest.split_once('#') {
            Some((ns, room)) => Some((ns, Some(room))),
            None => Some((rest, None)),
        }
    }
}

/// Whether the sharded flavour gives room `room` a channel of its own: not what looks like
/// a socket id (socket.io's are 20 characters long) and not one of Hubbub's internal rooms.
pub fn is_public_room(room: &str) -> bool {
    // socket.io's test is JavaScript's `room.length === 20`: UTF-16 code units.
    room.encode_utf16().count() != 20 && !crate::hub::room::is_internal(room)
}

/// What a channel a node is subscribed to carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel<'a> {
    /// Broadcasts to namespace `ns` (to one `room`, when the channel names it).
    Broadcast {
        /// The namespace.
        ns: &'a str,
        /// The one room, for `socket.io#<ns>#<room>#`.
        room: Option<&'a str>,
    },
    /// socket.io's requests for namespace `ns`.
    Request {
        /// The namespace.
        ns: &'a str,
    },
    /// Answers to requests (socket.io's, of any namespace, and Hubbub's).
    Response,
    /// Hubbub's own requests.
    HubRequest,
    /// Notifications and read marks of a cluster that keeps them.
    HubNotice,
}

/// A broadcast another node published.
#[derive(Debug)]
pub struct Broadcast {
    /// The publishing node (a Node adapter's uid, `emitter` for the emitter).
    pub uid: String,
    /// Whom it reaches.
    pub reach: Reach,
    /// What it delivers.
    pub delivery: Arc<Delivery>,
    /// For a history message the cluster numbered: how its room keeps history, and where
    /// its count goes.
    pub kept: Option<KeptMark>,
}

/// What a history message numbered by the cluster carries beside the message (in the
/// Hubbub element: `kept: [capacity, ttl_ms]`, `count: requestId`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeptMark {
    /// Messages its room keeps.
    pub capacity: u64,
    /// How long its room keeps them, in ms (0: no limit).
    pub ttl_ms: u64,
    /// The request id each node answers with how many connections it reached, when the
    /// publisher counts.
    pub count: Option<String>,
    /// The token the publishing node waits on to learn it landed its own message (an
    /// uncounted one), so its acknowledgement follows its own delivery.
    pub token: Option<String>,
}

/// The two values a `seq` takes while a kept message is encoded: both are MessagePack
/// `uint32`s (`0xce` and 4 bytes) that differ in their last byte only, so comparing the two
/// encodings finds every place the cluster's script writes the real `seq` into.
const SEQ_PROBES: (u64, u64) = (0xFFFF_FFFF, 0xFFFF_FFFE);

/// The highest `seq` a kept message can be given (the script writes 4 bytes).
pub const MAX_KEPT_SEQ: u64 = 0xFFFF_FFFD;

/// Encodes a history message for the cluster's numbering script: the broadcast with a
/// 4-byte `seq` in every place one goes (the Socket.IO meta, the Hubbub element), and the
/// offsets of those 4 bytes. `None` for what cannot travel.
pub fn encode_kept(
    flavour: Flavour,
    uid: &str,
    reach: &Reach,
    m: &Message,
    mark: &KeptMark,
) -> Option<(Vec<u8>, Vec<usize>)> {
    let encode = |seq: u64| {
        let d = Delivery::new(Body::Message(Message {
            seq: Some(seq),
            ..m.clone()
        }));
        let (packet, mut extras) = packet_of(&reach.ns, &d)?;
        if let Mp::Map(fields) = &mut extras {
            let keep = Mp::Array(vec![Mp::from(mark.capacity), Mp::from(mark.ttl_ms)]);
            fields.push((Mp::from("kept"), keep));
            if let Some(id) = &mark.count {
                fields.push((Mp::from("count"), Mp::from(id.as_str())));
            }
            if let Some(t) = &mark.token {
                fields.push((Mp::from("tok"), Mp::from(t.as_str())));
            }
        }
        let frame = frame_broadcast(flavour, uid, &reach.ns, packet, opts_of(reach), extras);
        Some(mp::encode(&frame))
    };
    let (a, b) = (encode(SEQ_PROBES.0)?, encode(SEQ_PROBES.1)?);
    if a.len() != b.len() {
        return None;
    }
    let offsets: Vec<usize> = a
        .iter()
        .zip(&b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i - 3)
        .collect();
    let sound = !offsets.is_empty()
        && offsets
            .iter()
            .all(|&o| o >= 1 && a[o - 1] == 0xce && a[o..o + 4] == [0xff; 4]);
    sound.then_some((a, offsets))
}

fn kept_mark(extras: Option<&Mp>) -> Option<KeptMark> {
    let keep = mp::get(extras?, "kept")?.as_array()?;
    Some(KeptMark {
        capacity: keep.first()?.as_u64()?,
        ttl_ms: keep.get(1).and_then(Mp::as_u64).unwrap_or(0),
        count: extras
            .and_then(|e| mp::get_str(e, "count"))
            .map(str::to_string),
        token: extras
            .and_then(|e| mp::get_str(e, "tok"))
            .map(str::to_string),
    })
}

/// Encodes a broadcast of `d` to `reach` by node `uid`. `None` for what cannot travel.
pub fn encode_broadcast(
    flavour: Flavour,
    uid: &str,
    reach: &Reach,
    d: &Delivery,
) -> Option<Vec<u8>> {
    let (packet, extras) = packet_of(&reach.ns, d)?;
    let frame = frame_broadcast(flavour, uid, &reach.ns, packet, opts_of(reach), extras);
    Some(mp::encode(&frame))
}

/// A broadcast as `flavour` sends it: `[uid, packet, opts, hubbub]`, or
/// `{uid, nsp, type: 3, data: {packet, opts, hubbub}}`.
pub fn frame_broadcast(
    flavour: Flavour,
    uid: &str,
    ns: &str,
    packet: Mp,
    opts: Mp,
    extras: Mp,
) -> Mp {
    match flavour {
        Flavour::Classic => Mp::Array(vec![Mp::from(uid), packet, opts, extras]),
        Flavour::Sharded => shard_message(
            uid,
            ns,
            shard_kind::BROADCAST,
            mp::map([("packet", packet), ("opts", opts), ("hubbub", extras)]),
        ),
    }
}

/// A message of the sharded flavour: `{uid, nsp, type, data}`.
pub fn shard_message(uid: &str, ns: &str, kind: u64, data: Mp) -> Mp {
    mp::map([
        ("uid", Mp::from(uid)),
        ("nsp", Mp::from(ns)),
        ("type", Mp::from(kind)),
        ("data", data),
    ])
}

/// The `opts` member of a broadcast or request: `{rooms, except, flags}`.
pub fn opts_of(reach: &Reach) -> Mp {
    let list = |v: &[Arc<str>]| Mp::Array(v.iter().map(|r| Mp::from(&**r)).collect());
    let mut flags = Vec::new();
    if reach.volatile {
        flags.push((Mp::from("volatile"), Mp::Boolean(true)));
    }
    mp::map([
        ("rooms", list(&reach.rooms)),
        ("except", list(&reach.except)),
        ("flags", Mp::Map(flags)),
    ])
}

/// The socket.io packet (`{type: 2, data: [event, ...args], nsp}`) and the Hubbub element
/// for a delivery.
pub fn packet_of(ns: &str, d: &Delivery) -> Option<(Mp, Mp)> {
    let (data, extras) = match &d.body {
        Body::Message(m) => message_data(m)?,
        Body::Presence {
            room,
            user,
            joined,
            count,
            ..
        } => {
            let key = if *joined { "joined" } else { "left" };
            let shown = mp::map([
                ("room", Mp::from(&**room)),
                (key, Mp::from(&**user)),
                ("count", Mp::from(*count)),
            ]);
            let extras = mp::map([
                ("hubbub", Mp::from("presence")),
                ("room", Mp::from(&**room)),
                ("user", Mp::from(&**user)),
                ("joined", Mp::Boolean(*joined)),
                ("count", Mp::from(*count)),
            ]);
            (vec![Mp::from("presence"), shown], extras)
        }
        Body::Notice { name, fields, .. } => {
            let f = mp::from_json_text(fields.as_bytes()).ok()?;
            let extras = mp::map([("hubbub", Mp::from("notice"))]);
            (vec![Mp::from(&**name), f], extras)
        }
    };
    let packet = mp::map([
        ("type", Mp::from(EVENT)),
        ("data", Mp::Array(data)),
        ("nsp", Mp::from(ns)),
    ]);
    Some((packet, extras))
}

/// A message's `data` (what Socket.IO clients get: `[event, payload, meta]` for a hub
/// message, `[event, ...args]` for an exact one) and its Hubbub element.
fn message_data(m: &Message) -> Option<(Vec<Mp>, Mp)> {
    let mut extras = vec![(Mp::from("ts"), Mp::from(m.ts))];
    let opt = |k: &str, v: &Option<Arc<str>>| v.as_ref().map(|s| (Mp::from(k), Mp::from(&**s)));
    extras.extend(opt("room", &m.room));
    extras.extend(opt("from", &m.from));
    extras.extend(opt("to", &m.to));
    if let Some(seq) = m.seq {
        extras.push((Mp::from("seq"), Mp::from(seq)));
    }
    let mut data = vec![Mp::from(&*m.event)];
    let shape = match &m.body {
        MessageBody::Hub(Payload::Json(raw)) if !has_binary_marker(raw.as_bytes()) => {
            data.push(mp::from_json_text(raw.as_bytes()).ok()?);
            data.push(mp::from_json(&meta_of(m), &[]));
            "hub"
        }
        MessageBody::Hub(_) | MessageBody::Args(_) => {
            let args = m.sio_args();
            let values = match &m.body {
                // A hub message with binary: its payload and meta as Socket.IO sees them.
                MessageBody::Hub(_) => args.values.iter(),
                MessageBody::Args(a) => a.values.iter(),
            };
            data.extend(values.map(|v| mp::from_json(v, &args.bin)));
            if matches!(m.body, MessageBody::Hub(_)) {
                "hub"
            } else {
                "args"
            }
        }
    };
    extras.push((Mp::from("hubbub"), Mp::from(shape)));
    Some((data, Mp::Map(extras)))
}

fn has_binary_marker(json: &[u8]) -> bool {
    json.windows(9).any(|w| w == b"\"_binary\"")
}

/// The meta argument Socket.IO clients get after a hub message's payload.
fn meta_of(m: &Message) -> serde_json::Value {
    let mut meta = serde_json::Map::new();
    if let Some(from) = &m.from {
        meta.insert("from".into(), (&**from).into());
    }
    if let Some(room) = m.shown_room() {
        meta.insert("room".into(), room.into());
    }
    if let Some(seq) = m.seq {
        meta.insert("seq".into(), seq.into());
    }
    if let Some(to) = &m.to {
        meta.insert("to".into(), (&**to).into());
    }
    meta.insert("ts".into(), m.ts.into());
    serde_json::Value::Object(meta)
}

/// Decodes a broadcast (from a Hubbub node, a Node adapter or the emitter), in either
/// flavour: `[uid, packet, opts, hubbub?]`, or a sharded `{uid, type: 3, data: {packet,
/// opts, hubbub?}}` (JSON or MessagePack).
pub fn decode_broadcast(bytes: &[u8]) -> Result<Broadcast, MsgpackError> {
    let v = if bytes.first() == Some(&b'{') {
        mp::from_json_text(bytes)?
    } else {
        mp::decode(bytes)?
    };
    if v.as_map().is_some() {
        if mp::get_u64(&v, "type") != Some(shard_kind::BROADCAST) {
            return Err(MsgpackError(
                "a cluster message that is no broadcast".into(),
            ));
        }
        let data = mp::get(&v, "data")
            .ok_or_else(|| MsgpackError("a cluster broadcast without data".into()))?;
        let packet = mp::get(data, "packet")
            .ok_or_else(|| MsgpackError("a cluster broadcast without packet".into()))?;
        let uid = mp::get(&v, "uid").and_then(mp::as_name).unwrap_or_default();
        let opts = mp::get(data, "opts").unwrap_or(&Mp::Nil);
        // The namespace is the message's: socket.io-adapter's packets carry none.
        let ns = mp::get_str(&v, "nsp")
            .ok_or_else(|| MsgpackError("a cluster message without nsp".into()))?;
        return broadcast_of(uid, Some(ns), packet, opts, mp::get(data, "hubbub"));
    }
    let parts = v
        .as_array()
        .filter(|a| a.len() >= 3)
        .ok_or_else(|| MsgpackError("a broadcast is `[uid, packet, opts]`".into()))?;
    let uid = mp::as_name(&parts[0]).unwrap_or_default();
    broadcast_of(uid, None, &parts[1], &parts[2], parts.get(3))
}

/// The broadcast of `packet` to `opts` by `uid`, with its Hubbub element if any, in
/// namespace `ns` (the packet's own `nsp` when `None`).
pub fn broadcast_of(
    uid: String,
    ns: Option<&str>,
    packet: &Mp,
    opts: &Mp,
    extras: Option<&Mp>,
) -> Result<Broadcast, MsgpackError> {
    let reach = match ns {
        Some(ns) => reach_in(ns, packet, opts)?,
        None => reach_of(packet, opts)?,
    };
    let delivery = delivery_of(packet, extras, &reach.ns)?;
    let kept = kept_mark(extras).filter(|_| {
        delivery
            .message()
            .is_some_and(|m| m.room.is_some() && m.seq.is_some())
    });
    Ok(Broadcast {
        uid,
        reach,
        delivery,
        kept,
    })
}

/// Whom a packet with these `opts` reaches (`nsp` defaults to `/`, as in socket.io).
pub fn reach_of(packet: &Mp, opts: &Mp) -> Result<Reach, MsgpackError> {
    reach_in(mp::get_str(packet, "nsp").unwrap_or("/"), packet, opts)
}

/// Whom a packet of namespace `ns` with these `opts` reaches: the namespace comes from
/// elsewhere (the channel, a cluster message's `nsp`), and a packet that names another
/// one is refused.
pub fn reach_in(ns: &str, packet: &Mp, opts: &Mp) -> Result<Reach, MsgpackError> {
    if mp::get(packet, "nsp").is_some_and(|n| n.as_str() != Some(ns)) {
        return Err(MsgpackError(format!(
            "the packet's namespace is not `{ns}`"
        )));
    }
    if !ns.starts_with('/') {
        return Err(MsgpackError(format!(
            "namespace `{ns}` does not start with /"
        )));
    }
    if opts.as_map().is_none() {
        return Err(MsgpackError("`opts` is not a map".into()));
    }
    let volatile = mp::get(opts, "flags")
        .and_then(|f| mp::get(f, "volatile"))
        .and_then(Mp::as_bool)
        .unwrap_or(false);
    // Names that are not names make the whole message refused, never "everyone".
    let names = |k| -> Result<Vec<Arc<str>>, MsgpackError> {
        match mp::get(opts, k) {
            None | Some(Mp::Nil) => Ok(Vec::new()),
            Some(Mp::Array(a)) => a
                .iter()
                .map(|v| {
                    mp::as_name(v)
                        .map(Arc::from)
                        .ok_or_else(|| MsgpackError(format!("`{k}` holds a non-name")))
                })
                .collect(),
            Some(_) => Err(MsgpackError(format!("`{k}` is not a list"))),
        }
    };
    Ok(Reach {
        ns: ns.into(),
        rooms: names("rooms")?,
        except: names("except")?,
        volatile,
    })
}

/// Rebuilds the delivery a packet carries.
pub fn delivery_of(
    packet: &Mp,
    extras: Option<&Mp>,
    ns: &str,
) -> Result<Arc<Delivery>, MsgpackError> {
    let kind = mp::get_u64(packet, "type");
    if kind != Some(EVENT) && kind != Some(5) {
        return Err(MsgpackError(format!(
            "packet type {kind:?} is not an event"
        )));
    }
    let data = mp::get(packet, "data")
        .and_then(Mp::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| MsgpackError("an event packet has `data: [event, ...args]`".into()))?;
    let event = data[0]
        .as_str()
        .ok_or_else(|| MsgpackError("the event name is not a string".into()))?;
    let args = &data[1..];
    let ns: Arc<str> = ns.into();
    let shape = extras.and_then(|e| mp::get_str(e, "hubbub"));
    let field = |k| extras.and_then(|e| mp::get_str(e, k)).map(Arc::<str>::from);
    let body = match shape {
        Some("presence") => {
            let e = extras.unwrap_or(&Mp::Nil);
            Body::Presence {
                ns,
                room: field("room").ok_or_else(|| MsgpackError("presence without room".into()))?,
                user: field("user").ok_or_else(|| MsgpackError("presence without user".into()))?,
                joined: mp::get(e, "joined").and_then(Mp::as_bool).unwrap_or(false),
                count: mp::get_u64(e, "count").unwrap_or(0),
            }
        }
        Some("notice") => {
            let mut text = Vec::new();
            mp::write_json(args.first().unwrap_or(&Mp::Nil), &mut Vec::new(), &mut text);
            Body::Notice {
                ns,
                name: event.into(),
                fields: RawJson::parse(Bytes::from(text))
                    .map_err(|e| MsgpackError(e.to_string()))?,
            }
        }
        other => {
            let body = match (other, args) {
                (Some("hub"), [payload, _meta]) if !has_bin(payload) => {
                    let mut text = Vec::new();
                    mp::write_json(payload, &mut Vec::new(), &mut text);
                    MessageBody::Hub(Payload::Json(
                        RawJson::parse(Bytes::from(text))
                            .map_err(|e| MsgpackError(e.to_string()))?,
                    ))
                }
                (Some("hub"), [payload, _meta]) => {
                    // Binary inside: back to v1's `{"_binary": ...}` objects.
                    let mut bin = Vec::new();
                    let values = vec![mp::to_json(payload, &mut bin)];
                    let v = SioArgs { values, bin }.to_v1_values().pop();
                    MessageBody::Hub(Payload::json(&v.unwrap_or_default()))
                }
                _ => {
                    let mut bin = Vec::new();
                    let mut values: Vec<serde_json::Value> =
                        args.iter().map(|a| mp::to_json(a, &mut bin)).collect();
                    let bin = renumber(&mut values, &bin);
                    MessageBody::Args(SioArgs { values, bin })
                }
            };
            Body::Message(Message {
                ns,
                room: field("room"),
                event: event.into(),
                body,
                from: field("from"),
                to: field("to"),
                seq: extras.and_then(|e| mp::get_u64(e, "seq")),
                ts: extras
                    .and_then(|e| mp::get_u64(e, "ts"))
                    .unwrap_or_else(now_ms),
                offset: None,
            })
        }
    };
    Ok(Delivery::new(body))
}

/// Numbers the attachments in the order the JSON values hold their placeholders (a map's
/// keys may come in another order than MessagePack had them), so the same arguments always
/// encode the same way.
fn renumber(values: &mut [serde_json::Value], bin: &[Bytes]) -> Vec<Bytes> {
    fn walk(v: &mut serde_json::Value, bin: &[Bytes], out: &mut Vec<Bytes>) {
        if let Some(n) = crate::protocol::socketio::placeholder_num(v) {
            if let Some(b) = bin.get(n) {
                *v = crate::protocol::socketio::placeholder(out.len());
                out.push(b.clone());
            }
            return;
        }
        match v {
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, bin, out)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| walk(x, bin, out)),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(bin.len());
    values.iter_mut().for_each(|v| walk(v, bin, &mut out));
    out
}

fn has_bin(v: &Mp) -> bool {
    match v {
        Mp::Binary(_) => true,
        Mp::Array(a) => a.iter().any(has_bin),
        Mp::Map(m) => m.iter().any(|(_, x)| has_bin(x)),
        _ => false,
    }
}

/// A request or a response: a map with a numeric `type` (JSON text from most senders,
/// MessagePack for the broadcast-with-ack family).
pub fn decode_map(bytes: &[u8]) -> Result<Mp, MsgpackError> {
    let v = if bytes.first() == Some(&b'{') {
        mp::from_json_text(bytes)?
    } else {
        mp::decode(bytes)?
    };
    if v.as_map().is_none() {
        return Err(MsgpackError("a request is a map".into()));
    }
    Ok(v)
}

/// A response in JSON text, as Node's adapter writes most of them.
pub fn json_response(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Payload;

    fn hub_message(data: &str) -> Arc<Delivery> {
        Delivery::new(Body::Message(Message {
            ns: "/".into(),
            room: Some("lobby".into()),
            event: "chat".into(),
            body: MessageBody::Hub(Payload::Json(
                RawJson::parse(Bytes::from(data.to_string())).unwrap(),
            )),
            from: Some("ann".into()),
            to: None,
            seq: Some(7),
            ts: 1000,
            offset: None,
        }))
    }

    #[test]
    fn a_kept_message_gets_its_seq_written_where_the_offsets_say() {
        let d = hub_message(r#"{"n":4294967295,"s":"x"}"#);
        let m = d.message().unwrap();
        let reach = Reach {
            ns: "/".into(),
            rooms: vec!["lobby".into()],
            except: vec!["sid1".into()],
            volatile: false,
        };
        let mark = KeptMark {
            capacity: 100,
            ttl_ms: 5_000,
            count: Some("req1".into()),
            token: Some("t1".into()),
        };
        for flavour in [Flavour::Classic, Flavour::Sharded] {
            let (mut bytes, offsets) = encode_kept(flavour, "node1", &reach, m, &mark).unwrap();
            // The meta's seq and the Hubbub element's; the payload's own 4294967295 is not
            // one.
            assert_eq!(offsets.len(), 2, "{flavour:?} {offsets:?}");
            for o in &offsets {
                bytes[*o..*o + 4].copy_from_slice(&77u32.to_be_bytes());
            }
            let b = decode_broadcast(&bytes).unwrap();
            assert_eq!(b.kept, Some(mark.clone()));
            assert_eq!(b.reach, reach);
            let got = b.delivery.message().unwrap();
            assert_eq!(got.seq, Some(77));
            match &got.body {
                MessageBody::Hub(Payload::Json(raw)) => {
                    assert_eq!(raw.as_bytes(), br#"{"n":4294967295,"s":"x"}"#.as_slice())
                }
                other => panic!("{other:?}"),
            }
            // A broadcast without the mark is not a kept message.
            let plain = encode_broadcast(flavour, "node1", &reach, &d).unwrap();
            assert_eq!(decode_broadcast(&plain).unwrap().kept, None);
        }
    }

    #[test]
    fn sharded_channels_and_a_node_cluster_message() {
        let n = Names::default();
        let reach = |rooms: &[&str]| Reach {
            ns: "/chat".into(),
            rooms: rooms.iter().map(|r| Arc::from(*r)).collect(),
            ..Reach::default()
        };
        assert_eq!(
            n.shard_broadcast_channel(&reach(&["lobby"])),
            "socket.io#/chat#lobby#"
        );
        // A socket id (20 characters), two rooms, a user's internal room: the namespace's.
        for rooms in [
            &["AAAAAAAAAAAAAAAAAAAA"][..],
            &["a", "b"][..],
            &[&*crate::hub::user_room("ann")][..],
            &[][..],
        ] {
            assert_eq!(n.shard_broadcast_channel(&reach(rooms)), "socket.io#/chat#");
        }
        assert_eq!(n.server_channel("/", "abc"), "socket.io#/#abc#");
        // What socket.io-adapter's ClusterAdapter publishes (JSON, without binary) for
        // io.to("r").emit("ev", 1).
        let json = br#"{"uid":"f00d","nsp":"/chat","type":3,"data":{"packet":{"type":2,"data":["ev",1]},"opts":{"rooms":["r"],"except":[],"flags":{}}}}"#;
        let b = decode_broadcast(json).unwrap();
        assert_eq!(b.uid, "f00d");
        assert_eq!(&*b.reach.ns, "/chat", "the namespace is the message's");
        assert_eq!(&*b.reach.rooms[0], "r");
        assert_eq!(
            b.delivery.sio_frames(),
            &[crate::hub::OutFrame::Text(Bytes::from_static(
                b"42/chat,[\"ev\",1]"
            ))]
        );
        // A packet naming another namespace than its message, or no namespace: refused.
        let other = br#"{"uid":"f00d","nsp":"/chat","type":3,"data":{"packet":{"type":2,"data":["ev"],"nsp":"/"},"opts":{"rooms":[],"except":[]}}}"#;
        assert!(decode_broadcast(other).is_err());
        let none = br#"{"uid":"f00d","type":3,"data":{"packet":{"type":2,"data":["ev"]},"opts":{"rooms":[],"except":[]}}}"#;
        assert!(decode_broadcast(none).is_err());
        // Other cluster messages are not broadcasts.
        let join = br#"{"uid":"f00d","nsp":"/","type":4,"data":{"opts":{"rooms":[],"except":[]},"rooms":["x"]}}"#;
        assert!(decode_broadcast(join).is_err());
    }

    #[test]
    fn channels() {
        let n = Names::default();
        assert_eq!(n.broadcast_channel("/", None), "socket.io#/#");
        assert_eq!(
            n.broadcast_channel("/chat", Some("a#b")),
            "socket.io#/chat#a#b#"
        );
        assert_eq!(
            n.parse_broadcast_channel("socket.io#/chat#a#b#"),
            Some(("/chat", Some("a#b")))
        );
        assert_eq!(n.parse_broadcast_channel("socket.io#/#"), Some(("/", None)));
        assert_eq!(n.parse_broadcast_channel("socket.io-request#/#"), None);
        assert_eq!(n.request_channel("/"), "socket.io-request#/#");
        assert_eq!(
            n.classify("socket.io#/#r#"),
            Some(Channel::Broadcast {
                ns: "/",
                room: Some("r")
            })
        );
        assert_eq!(
            n.classify("socket.io-request#/chat#"),
            Some(Channel::Request { ns: "/chat" })
        );
        assert_eq!(n.classify("socket.io-response#/#"), Some(Channel::Response));
        assert_eq!(n.classify("hubbub-response#"), Some(Channel::Response));
        assert_eq!(n.classify("hubbub-request#"), Some(Channel::HubRequest));
        assert_eq!(n.classify("hubbub-notice#"), Some(Channel::HubNotice));
        assert_eq!(n.classify("other#/#"), None);
        assert_eq!(n.key("seq"), "hubbub:seq");
    }

    #[test]
    fn another_key_sets_every_name_apart() {
        let n = Names::new("app1");
        assert_eq!(n.broadcast_channel("/", Some("r")), "app1#/#r#");
        assert_eq!(n.broadcast_pattern(), "app1#*");
        assert_eq!(n.response_channel("/"), "app1-response#/#");
        assert_eq!(n.hub_requests(), "app1:hubbub-request#");
        assert_eq!(n.key("seq"), "app1:hubbub:seq");
        assert_eq!(n.classify("app1:hubbub-notice#"), Some(Channel::HubNotice));
        assert_eq!(
            n.classify("app1-request#/#"),
            Some(Channel::Request { ns: "/" })
        );
        // The default cluster's channels are not this one's.
        assert_eq!(n.classify("socket.io#/#"), None);
        assert_eq!(n.classify("hubbub-request#"), None);
        assert_eq!(Names::default().classify("app1#/#"), None);
    }

    #[test]
    fn a_hub_message_round_trips_exactly() {
        let reach = Reach {
            ns: "/".into(),
            rooms: vec!["lobby".into()],
            except: vec!["abc".into()],
            volatile: true,
        };
        let d = hub_message(r#"{"z":1,"a":"b"}"#);
        for flavour in [Flavour::Classic, Flavour::Sharded] {
            let bytes = encode_broadcast(flavour, "node-1", &reach, &d).unwrap();
            let b = decode_broadcast(&bytes).unwrap();
            assert_eq!(b.uid, "node-1");
            assert_eq!(b.reach, reach);
            assert_eq!(b.delivery.v1_frame(), d.v1_frame());
            assert_eq!(b.delivery.sio_frames(), d.sio_frames());
        }
    }

    #[test]
    fn a_node_packet_is_an_exact_message() {
        // What socket.io-redis-adapter publishes for io.to("r").emit("ev", 1, {a: Buffer})
        let v = Mp::Array(vec![
            Mp::from("abc123"),
            mp::map([
                ("type", Mp::from(2)),
                (
                    "data",
                    Mp::Array(vec![
                        Mp::from("ev"),
                        Mp::from(1),
                        mp::map([("a", Mp::Binary(vec![1, 2]))]),
                    ]),
                ),
                ("nsp", Mp::from("/")),
            ]),
            mp::map([
                ("rooms", Mp::Array(vec![Mp::from("r")])),
                ("except", Mp::Array(vec![])),
                ("flags", mp::map([("timeout", Mp::Ext(0, vec![0]))])),
            ]),
        ]);
        let b = decode_broadcast(&mp::encode(&v)).unwrap();
        assert_eq!(&*b.reach.rooms[0], "r");
        let m = b.delivery.message().unwrap();
        assert_eq!(&*m.event, "ev");
        let MessageBody::Args(a) = &m.body else {
            panic!("exact message expected")
        };
        assert_eq!(a.values[0], serde_json::json!(1));
        assert_eq!(
            a.values[1],
            serde_json::json!({"a": {"_placeholder": true, "num": 0}})
        );
        assert_eq!(&a.bin[0][..], &[1, 2]);
    }

    #[test]
    fn malformed_broadcasts_are_errors() {
        for bad in [
            mp::encode(&Mp::from(1)),
            mp::encode(&Mp::Array(vec![Mp::from("u")])),
            mp::encode(&Mp::Array(vec![Mp::from("u"), Mp::from(2), Mp::Nil])),
            mp::encode(&Mp::Array(vec![
                Mp::from("u"),
                mp::map([
                    ("type", Mp::from(2)),
                    ("data", Mp::Array(vec![Mp::from(3)])),
                ]),
                Mp::Nil,
            ])),
            mp::encode(&Mp::Array(vec![
                Mp::from("u"),
                mp::map([
                    ("type", Mp::from(2)),
                    ("data", Mp::Array(vec![Mp::from("e")])),
                    ("nsp", Mp::from("x")),
                ]),
                Mp::Nil,
            ])),
        ] {
            assert!(decode_broadcast(&bad).is_err());
        }
    }
}
