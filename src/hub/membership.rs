//! Joining and leaving rooms: a join replays history, queues the front end's ack and goes
//! live while the room is locked; the first connection of a user to join and the last one to
//! leave tell the other members (`presence`).

use std::sync::Arc;

use super::access::{forbidden_in, may_see_presence};
use super::conn::Conn;
use super::delivery::{now_ms, Body, Delivery};
use super::durable::unavailable;
use super::emit::{BroadcastOptions, Target};
use super::grants::Right;
use super::history::Replay;
use super::outbox::OutFrame;
use super::room::{check_name, Joined, ReplayFrom, RoomState};
use super::shards::lock;
use super::Hub;
use crate::error::{ErrorCode, HubError};

impl Hub {
    /// Subscribes `conn` to `room` (in the connection's namespace), replaying history as
    /// asked. Replayed messages are queued first, then whatever `ack` returns (the front
    /// end's ack frames), both while the room is locked, so no live message can come
    /// between them.
    pub fn join(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        replay: ReplayFrom,
        ack: impl FnOnce(&Joined) -> Option<OutFrame>,
    ) -> Result<Joined, HubError> {
        self.join_with(conn, room, replay, |j| ack(j).into_iter().collect())
    }

    /// Like [`Self::join`], with an ack of several frames.
    ///
    /// A room the application maps onto an internal room ([`super::RoomAliases`], such as
    /// a `dm:` conversation) is joined under its internal name; [`Joined::room`] keeps the
    /// client's name for the ack. A replay from a history room needs its store: while the
    /// store is down such a join answers `unavailable`.
    pub fn join_with(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        replay: ReplayFrom,
        ack: impl FnOnce(&Joined) -> Vec<OutFrame>,
    ) -> Result<Joined, HubError> {
        let alias = self.alias(&conn.ns, &conn.user, room)?;
        let (name, settings) = match &alias {
            Some(a) => (&*a.key, Some(&a.settings)),
            None => {
                check_name(room, "room")?;
                (room, None)
            }
        };
        loop {
            let r = self.room_or_create_with(&conn.ns, name, settings);
            let mut st = lock(&r.state);
            if st.dead {
                continue;
            }
            let refuse = |st: std::sync::MutexGuard<'_, RoomState>, e: HubError| {
                let removable = st.removable();
                drop(st);
                if removable {
                    self.remove_if_removable(&r);
                }
                Err(e)
            };
            // A user may always read their own conversations; other rooms follow the grants.
            if let (Some(g), None) = (conn.grants.get(), &alias) {
                let private = st.settings.private;
                let wanted: &[Right] = match replay {
                    ReplayFrom::None => &[Right::Join],
                    _ => &[Right::Join, Right::History],
                };
                if let Some(&missing) = wanted.iter().find(|r| !g.allows(room, private, **r)) {
                    return refuse(st, forbidden_in(room, missing));
                }
            }
            if replay != ReplayFrom::None && st.log.enabled() {
                if let Some(Err(e)) = self.inner.store.get().map(|s| s.health()) {
                    return refuse(st, unavailable(&e));
                }
                // Missed messages of a room the cluster keeps are being read back: a replay
                // now could not say what comes after it.
                if st.waiting.is_some() {
                    let e = HubError::new(
                        ErrorCode::Unavailable,
                        format!("room `{room}` is catching up with the cluster; retry"),
                    );
                    return refuse(st, e);
                }
            }
            let already_user = st.users.contains_key(&conn.user);
            if let Some(max) = st.settings.max_users {
                if !already_user && st.users.len() >= max {
                    let e = HubError::new(
                        ErrorCode::RoomFull,
                        format!("room `{room}` is full ({max} users)"),
                    );
                    return refuse(st, e);
                }
            }
            let newly = st.members.insert(conn.key, conn.clone()).is_none();
            if newly {
                *st.users.entry(conn.user.clone()).or_insert(0) += 1;
                lock(&conn.rooms).push(r.name.clone());
            }
            st.log.expire(now_ms());
            let mut replayed = match replay {
                ReplayFrom::None => Replay::default(),
                ReplayFrom::Since(s) => st.log.since(s),
                ReplayFrom::Latest(n) | ReplayFrom::Gather(n) => st.log.latest(n as usize),
            };
            // What already reached this connection as a message to its user is not sent
            // twice (it was not a member then).
            if let Some(first) = st.outside.remove(&conn.key) {
                replayed.messages.retain(|d| {
                    !d.message().is_some_and(|m| {
                        m.seq.is_some_and(|s| s >= first) && m.to.as_ref() == Some(&conn.user)
                    })
                });
            }
            let gathered = if let ReplayFrom::Gather(_) = replay {
                std::mem::take(&mut replayed.messages)
            } else {
                for d in &replayed.messages {
                    conn.deliver_unbounded(d);
                }
                self.inner
                    .stats
                    .messages_out(replayed.messages.len() as u64);
                Vec::new()
            };
            let joined = Joined {
                room: if alias.is_some() {
                    Arc::from(room)
                } else {
                    r.name.clone()
                },
                seq: st.log.enabled().then(|| st.log.last_seq()),
                members: st.users.len(),
                gap: replayed.gap,
                gathered,
            };
            for frame in ack(&joined) {
                conn.outbox.push_unbounded(frame);
            }
            if newly && !already_user && st.settings.presence {
                self.announce(conn, &r.name, &st, true);
            }
            drop(st);
            if newly {
                self.membership(conn, &r.name, true);
            }
            return Ok(joined);
        }
    }

    /// Subscribes `conn` again to a room it was in, named as [`Conn::rooms`] named it
    /// (internal rooms included), without replay: Socket.IO's connection state recovery.
    /// An internal room that no longer exists is not made again.
    pub fn rejoin(&self, conn: &Arc<Conn>, room: &str) -> Result<(), HubError> {
        if !super::room::is_internal(room) {
            return self
                .join_with(conn, room, ReplayFrom::None, |_| Vec::new())
                .map(|_| ());
        }
        let Some(r) = self.room_in(&conn.ns, room) else {
            return Ok(());
        };
        let mut st = lock(&r.state);
        if !st.dead && st.members.insert(conn.key, conn.clone()).is_none() {
            *st.users.entry(conn.user.clone()).or_insert(0) += 1;
            st.outside.remove(&conn.key);
            lock(&conn.rooms).push(r.name.clone());
            drop(st);
            self.membership(conn, &r.name, true);
        }
        Ok(())
    }

    /// Unsubscribes `conn` from `room`; leaving a room not joined is fine.
    pub fn leave(&self, conn: &Arc<Conn>, room: &str) {
        match self.alias(&conn.ns, &conn.user, room) {
            Ok(Some(a)) => self.leave_room(conn, &a.key, true),
            Ok(None) => self.leave_room(conn, room, true),
            Err(_) => {}
        }
    }

    pub(super) fn leave_room(&self, conn: &Arc<Conn>, room: &str, update_conn: bool) {
        if update_conn {
            let mut rooms = lock(&conn.rooms);
            rooms.retain(|r| **r != *room);
            if rooms.is_empty() {
                // A connection in no room holds no list (idle memory after traffic).
                *rooms = Vec::new();
            }
        }
        let Some(r) = self.room_in(&conn.ns, room) else {
            return;
        };
        let mut st = lock(&r.state);
        if st.members.remove(&conn.key).is_none() {
            return;
        }
        let last_of_user = match st.users.get_mut(&conn.user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                st.users.remove(&conn.user);
                true
            }
        };
        if last_of_user && !st.members.is_empty() && st.settings.presence {
            self.announce(conn, &r.name, &st, false);
        }
        if st.members.is_empty() {
            // An emptied room gives back the tables its members grew (a room that stays,
            // made through the API or keeping history, would hold them idle otherwise).
            st.members.shrink_to_fit();
            st.users.shrink_to_fit();
        }
        let removable = st.removable();
        drop(st);
        if removable {
            self.remove_if_removable(&r);
        }
        self.membership(conn, &r.name, false);
    }

    /// Tells the room's other members (those whose grants let them see it) that `conn`'s
    /// user joined or left, with the room's user count after the change.
    fn announce(&self, conn: &Conn, room: &Arc<str>, st: &RoomState, joined: bool) {
        let d = Delivery::new(Body::Presence {
            ns: conn.ns.clone(),
            room: room.clone(),
            user: conn.user.clone(),
            joined,
            count: st.users.len() as u64,
        });
        let private = st.settings.private;
        let watchers = st
            .members
            .values()
            .filter(|c| may_see_presence(c, room, private));
        let n = self.fan_out(watchers, &d, &[conn.key], false);
        self.inner.stats.messages_out(n as u64);
        // The room's members on the other nodes (the count is this node's); a failure is
        // counted there, and nobody waits for an answer.
        if self.adapter().is_some() {
            let opts = BroadcastOptions {
                ns: conn.ns.clone(),
                ..BroadcastOptions::to(Target::Room(room.clone()))
            };
            let _ = self.to_cluster(&opts, &d);
        }
    }
}
