//! Fan-out: finding a message's recipients and pushing one shared [`Delivery`] to each
//! of them, without awaiting anything. A room publish assigns the room's `seq`, appends to its
//! history and pushes to every member while the room is locked, so members see one order.

use std::sync::Arc;

use super::conn::{Conn, ConnId};
use super::delivery::{now_ms, Body, Delivery, Message, MessageBody};
use super::emit::{BroadcastOptions, Emitted, Emitter, Target};
use super::outbox::Push;
use super::persist;
use super::room::check_name;
use super::shards::lock;
use super::Hub;
use crate::error::HubError;

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
            opts: BroadcastOptions {
                ns: "/".into(),
                target,
                except_rooms: Vec::new(),
                except: Vec::new(),
                from: None,
                volatile: false,
            },
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
        let message = |room: Option<Arc<str>>, seq: Option<u64>| {
            let d = Delivery::new(Body::Message(Message {
                ns: opts.ns.clone(),
                room,
                event: event.clone(),
                body: body.clone(),
                from: opts.from.clone(),
                seq,
                ts: now_ms(),
                offset: recorder.as_ref().map(|r| r.next_offset()),
            }));
            *made.borrow_mut() = Some(d.clone());
            d
        };
        let out = match &opts.target {
            Target::Room(room) if opts.except_rooms.is_empty() => {
                self.publish_room(room, opts, message)?
            }
            Target::User(_) => {
                let d = message(None, None);
                let mut delivered = 0;
                let mut online = false;
                self.for_each_recipient(opts, |c| {
                    online = true;
                    delivered += self.push_one(c, &d, opts.volatile);
                });
                Emitted {
                    delivered,
                    seq: None,
                    online: Some(online),
                }
            }
            Target::Room(room) => {
                check_name(room, "room")?;
                let d = message(Some(room.clone()), None);
                self.fan_out_all(opts, &d)
            }
            Target::All | Target::Conn(_) | Target::Many { .. } => {
                let d = message(None, None);
                self.fan_out_all(opts, &d)
            }
        };
        self.inner.stats.messages_out(out.delivered as u64);
        if let (Some(r), Some(d)) = (recorder, made.into_inner()) {
            r.record(self, opts, &d);
        }
        Ok(out)
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

    pub(super) fn publish_room(
        &self,
        room: &Arc<str>,
        opts: &BroadcastOptions,
        message: impl Fn(Option<Arc<str>>, Option<u64>) -> Arc<Delivery>,
    ) -> Result<Emitted, HubError> {
        check_name(room, "room")?;
        loop {
            let r = self.room_or_create(&opts.ns, room);
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            let seq = st.log.enabled().then(|| st.log.next_seq());
            let d = message(Some(r.name.clone()), seq);
            if let Some(seq) = seq {
                st.log.append(seq, d.clone());
                if let (Some(store), Some(row)) = (self.inner.store.get(), persist::row_of(&d)) {
                    if !store.append(row, st.log.capacity()) {
                        self.inner.stats.store_dropped();
                    }
                }
            }
            let delivered = self.fan_out(st.members.values(), &d, &opts.except, opts.volatile);
            let removable = st.removable();
            drop(st);
            if removable {
                self.remove_if_removable(&r);
            }
            return Ok(Emitted {
                delivered,
                seq,
                online: None,
            });
        }
    }
}
