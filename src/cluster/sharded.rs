//! The sharded flavour (`createShardedAdapter` of `@socket.io/redis-adapter`, Redis 7
//! sharded pub/sub): what a node does with the cluster messages that arrive on its shard
//! channels, and how it sends its own.
//!
//! Every server of namespace `ns` listens on `socket.io#<ns>#` (broadcasts and requests),
//! on `socket.io#<ns>#<uid>#` (the answers to its own requests) and, in the default
//! `dynamic` mode, on `socket.io#<ns>#<room>#` for each room it has: a broadcast to exactly
//! one such room goes there, so it reaches only the servers that have the room. How many
//! servers answer a request is `PUBSUB SHARDNUMSUB` of the namespace's channel. Hubbub's own
//! questions keep their channels ([`super::wire::Names::hub_requests`]).

use std::sync::Arc;

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::Value;

use super::answers::{self, AckNews, AckNewsSink, Ask, Outcome};
use super::wire::{self, shard_kind as kind, Flavour};
use super::RedisAdapter;
use crate::hub::Hub;
use crate::protocol::msgpack as mp;

impl RedisAdapter {
    /// Whether this node speaks the sharded flavour.
    pub(super) fn sharded(&self) -> bool {
        self.config.flavour == Flavour::Sharded
    }

