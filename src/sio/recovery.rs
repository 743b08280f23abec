//! Socket.IO's connection state recovery (socket.io 4.6+) for one namespace: the events a
//! namespace delivered, kept for a window with their offsets, and the sockets that dropped,
//! saved so that a client coming back within the window resumes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::socket::Socket;
use crate::hub::{BroadcastOptions, Hub, Target};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connection state recovery for one namespace (socket.io 4.6+): every recorded event
/// carries an offset as its last argument; a socket that drops for a transport reason is
/// saved for `window`; a client that reconnects with `{pid, offset}` in its CONNECT gets
/// its id and rooms back and the events it missed.
pub(crate) struct Recovery {
    pub(super) window: Duration,
    next: AtomicU64,
    ring: Mutex<std::collections::VecDeque<Recorded>>,
    sessions: Mutex<HashMap<Arc<str>, Saved>>,
}

/// At most this many recent events are kept per namespace, whatever the window.
const MAX_RECORDED: usize = 100_000;

struct Recorded {
    offset: Arc<str>,
    at: std::time::Instant,
    all: bool,
    pub(super) rooms: Vec<Arc<str>>,
    users: Vec<Arc<str>>,
    sids: Vec<Arc<str>>,
    except_rooms: Vec<Arc<str>>,
    except_sids: Vec<Arc<str>>,
    delivery: Arc<crate::hub::Delivery>,
}

pub(super) struct Saved {
    pub(super) sid: Arc<str>,
    pub(super) user: Arc<str>,
    pub(super) rooms: Vec<Arc<str>>,
    /// The credentials' expiry and rights, which a recovered socket keeps.
    pub(super) expires_at: Option<u64>,
    pub(super) grants: Option<Arc<crate::hub::Grants>>,
    pub(super) connected_at: std::time::Instant,
    pub(super) disconnected_at: std::time::Instant,
}

impl Saved {
    fn wants(&self, r: &Recorded) -> bool {
        let in_rooms = |rooms: &[Arc<str>]| rooms.iter().any(|x| self.rooms.contains(x));
        let targeted = r.all
            || in_rooms(&r.rooms)
            || r.users.contains(&self.user)
            || r.sids.contains(&self.sid);
        targeted && !r.except_sids.contains(&self.sid) && !in_rooms(&r.except_rooms)
    }
}

impl Recovery {
    pub(crate) fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            window,
            next: AtomicU64::new(1),
            ring: Mutex::new(Default::default()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn save(&self, pid: Arc<str>, socket: &Socket) {
        let now = std::time::Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| now.duration_since(s.disconnected_at) < self.window);
        sessions.insert(
            pid,
            Saved {
                sid: socket.conn.wire_id().into(),
                user: socket.conn.user_arc(),
                rooms: socket.conn.rooms().into_iter().map(Arc::from).collect(),
                expires_at: socket.ns.hub().expiry(&socket.conn),
                grants: socket.ns.hub().grants(&socket.conn),
                connected_at: socket.connected_at,
                disconnected_at: now,
            },
        );
    }

    /// The saved session of `pid` and what it missed after `offset` (or, without an
    /// offset, since it connected), if it is still within the window.
    pub(super) fn restore(
        &self,
        pid: &str,
        offset: Option<&str>,
    ) -> Option<(Saved, Vec<Arc<crate::hub::Delivery>>)> {
        let saved = lock(&self.sessions).remove(pid)?;
        if saved.disconnected_at.elapsed() > self.window {
            return None;
        }
        // Credentials that expired meanwhile do not come back: the client connects anew,
        // through the middleware, with fresh ones.
        if saved
            .expires_at
            .is_some_and(|at| at <= crate::hub::now_ms())
        {
            return None;
        }
        let ring = lock(&self.ring);
        let start = match offset {
            Some(off) => ring.iter().position(|r| &*r.offset == off)? + 1,
            None => ring
                .iter()
                .position(|r| r.at >= saved.connected_at)
                .unwrap_or(ring.len()),
        };
        let missed = ring
            .iter()
            .skip(start)
            .filter(|r| saved.wants(r))
            .map(|r| r.delivery.clone())
            .collect();
        Some((saved, missed))
    }
}

impl crate::hub::Recorder for Recovery {
    fn next_offset(&self) -> Arc<str> {
        self.next.fetch_add(1, Ordering::Relaxed).to_string().into()
    }

    fn record(&self, hub: &Hub, opts: &BroadcastOptions, d: &Arc<crate::hub::Delivery>) {
        let Some(offset) = d.message().and_then(|m| m.offset.clone()) else {
            return;
        };
        let sid_of = |id: &crate::hub::ConnId| hub.conn(*id).map(|c| Arc::<str>::from(c.wire_id()));
        let mut r = Recorded {
            offset,
            at: std::time::Instant::now(),
            all: false,
            rooms: Vec::new(),
            users: Vec::new(),
            sids: Vec::new(),
            except_rooms: opts.except_rooms.clone(),
            except_sids: opts.except.iter().filter_map(sid_of).collect(),
            delivery: d.clone(),
        };
        match &opts.target {
            Target::All => r.all = true,
            Target::Room(room) => r.rooms.push(room.clone()),
            Target::User(user) => r.users.push(user.clone()),
            Target::Conn(id) => r.sids.extend(sid_of(id)),
            Target::Many { rooms, conns } => {
                r.rooms.extend(rooms.iter().cloned());
                r.sids.extend(conns.iter().filter_map(sid_of));
            }
        }
        let mut ring = lock(&self.ring);
        ring.push_back(r);
        while ring.len() > MAX_RECORDED
            || ring.front().is_some_and(|f| f.at.elapsed() > self.window)
        {
            ring.pop_front();
        }
    }
}
