//! The requests of socket.io's adapter that other servers send, answered for this node's
//! connections: `allSockets`, `allRooms`, `socketsJoin`, `socketsLeave`,
//! `disconnectSockets`, `fetchSockets`, `serverSideEmit` and broadcasts that want client
//! counts. Answers go on the namespace's response channel, in the shape Node's adapter reads
//! (JSON, or MessagePack for client counts).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Value};

use super::wire::{self, kind};
use super::RedisAdapter;
use crate::hub::{Conn, Delivery, Hub, Reach, SioArgs};
use crate::protocol::msgpack as mp;

/// Whether a broadcast to `room` of `ns` can reach anyone here (a room with members, a
/// connection id, a user with connections).
pub(super) fn has_room(hub: &Hub, ns: &str, room: &str) -> bool {
    hub.names_anyone(ns, room)
}

/// A request of another server, in either flavour's terms.
pub(super) enum Ask<'a> {
    /// Socket ids in the rooms `opts` names (`allSockets`).
    Sockets(&'a Mp),
    /// Every room (`allRooms`).
    AllRooms,
    /// The sockets `opts` names join (`true`) or leave `rooms`.
    Rooms {
        /// Whom.
        opts: Option<&'a Mp>,
        /// Which rooms.
        rooms: Vec<String>,
        /// Join, or leave.
        join: bool,
    },
    /// The sockets `opts` names are disconnected (`close`: the whole connection).
    Disconnect {
        /// Whom.
        opts: Option<&'a Mp>,
        /// The whole connection, not only the namespace.
        close: bool,
    },
    /// The details of the sockets `opts` names (`fetchSockets`).
    Fetch(Option<&'a Mp>),
    /// `serverSideEmit` with an acknowledgement: `[event, ...args]`.
    ServerSide(&'a [Mp]),
    /// A broadcast that wants this node's client count (from a Hubbub node: its element).
    Count {
        /// The socket.io packet.
        packet: &'a Mp,
        /// Whom.
        opts: Option<&'a Mp>,
        /// The Hubbub element.
        hubbub: Option<&'a Mp>,
    },
}

/// What this node answers to an [`Ask`].
pub(super) enum Outcome {
    /// Socket ids.
    Sockets(Vec<String>),
    /// Room names.
    Rooms(Vec<String>),
    /// Sockets' details.
    Fetched(Vec<Value>),
    /// The acknowledgement of a `serverSideEmit`.
    ServerSide(Value),
    /// How many connections a broadcast reached here.
    Count(usize),
}

/// Carries out `ask` for namespace `ns`; what to answer, when it wants an answer.
pub(super) fn carry_out(hub: &Hub, ns: &str, ask: Ask<'_>) -> Option<Outcome> {
    // A request whose `opts` are missing or malformed acts on nobody (not on everyone).
    let reach = |opts: Option<&Mp>| -> Option<Reach> {
        let ns_packet = mp::map([("nsp", Mp::from(ns))]);
        wire::reach_of(&ns_packet, opts?).ok()
    };
    match ask {
        Ask::Sockets(opts) => {
            let conns = hub.reached(&reach(Some(opts))?);
            Some(Outcome::Sockets(
                conns.iter().map(|c| c.wire_id().to_string()).collect(),
            ))
        }
        Ask::AllRooms => {
            let everyone = Reach {
                ns: ns.into(),
                ..Reach::default()
            };
            let mut rooms: Vec<String> = hub
                .reached(&everyone)
                .iter()
                .flat_map(|c| {
                    let mut r: Vec<String> = c
                        .rooms()
                        .into_iter()
                        .filter(|r| !crate::hub::room::is_internal(r))
                        .collect();
                    r.push(c.wire_id().to_string());
                    r
                })
                .collect();
            rooms.sort();
            rooms.dedup();
            Some(Outcome::Rooms(rooms))
        }
        Ask::Rooms { opts, rooms, join } => {
            for c in hub.reached(&reach(opts)?) {
                for r in &rooms {
                    if join {
                        let _ = hub.rejoin(&c, r);
                    } else {
                        hub.leave(&c, r);
                    }
                }
            }
            None
        }
        Ask::Disconnect { opts, close } => {
            for c in hub.reached(&reach(opts)?) {
                // Without `close`, socket.io leaves the namespace only (4000 is that here).
                let code = if close { 1000 } else { 4000 };
                c.close(code, "disconnected by the server");
            }
            None
        }
        Ask::Fetch(opts) => Some(Outcome::Fetched(
            hub.reached(&reach(opts)?)
                .iter()
                .map(|c| socket_details(c))
                .collect(),
        )),
        Ask::ServerSide(data) => {
            let event = data.first().and_then(Mp::as_str)?;
            server_side_answer(hub, event).map(Outcome::ServerSide)
        }
        Ask::Count {
            packet,
            opts,
            hubbub,
        } => {
            let reach = wire::reach_in(ns, packet, opts?).ok()?;
            let d = wire::delivery_of(packet, hubbub, ns).ok()?;
            Some(Outcome::Count(hub.deliver_remote(&reach, &d)))
        }
    }
}

/// Carries out `request` (sent on `ns`'s request channel, the classic flavour) and returns
/// the response to publish, when it wants one.
pub(super) fn answer(
    hub: &Hub,
    names: &wire::Names,
    ns: &str,
    request: &Mp,
) -> Option<(String, Bytes)> {
    let id = mp::get_str(request, "requestId");
    let kind = mp::get_u64(request, "type")?;
    let opts = mp::get(request, "opts");
    let ask = match kind {
        // `allSockets` names its rooms at the top level of the request.
        kind::SOCKETS => Ask::Sockets(request),
        kind::ALL_ROOMS => Ask::AllRooms,
        kind::REMOTE_JOIN | kind::REMOTE_LEAVE => Ask::Rooms {
            opts,
            rooms: mp::names(mp::get(request, "rooms")),
            join: kind == kind::REMOTE_JOIN,
        },
        kind::REMOTE_DISCONNECT => Ask::Disconnect {
            opts,
            close: mp::get(request, "close")
                .and_then(Mp::as_bool)
                .unwrap_or(false),
        },
        kind::REMOTE_FETCH => Ask::Fetch(opts),
        kind::SERVER_SIDE_EMIT => Ask::ServerSide(mp::get(request, "data").and_then(Mp::as_array)?),
        kind::BROADCAST => Ask::Count {
            packet: mp::get(request, "packet")?,
            opts,
            hubbub: mp::get(request, "hubbub"),
        },
        _ => return None,
    };
    let outcome = carry_out(hub, ns, ask)?;
    let json = |v: Value| Some((names.response_channel(ns), Bytes::from(v.to_string())));
    match outcome {
        Outcome::Sockets(ids) => json(json!({ "requestId": id?, "sockets": ids })),
        Outcome::Rooms(rooms) => json(json!({ "requestId": id?, "rooms": rooms })),
        Outcome::Fetched(sockets) => json(json!({ "requestId": id?, "sockets": sockets })),
        Outcome::ServerSide(answer) => json(json!({
            "type": kind::SERVER_SIDE_EMIT, "requestId": id?, "data": answer,
        })),
        Outcome::Count(n) => {
            let response = mp::map([
                ("type", Mp::from(kind::BROADCAST_CLIENT_COUNT)),
                ("requestId", Mp::from(id?)),
                ("clientCount", Mp::from(n as u64)),
            ]);
            Some((
                names.response_channel(ns),
                Bytes::from(mp::encode(&response)),
            ))
        }
    }
}

/// What `fetchSockets()` tells about a connection (a `RemoteSocket`'s fields).
fn socket_details(c: &Conn) -> Value {
    let mut rooms: Vec<String> = vec![c.wire_id().to_string()];
    rooms.extend(
        c.rooms()
            .into_iter()
            .filter(|r| !crate::hub::room::is_internal(r)),
    );
    let address = c.address().map(|a| a.to_string()).unwrap_or_default();
    json!({
        "id": c.wire_id(),
        "handshake": {
            "headers": {},
            "time": "",
            "address": address,
            "xdomain": false,
            "secure": false,
            "issued": c.since(),
            "url": "",
            "query": {},
            "auth": {},
        },
        "rooms": rooms,
        "data": { "user": c.user(), "transport": c.transport().as_str() },
    })
}

/// The events a Hubbub node answers when a server calls `serverSideEmit` with an
/// acknowledgement: `hubbub:node` (this node's id, connections and users online).
fn server_side_answer(hub: &Hub, event: &str) -> Option<Value> {
    match event {
        "hubbub:node" => Some(json!({
            "node": hub.node(),
            "connections": hub.connection_count(),
            "users_online": hub.users_online().len(),
        })),
        _ => None,
    }
}

/// Sends a broadcast that wants acknowledgements to this node's sockets that can give them
/// (the Socket.IO ones; others get the message without being asked), calls the first
/// argument with how many were asked before any of them can answer, then the second with
/// each answer, as it comes. Set by the server, which knows the Socket.IO front end
/// ([`super::RedisAdapter::on_acked_broadcast`]).
pub type AckedBroadcast = Box<
    dyn Fn(&Reach, &Arc<Delivery>, Duration, Box<dyn FnOnce(usize) + Send>, AckSink) + Send + Sync,
>;

/// Where the acknowledgements of an [`AckedBroadcast`] go, one call each.
pub type AckSink = Arc<dyn Fn(SioArgs) + Send + Sync>;

/// The longest a Node server's broadcast may wait for acknowledgements here.
const MAX_ACK_WAIT: Duration = Duration::from_secs(60);

/// Whether `request` is a Node server's `broadcastWithAck` (Hubbub's own counted broadcasts
/// carry a `hubbub` element and want counts only).
pub(super) fn wants_client_acks(request: &Mp) -> bool {
    mp::get_u64(request, "type") == Some(kind::BROADCAST) && mp::get(request, "hubbub").is_none()
}

/// What this node tells a server whose `broadcastWithAck` reached it.
pub(super) enum AckNews {
    /// How many sockets were asked, before any of them answers.
    Count(usize),
    /// One socket's acknowledgement (its first argument).
    Ack(Mp),
}

/// Where [`AckNews`] goes, framed by the flavour.
pub(super) type AckNewsSink = Arc<dyn Fn(AckNews) + Send + Sync>;

/// Answers a Node server's `broadcastWithAck` (request `id`, `packet` to `opts`) for this
/// node: the number of sockets asked, then each socket's acknowledgement, through `tell`.
pub(super) fn relay_acks(
    ns: &str,
    packet: &Mp,
    opts: Option<&Mp>,
    send: &AckedBroadcast,
    tell: AckNewsSink,
) {
    let Some(opts) = opts else { return };
    let Ok(reach) = wire::reach_in(ns, packet, opts) else {
        return;
    };
    let Ok(d) = wire::delivery_of(packet, None, ns) else {
        return;
    };
    let wait = mp::get(opts, "flags")
        .and_then(|f| mp::get_u64(f, "timeout"))
        .map_or(Duration::from_secs(5), Duration::from_millis)
        .min(MAX_ACK_WAIT);
    let counted = {
        let tell = tell.clone();
        Box::new(move |n: usize| tell(AckNews::Count(n))) as Box<dyn FnOnce(usize) + Send>
    };
    let acked: AckSink = Arc::new(move |args: SioArgs| {
        let first = args
            .values
            .first()
            .map_or(Mp::Nil, |v| mp::from_json(v, &args.bin));
        tell(AckNews::Ack(first));
    });
    send(&reach, &d, wait, counted, acked);
}

/// [`relay_acks`] for a classic request: the count (`type: 8`) and the acknowledgements
/// (`type: 9`) go on the namespace's response channel.
pub(super) fn relay_acks_classic(
    adapter: &RedisAdapter,
    ns: &str,
    request: &Mp,
    send: &AckedBroadcast,
) {
    let (Some(id), Some(packet)) = (
        mp::get_str(request, "requestId"),
        mp::get(request, "packet"),
    ) else {
        return;
    };
    let channel = adapter.names.response_channel(ns);
    let link = adapter.link.clone();
    let id = id.to_string();
    let tell: AckNewsSink = Arc::new(move |news| {
        let response = match news {
            AckNews::Count(n) => mp::map([
                ("type", Mp::from(kind::BROADCAST_CLIENT_COUNT)),
                ("requestId", Mp::from(id.as_str())),
                ("clientCount", Mp::from(n as u64)),
            ]),
            AckNews::Ack(first) => mp::map([
                ("type", Mp::from(kind::BROADCAST_ACK)),
                ("requestId", Mp::from(id.as_str())),
                ("packet", first),
            ]),
        };
        let _ = link.publish(channel.clone(), Bytes::from(mp::encode(&response)), None);
    });
    relay_acks(ns, packet, mp::get(request, "opts"), send, tell);
}