    /// A cluster message on one of namespace `ns`'s shard channels: `room` is what follows
    /// the namespace in the channel's name (a room, this node's uid for answers, or none).
    pub(super) fn on_shard_message(&self, hub: &Hub, ns: &str, room: Option<&str>, payload: &[u8]) {
        let message = match wire::decode_map(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(ns, error = %e, "bad cluster message");
                return;
            }
        };
        // As socket.io-adapter: a message of another namespace, or of none, is not ours.
        if mp::get_str(&message, "nsp") != Some(ns) {
            return;
        }
        let kind = mp::get_u64(&message, "type").unwrap_or(0);
        let data = mp::get(&message, "data").unwrap_or(&Mp::Nil);
        let from = mp::get(&message, "uid").and_then(mp::as_name);
        if room == Some(self.uid.as_str())
            || matches!(
                kind,
                kind::FETCH_SOCKETS_RESPONSE
                    | kind::SERVER_SIDE_EMIT_RESPONSE
                    | kind::BROADCAST_CLIENT_COUNT
                    | kind::BROADCAST_ACK
            )
        {
            return self.on_shard_response(kind, data);
        }
        let mine = from.as_deref() == Some(self.uid.as_str());
        let id = mp::get_str(data, "requestId");
        if id.is_none() && mp::get(data, "requestId").is_some() {
            return tracing::debug!(ns, "a cluster message whose requestId is no string");
        }
        match kind {
            kind::BROADCAST if id.is_none() => {
                match wire::broadcast_of(
                    from.unwrap_or_default(),
                    Some(ns),
                    mp::get(data, "packet").unwrap_or(&Mp::Nil),
                    mp::get(data, "opts").unwrap_or(&Mp::Nil),
                    mp::get(data, "hubbub"),
                ) {
                    Ok(b) if b.kept.is_some() && self.config.keep_history => self.land(hub, b),
                    Ok(_) if mine => {}
                    Ok(b) => {
                        hub.deliver_remote(&b.reach, &b.delivery);
                    }
                    Err(e) => tracing::debug!(ns, error = %e, "bad broadcast"),
                }
            }
            _ if mine => {}
            kind::BROADCAST => {
                let (Some(id), Some(from)) = (id, from) else {
                    return;
                };
                let packet = mp::get(data, "packet").unwrap_or(&Mp::Nil);
                let opts = mp::get(data, "opts");
                let hubbub = mp::get(data, "hubbub");
                match self.acked.0.get() {
                    // A Node server's broadcastWithAck: a count, then each client's ack.
                    Some(send) if hubbub.is_none() => {
                        let tell = self.ack_news(ns, &from, id);
                        answers::relay_acks(ns, packet, opts, send, tell);
                    }
                    _ => {
                        let ask = Ask::Count {
                            packet,
                            opts,
                            hubbub,
                        };
                        if let Some(Outcome::Count(n)) = answers::carry_out(hub, ns, ask) {
                            self.ack_news(ns, &from, id)(AckNews::Count(n));
                        }
                    }
                }
            }
            kind::SOCKETS_JOIN | kind::SOCKETS_LEAVE => {
                let ask = Ask::Rooms {
                    opts: mp::get(data, "opts"),
                    rooms: mp::names(mp::get(data, "rooms")),
                    join: kind == kind::SOCKETS_JOIN,
                };
                answers::carry_out(hub, ns, ask);
            }
            kind::DISCONNECT_SOCKETS => {
                let ask = Ask::Disconnect {
                    opts: mp::get(data, "opts"),
                    close: mp::get(data, "close")
                        .and_then(Mp::as_bool)
                        .unwrap_or(false),
                };
                answers::carry_out(hub, ns, ask);
            }
            kind::FETCH_SOCKETS => {
                let (Some(id), Some(from)) = (id, from) else {
                    return;
                };
                if let Some(Outcome::Fetched(sockets)) =
                    answers::carry_out(hub, ns, Ask::Fetch(mp::get(data, "opts")))
                {
                    let sockets = Value::Array(sockets);
                    let data = mp::map([
                        ("requestId", Mp::from(id)),
                        ("sockets", mp::from_json(&sockets, &[])),
                    ]);
                    self.answer_server(ns, &from, kind::FETCH_SOCKETS_RESPONSE, data);
                }
            }
            kind::SERVER_SIDE_EMIT => {
                // Without an id there is nobody to answer; Hubbub has no listeners of its own.
                let (Some(id), Some(from)) = (id, from) else {
                    return;
                };
                let Some(packet) = mp::get(data, "packet").and_then(Mp::as_array) else {
                    return;
                };
                if let Some(Outcome::ServerSide(answer)) =
                    answers::carry_out(hub, ns, Ask::ServerSide(packet))
                {
                    let data = mp::map([
                        ("requestId", Mp::from(id)),
                        ("packet", mp::from_json(&answer, &[])),
                    ]);
                    self.answer_server(ns, &from, kind::SERVER_SIDE_EMIT_RESPONSE, data);
                }
            }
            // Heartbeats and closing adapters (types 1, 2, 13) and what comes later.
            _ => {}
        }
    }

    /// An answer to one of this node's requests, in the shape the classic flavour's answers
    /// have (`clientCount`, `data` for a `serverSideEmit`), so both gather the same way.
    fn on_shard_response(&self, kind: u64, data: &Mp) {
        let Some(id) = mp::get_str(data, "requestId").map(str::to_string) else {
            return;
        };
        let answer = match kind {
            kind::BROADCAST_CLIENT_COUNT => mp::map([(
                "clientCount",
                Mp::from(mp::get_u64(data, "clientCount").unwrap_or(0)),
            )]),
            kind::SERVER_SIDE_EMIT_RESPONSE => {
                mp::map([("data", mp::get(data, "packet").cloned().unwrap_or(Mp::Nil))])
            }
            kind::FETCH_SOCKETS_RESPONSE => data.clone(),
            // Acknowledgements of single clients are not answers of a node.
            _ => return,
        };
        self.pending.answered(&id, answer);
    }

    /// Publishes `data` as a `kind` answer to server `to` of namespace `ns`.
    fn answer_server(&self, ns: &str, to: &str, kind: u64, data: Mp) {
        let message = wire::shard_message(&self.uid, ns, kind, data);
        let _ = self.link.spublish(
            self.names.server_channel(ns, to),
            Bytes::from(mp::encode(&message)),
            None,
        );
    }

    /// Where the count and the acknowledgements of request `id` from server `to` go.
    fn ack_news(&self, ns: &str, to: &str, id: &str) -> AckNewsSink {
        let (link, uid, ns) = (self.link.clone(), self.uid.clone(), ns.to_string());
        let (channel, id) = (self.names.server_channel(&ns, to), id.to_string());
        Arc::new(move |news| {
            let (kind, data) = match news {
                AckNews::Count(n) => (
                    kind::BROADCAST_CLIENT_COUNT,
                    mp::map([
                        ("requestId", Mp::from(id.as_str())),
                        ("clientCount", Mp::from(n as u64)),
                    ]),
                ),
                AckNews::Ack(first) => (
                    kind::BROADCAST_ACK,
                    mp::map([("requestId", Mp::from(id.as_str())), ("packet", first)]),
                ),
            };
            let message = wire::shard_message(&uid, &ns, kind, data);
            let _ = link.spublish(channel.clone(), Bytes::from(mp::encode(&message)), None);
        })
    }

    /// A room of this node came (`true`) or went: its channel is listened to while it is
    /// here (rooms of the namespaces this node serves that do not look like socket ids, for
    /// which servers use the namespace's channel). A v1 connection's id is such a room: a
    /// Node server's `io.to(id)` goes on its channel.
    pub(super) fn follow_room(&self, ns: &str, room: &str, here: bool) {
        // A room named as this node's uid would be its answers' channel: not followed (its
        // one-room broadcasts reach this node as answers, and are dropped).
        if !self.sharded() || !self.serves(ns) || !wire::is_public_room(room) || room == self.uid {
            return;
        }
        let channel = self.names.broadcast_channel(ns, Some(room));
        if here {
            self.link.shard_subscribe(channel);
        } else {
            self.link.shard_unsubscribe(&channel);
        }
    }
}
