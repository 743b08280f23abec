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

/// Carries out `request` (sent on `ns`'s request channel) and returns the response to
/// publish, when it wants one.
pub(super) fn answer(
    hub: &Hub,
    names: &wire::Names,
    ns: &str,
    request: &Mp,
) -> Option<(String, Bytes)> {
    let id = mp::get_str(request, "requestId");
    let kind = mp::get_u64(request, "type")?;
    let reach = |opts: Option<&Mp>| -> Reach {
        let ns_packet = mp::map([("nsp", Mp::from(ns))]);
        wire::reach_of(&ns_packet, opts.unwrap_or(&Mp::Nil)).unwrap_or_default()
    };
    let respond_json = |v: Value| Some((names.response_channel(ns), Bytes::from(v.to_string())));
    match kind {
        kind::SOCKETS => {
            // `allSockets` names its rooms at the top level of the request.
            let conns = hub.reached(&reach(Some(request)));
            let ids: Vec<&str> = conns.iter().map(|c| c.wire_id()).collect();
            respond_json(json!({ "requestId": id?, "sockets": ids }))
        }
        kind::ALL_ROOMS => {
            let everyone = reach(None);
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
            respond_json(json!({ "requestId": id?, "rooms": rooms }))
        }
        kind::REMOTE_JOIN | kind::REMOTE_LEAVE => {
            let rooms = mp::names(mp::get(request, "rooms"));
            for c in hub.reached(&reach(mp::get(request, "opts"))) {
                for r in &rooms {
                    if kind == kind::REMOTE_JOIN {
                        let _ = hub.rejoin(&c, r);
                    } else {
                        hub.leave(&c, r);
                    }
                }
            }
            None
        }
        kind::REMOTE_DISCONNECT => {
            let close = mp::get(request, "close")
                .and_then(Mp::as_bool)
                .unwrap_or(false);
            for c in hub.reached(&reach(mp::get(request, "opts"))) {
                // Without `close`, socket.io leaves the namespace only (4000 is that here).
                let code = if close { 1000 } else { 4000 };
                c.close(code, "disconnected by the server");
            }
            None
        }
        kind::REMOTE_FETCH => {
            let sockets: Vec<Value> = hub
                .reached(&reach(mp::get(request, "opts")))
                .iter()
                .map(|c| socket_details(c))
                .collect();
            respond_json(json!({ "requestId": id?, "sockets": sockets }))
        }
        kind::SERVER_SIDE_EMIT => {
            let data = mp::get(request, "data").and_then(Mp::as_array)?;
            let event = data.first().and_then(Mp::as_str)?;
            let answer = server_side_answer(hub, event)?;
            respond_json(json!({
                "type": kind::SERVER_SIDE_EMIT, "requestId": id?, "data": answer,
            }))
        }
        kind::BROADCAST => {
            let packet = mp::get(request, "packet")?;
            let reach =
                wire::reach_of(packet, mp::get(request, "opts").unwrap_or(&Mp::Nil)).ok()?;
            if &*reach.ns != ns {
                return None;
            }
            let d = wire::delivery_of(packet, mp::get(request, "hubbub"), ns).ok()?;
            let n = hub.deliver_remote(&reach, &d);
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
        _ => None,
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

/// Answers a Node server's `broadcastWithAck` for this node: the number of sockets asked
/// (`type: 8`), then each socket's acknowledgement (`type: 9`, its first argument), on the
/// namespace's response channel.
pub(super) fn relay_acks(adapter: &RedisAdapter, ns: &str, request: &Mp, send: &AckedBroadcast) {
    let (Some(id), Some(packet)) = (
        mp::get_str(request, "requestId"),
        mp::get(request, "packet"),
    ) else {
        return;
    };
    let opts = mp::get(request, "opts").unwrap_or(&Mp::Nil);
    let Ok(reach) = wire::reach_of(packet, opts) else {
        return;
    };
    if &*reach.ns != ns {
        return;
    }
    let Ok(d) = wire::delivery_of(packet, None, ns) else {
        return;
    };
    let wait = mp::get(opts, "flags")
        .and_then(|f| mp::get_u64(f, "timeout"))
        .map_or(Duration::from_secs(5), Duration::from_millis)
        .min(MAX_ACK_WAIT);
    let channel = adapter.names.response_channel(ns);
    let link = adapter.link.clone();
    let counted = {
        let (link, channel, id) = (link.clone(), channel.clone(), id.to_string());
        Box::new(move |n: usize| {
            let response = mp::map([
                ("type", Mp::from(kind::BROADCAST_CLIENT_COUNT)),
                ("requestId", Mp::from(id.as_str())),
                ("clientCount", Mp::from(n as u64)),
            ]);
            let _ = link.publish(channel, Bytes::from(mp::encode(&response)), None);
        }) as Box<dyn FnOnce(usize) + Send>
    };
    let id = id.to_string();
    let acked: AckSink = Arc::new(move |args: SioArgs| {
        let first = args
            .values
            .first()
            .map_or(Mp::Nil, |v| mp::from_json(v, &args.bin));
        let response = mp::map([
            ("type", Mp::from(kind::BROADCAST_ACK)),
            ("requestId", Mp::from(id.as_str())),
            ("packet", first),
        ]);
        let _ = link.publish(channel.clone(), Bytes::from(mp::encode(&response)), None);
    });
    send(&reach, &d, wait, counted, acked);
}
