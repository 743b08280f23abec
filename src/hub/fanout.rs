//! Fan-out: finding a message's recipients and pushing one shared [`Delivery`] to each
//! of them, without awaiting anything. A room publish assigns the room's `seq`, appends to its
//! history and pushes to every member while the room is locked, so members see one order.

use std::sync::Arc;

use super::conn::{Conn, ConnId};
use std::sync::MutexGuard;

use super::delivery::{now_ms, Body, Delivery, Message, MessageBody};
use super::durable::{unavailable, Commit};
use super::emit::{BroadcastOptions, Emitted, Emitter, Target};
use super::outbox::Push;
use super::persist;
use super::room::{check_name, RoomSettings, RoomState};
use super::shards::lock;
use super::Hub;
use crate::error::{ErrorCode, HubError};
use crate::protocol::v1::RawJson;
use crate::store::Keep;

impl Hub {
    /// Emits to a room's members.
    pub fn to_room(&self, room: &str) -> Emitter<'_> {
        self.emitter(Target::Room(room.into()))
    }

    /// Emits to every connection of a user.
    pub fn to_user(&self, user: &str) -> Emitter<'_> {
        self.emitter(Target::User(user.into()))
    }

    /// Emits to every connection.
    pub fn to_all(&self) -> Emitter<'_> {
        self.emitter(Target::All)
    }

    /// Emits to one connection.
    pub fn to_conn(&self, conn: ConnId) -> Emitter<'_> {
        self.emitter(Target::Conn(conn))
    }

    pub(super) fn emitter(&self, target: Target) -> Emitter<'_> {
        Emitter {
            hub: self,
            opts: BroadcastOptions::to(target),
        }
    }

    /// The connections `opts` reaches, each once (for broadcasts that collect acks).
    pub fn recipients(&self, opts: &BroadcastOptions) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        self.for_each_recipient(opts, |c| out.push(c.clone()));
        out
    }

    /// Calls `f` for each connection `opts` reaches (no history room semantics).
    pub(super) fn for_each_recipient(
        &self,
        opts: &BroadcastOptions,
        mut f: impl FnMut(&Arc<Conn>),
    ) {
        let keep = |c: &Arc<Conn>| {
            *c.ns == *opts.ns
                && !opts.except.contains(&c.key)
                && !self.in_rooms(c, &opts.except_rooms)
        };
        match &opts.target {
            Target::All => {
                for shard in self.inner.conns.all() {
                    shard.values().filter(|c| keep(c)).for_each(&mut f);
                }
            }
            Target::User(user) => self.user_conns(user).iter().filter(|c| keep(c)).for_each(f),
            Target::Conn(id) => self.conn(*id).iter().filter(|c| keep(c)).for_each(f),
            Target::Room(room) => self.for_each_recipient(
                &BroadcastOptions {
                    target: Target::Many {
                        rooms: vec![room.clone()],
                        conns: Vec::new(),
                    },
                    ..opts.clone()
                },
                f,
            ),
            Target::Many { rooms, conns } => {
                let mut seen = std::collections::HashSet::new();
                for room in rooms {
                    if let Some(r) = self.room_in(&opts.ns, room) {
                        let members: Vec<Arc<Conn>> =
                            lock(&r.state).members.values().cloned().collect();
                        for c in members.iter().filter(|c| keep(c)) {
                            if seen.insert(c.key) {
                                f(c);
                            }
                        }
                    }
                }
                for id in conns {
                    if let Some(c) = self.conn(*id) {
                        if keep(&c) && seen.insert(c.key) {
                            f(&c);
                        }
                    }
                }
            }
        }
    }

    pub(super) fn in_rooms(&self, conn: &Conn, rooms: &[Arc<str>]) -> bool {
        !rooms.is_empty() && lock(&conn.rooms).iter().any(|r| rooms.contains(r))
    }

    /// Delivers `event` with `body` as `opts` says.
    ///
    /// A message to a room that keeps history is numbered and kept; with a store attached,
    /// the returned [`Emitted::commit`] completes once it is on disk (its live delivery
    /// does not wait). When the cluster keeps history ([`super::shared`]), it is numbered
    /// and delivered on every node by the cluster instead, and [`Emitted::kept`] completes
    /// once Redis has it. While the store is down, or cannot keep up, such a message is refused
    /// with `unavailable` before anyone receives it. A message from one user to another
    /// that the application keeps ([`super::RoomAliases::user_log`]) is a message of that
    /// conversation's room, and also reaches every connection of its addressee.
    pub fn dispatch(
        &self,
        opts: &BroadcastOptions,
        event: Arc<str>,
        body: MessageBody,
    ) -> Result<Emitted, HubError> {
        let recorder = if opts.volatile {
            None
        } else {
            self.recorder(&opts.ns)
        };
        let made = std::cell::RefCell::new(None::<Arc<Delivery>>);
        let message = |room: Option<Arc<str>>, seq: Option<u64>, to: Option<Arc<str>>| {
            let d = Delivery::new(Body::Message(Message {
                ns: opts.ns.clone(),
                room,
                event: event.clone(),
                body: body.clone(),
                from: opts.from.clone(),
                to,
                seq,
                ts: now_ms(),
                offset: recorder.as_ref().map(|r| r.next_offset()),
            }));
            *made.borrow_mut() = Some(d.clone());
            d
        };
        let out = match &opts.target {
            Target::Room(room) if opts.except_rooms.is_empty() && !opts.transient => {
                check_name(room, "room")?;
                self.publish_room(room, None, None, opts, &body, message)?
            }
            Target::User(to) => {
                let log = match (&opts.from, *opts.ns == *"/") {
                    (Some(from), true) => self.user_log(from, to),
                    _ => None,
                };
                match log {
                    Some(alias) => {
                        let settings = Some(&alias.settings);
                        self.publish_room(&alias.key, settings, Some(to), opts, &body, message)?
                    }
                    None => {
                        let d = message(None, None, None);
                        let mut delivered = 0;
                        let mut online = false;
                        self.for_each_recipient(opts, |c| {
                            online = true;
                            delivered += self.push_one(c, &d, opts.volatile);
                        });
                        Emitted {
                            delivered,
                            online: Some(online),
                            ..Emitted::default()
                        }
                    }
                }
            }
            Target::Room(room) => {
                check_name(room, "room")?;
                let d = message(Some(room.clone()), None, None);
                self.fan_out_all(opts, &d)
            }
            Target::All | Target::Conn(_) | Target::Many { .. } => {
                let d = message(None, None, None);
                if let Target::Many { rooms, .. } = &opts.target {
                    d.set_via(rooms);
                }
                self.fan_out_all(opts, &d)
            }
        };
        self.inner.stats.messages_out(out.delivered as u64);
        let made = made.into_inner();
        let mut out = out;
        // (A room's publish handed it to the other nodes already, under the room's lock.)
        let crossed = out.remote.is_some() || out.cluster_error.is_some() || out.kept.is_some();
        if let Some(d) = made.as_ref().filter(|_| !crossed) {
            match self.to_cluster(opts, d) {
                Ok(remote) => out.remote = remote,
                Err(e) => out.cluster_error = Some(e),
            }
        }
        // (A message the cluster keeps is recorded where it lands, with its seq.)
        if let (Some(r), Some(d), None) = (recorder, made, &out.kept) {
            r.record(self, opts, &d);
        }
        Ok(out)
    }

    /// Delivers a server frame other than a message (see [`Body::Notice`]) as `opts` says;
    /// returns how many connections it was queued for.
    pub fn notice(&self, opts: &BroadcastOptions, name: &str, fields: RawJson) -> usize {
        let d = Delivery::new(Body::Notice {
            ns: opts.ns.clone(),
            name: name.into(),
            fields,
        });
        // Not counted in `messages_out`: a notice is state (an unread count), like an ack.
        self.fan_out_all(opts, &d).delivered
    }

    pub(super) fn fan_out_all(&self, opts: &BroadcastOptions, d: &Delivery) -> Emitted {
        let mut delivered = 0;
        self.for_each_recipient(opts, |c| delivered += self.push_one(c, d, opts.volatile));
        Emitted {
            delivered,
            ..Emitted::default()
        }
    }

    pub(super) fn push_one(&self, c: &Conn, d: &Delivery, volatile: bool) -> usize {
        match c.deliver(d, volatile) {
            Push::Queued => 1,
            Push::Dropped => {
                self.inner.stats.volatile_dropped();
                0
            }
            Push::Overflow => {
                self.inner.stats.slow_consumer();
                0
            }
            Push::Closed => 0,
        }
    }

    /// Pushes `d` to each member not excluded; returns how many queued it.
    pub(super) fn fan_out<'c>(
        &self,
        conns: impl Iterator<Item = &'c Arc<Conn>>,
        d: &Delivery,
        except: &[ConnId],
        volatile: bool,
    ) -> usize {
        conns
            .filter(|c| !except.contains(&c.key))
            .map(|c| self.push_one(c, d, volatile))
            .sum()
    }

    /// Publishes into room `room` (created with `settings` if new), under its lock: checks
    /// the room's schema, numbers and keeps the message in a history room (refusing it when
    /// the store cannot take it), and pushes it to the members. With `to`, the message is
    /// addressed to that user and also reaches every connection of theirs that is not a
    /// member.
    pub(super) fn publish_room(
        &self,
        room: &Arc<str>,
        settings: Option<&RoomSettings>,
        to: Option<&Arc<str>>,
        opts: &BroadcastOptions,
        body: &MessageBody,
        message: impl Fn(Option<Arc<str>>, Option<u64>, Option<Arc<str>>) -> Arc<Delivery>,
    ) -> Result<Emitted, HubError> {
        loop {
            let r = self.room_or_create_with(&opts.ns, room, settings);
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            let refuse = |st: MutexGuard<'_, RoomState>, e: HubError| {
                let removable = st.removable();
                drop(st);
                if removable {
                    self.remove_if_removable(&r);
                }
                Err(e)
            };
            if let Some(name) = &st.settings.schema {
                let checked = match self.schema(name) {
                    Some(check) => check(body, opts.sender.is_some() || opts.from_client),
                    None => Err(HubError::new(
                        ErrorCode::Internal,
                        format!("room `{room}` names schema `{name}`, which is not registered"),
                    )),
                };
                if let Err(e) = checked {
                    return refuse(st, e);
                }
            }
            let store = if st.log.enabled() {
                self.inner.store.get()
            } else {
                None
            };
            if let Some(Err(e)) = store.map(|s| s.health()) {
                self.inner.stats.store_dropped();
                return refuse(st, unavailable(&e));
            }
            // A history room the cluster keeps: numbered, kept and delivered (here too) by
            // the cluster, in `seq` order on every node.
            if let Some(adapter) = self.shared_history().filter(|_| st.log.enabled()) {
                let d = message(Some(r.name.clone()), None, to.cloned());
                let out = self.publish_kept(adapter, &st, opts, &d, to);
                drop(st);
                return out;
            }
            let seq = st.log.enabled().then(|| st.log.next_seq());
            let d = message(Some(r.name.clone()), seq, to.cloned());
            let mut commit = None;
            if let (Some(seq), Some(store), Some(row)) = (seq, store, persist::row_of(&d)) {
                let (pending, done) = Commit::pending();
                let keep = Keep {
                    count: st.log.capacity(),
                    max_age_ms: st.log.ttl_ms(),
                };
                if let Err(e) = store.append(row, keep, Some(done)) {
                    st.log.unreserve(seq);
                    self.inner.stats.store_dropped();
                    return refuse(st, unavailable(&e));
                }
                commit = Some(pending);
            }
            if let Some(seq) = seq {
                st.log.expire(d.message().map_or(0, |m| m.ts));
                st.log.append(seq, d.clone());
            }
            // To the other nodes under the room's lock, so they get the room's messages in
            // `seq` order (a cheap hand-over: encoded once, queued).
            let (remote, cluster_error) = match self.to_cluster(opts, &d) {
                Ok(remote) => (remote, None),
                Err(e) => (None, Some(e)),
            };
            st.published += 1;
            let mut delivered = self.fan_out(st.members.values(), &d, &opts.except, opts.volatile);
            let mut online = None;
            if let Some(user) = to {
                let conns = self.user_conns(user);
                online = Some(conns.iter().any(|c| *c.ns == *opts.ns));
                let st = &mut *st;
                for c in conns {
                    // Only the addressee's connections of this namespace: a Socket.IO session
                    // in several namespaces shares one outbox.
                    if *c.ns != *opts.ns
                        || st.members.contains_key(&c.key)
                        || opts.except.contains(&c.key)
                    {
                        continue;
                    }
                    delivered += self.push_one(&c, &d, opts.volatile);
                    if let Some(seq) = seq {
                        st.outside.entry(c.key).or_insert(seq);
                    }
                }
                if st.outside.len() > OUTSIDE_PRUNE {
                    st.outside.retain(|id, _| self.conn(*id).is_some());
                }
            }
            let removable = st.removable();
            drop(st);
            if removable {
                self.remove_if_removable(&r);
            }
            if seq.is_some() {
                self.kept(&d);
            }
            return Ok(Emitted {
                delivered,
                seq,
                online,
                commit,
                remote,
                cluster_error,
                ..Emitted::default()
            });
        }
    }
}

/// A room's list of outside recipients is pruned of closed connections past this size.
pub(super) const OUTSIDE_PRUNE: usize = 16;
