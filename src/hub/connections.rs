//! Admitting and tracking connections: slots reserved before the upgrade
//! ([`ConnPermit`](super::ConnPermit)), registration of accepted connections and their removal.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::conn::{Conn, ConnId, ConnSpec};
use super::hooks::ConnHook;
use super::outbox::{OutFrame, Outbox};
use super::shards::lock;
use super::{ConnPermit, Hub};
use crate::error::{ErrorCode, HubError};
use crate::stats::{RejectReason, Transport};

impl Hub {
    /// Reserves a connection slot, or `server_full` / shutting down. Call before the
    /// upgrade, so a refused client never becomes a WebSocket.
    pub fn try_reserve(&self) -> Result<ConnPermit, HubError> {
        self.try_reserve_from(None)
    }

    /// [`Self::try_reserve`] for a client at `address`, which also counts against
    /// `max_connections_per_ip`: `rate_limited` when that address holds as many already.
    /// Refusals are counted in the stats (`upgrade_rejected`).
    pub fn try_reserve_from(&self, address: Option<IpAddr>) -> Result<ConnPermit, HubError> {
        let refuse = |reason: RejectReason, e: HubError| {
            self.inner.stats.upgrade_rejected(reason);
            Err(e)
        };
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return refuse(
                RejectReason::ShuttingDown,
                HubError::new(ErrorCode::ServerFull, "the server is shutting down"),
            );
        }
        let max = self.inner.config.max_connections;
        let mut n = self.inner.reserved.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return refuse(
                    RejectReason::ServerFull,
                    HubError::new(
                        ErrorCode::ServerFull,
                        format!("the server is at its limit of {max} connections"),
                    ),
                );
            }
            match self.inner.reserved.compare_exchange_weak(
                n,
                n + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => n = actual,
            }
        }
        // From here on dropping the permit gives the slot back.
        let mut permit = ConnPermit {
            hub: self.clone(),
            address,
            counted: false,
        };
        let per_ip = self.inner.config.max_connections_per_ip;
        if let (Some(ip), true) = (address, per_ip > 0) {
            let mut counts = lock(&self.inner.per_address);
            let held = counts.entry(ip).or_insert(0);
            if *held as usize >= per_ip {
                drop(counts);
                return refuse(
                    RejectReason::RateLimited,
                    HubError::new(
                        ErrorCode::RateLimited,
                        format!("this address already has {per_ip} connections open"),
                    ),
                );
            }
            *held += 1;
            permit.counted = true;
        }
        Ok(permit)
    }

    /// A fresh connection id, unique in the cluster.
    pub fn new_wire_id(&self) -> (ConnId, Arc<str>) {
        let key = ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed));
        (
            key,
            format!("{}-{:x}", self.inner.config.node, key.0).into(),
        )
    }

    /// Registers an accepted v1 connection of `user` (anonymous when `None`) in `/`.
    /// `greeting` builds the front end's first frame (the v1 `welcome`), queued before
    /// anything the `on_connect` hooks or other connections may send.
    pub fn register(
        &self,
        user: Option<&str>,
        transport: Transport,
        greeting: impl FnOnce(&Conn) -> Option<OutFrame>,
    ) -> Arc<Conn> {
        self.register_with(ConnSpec::new(user, transport), greeting)
    }

    /// Registers an accepted connection as `spec` says.
    pub fn register_with(
        &self,
        spec: ConnSpec,
        greeting: impl FnOnce(&Conn) -> Option<OutFrame>,
    ) -> Arc<Conn> {
        let (key, generated) = self.new_wire_id();
        let wire_id = spec.wire_id.unwrap_or(generated);
        let user: Arc<str> = match spec.user {
            Some(u) if !u.is_empty() => u.into(),
            _ => format!("anon-{wire_id}").into(),
        };
        let conn = Arc::new(Conn {
            key,
            wire_id,
            user: user.clone(),
            ns: spec.ns,
            transport: spec.transport,
            outbox: spec
                .outbox
                .unwrap_or_else(|| Arc::new(Outbox::new(self.inner.config.queue_limit))),
            rooms: Mutex::new(Vec::new()),
            awaiting_pong: AtomicBool::new(false),
            expires_at: AtomicU64::new(0),
            grants: OnceLock::new(),
            closer: OnceLock::new(),
            frames: OnceLock::new(),
            since: super::now_ms(),
            address: spec.address,
        });
        if let Some(frame) = greeting(&conn) {
            conn.outbox.push_unbounded(frame);
        }
        self.inner.conns.shard(&key).insert(key, conn.clone());
        {
            let mut wire = self.inner.wire.shard(&*conn.wire_id);
            // A connection is also the room named by its id, for the other servers (once:
            // a recovered Socket.IO session takes its id over from the old connection).
            if wire.insert(conn.wire_id.clone(), conn.clone()).is_none() {
                self.room_changed(&conn.ns, &conn.wire_id, true);
            }
        }
        self.inner
            .users
            .shard(&user)
            .entry(user)
            .or_default()
            .push(conn.clone());
        if conn.transport != Transport::SocketIo {
            // Socket.IO counts Engine.IO sessions, not namespace sockets.
            self.inner.stats.connection_opened(conn.transport);
        }
        let hooks: Vec<ConnHook> = self.hooks().on_connect.clone();
        for h in hooks {
            h(self, &conn);
        }
        conn
    }

    /// Removes a connection: it leaves its rooms (presence follows) and its user.
    pub fn unregister(&self, conn: &Arc<Conn>) {
        if self
            .inner
            .conns
            .shard(&conn.key)
            .remove(&conn.key)
            .is_none()
        {
            return;
        }
        {
            let mut wire = self.inner.wire.shard(&*conn.wire_id);
            if wire.get(&conn.wire_id).is_some_and(|c| c.key == conn.key) {
                wire.remove(&conn.wire_id);
                self.room_changed(&conn.ns, &conn.wire_id, false);
            }
        }
        let rooms = std::mem::take(&mut *lock(&conn.rooms));
        for room in rooms {
            self.leave_room(conn, &room, false);
        }
        {
            let mut users = self.inner.users.shard(&conn.user);
            if let Some(list) = users.get_mut(&conn.user) {
                list.retain(|c| c.key != conn.key);
                if list.is_empty() {
                    users.remove(&conn.user);
                }
            }
        }
        if conn.transport != Transport::SocketIo {
            self.inner.stats.connection_closed(conn.transport);
        }
        let hooks: Vec<ConnHook> = self.hooks().on_disconnect.clone();
        for h in hooks {
            h(self, conn);
        }
    }

    /// A connection by key.
    pub fn conn(&self, id: ConnId) -> Option<Arc<Conn>> {
        self.inner.conns.shard(&id).get(&id).cloned()
    }

    /// Open connections on this node (v1 connections and Socket.IO sockets).
    pub fn connection_count(&self) -> usize {
        self.inner.conns.all().map(|s| s.len()).sum()
    }

    /// Every connection on this node (v1 connections and Socket.IO sockets of every
    /// namespace), for tools that list them (the admin UI).
    pub fn connections(&self) -> Vec<Arc<Conn>> {
        self.all_conns()
    }

    pub(super) fn all_conns(&self) -> Vec<Arc<Conn>> {
        self.inner
            .conns
            .all()
            .flat_map(|s| s.values().cloned().collect::<Vec<_>>())
            .collect()
    }
}
