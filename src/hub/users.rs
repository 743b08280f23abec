//! Users: who is online, a user's connections, and closing them (the HTTP API's disconnect,
//! the single-session policy).

use std::sync::Arc;

use super::conn::Conn;
use super::Hub;

/// The close code for connections replaced by a newer session of their user (the
/// single-session policy).
pub const REPLACED: u16 = 4409;

impl Hub {
    /// Users with at least one connection, sorted.
    pub fn users_online(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .inner
            .users
            .all()
            .flat_map(|s| s.keys().map(|u| u.to_string()).collect::<Vec<_>>())
            .collect();
        users.sort();
        users
    }

    /// Connections per online user, sorted by user.
    pub fn connections_per_user(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .inner
            .users
            .all()
            .flat_map(|s| {
                s.iter()
                    .map(|(u, c)| (u.to_string(), c.len()))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    }

    /// Whether a user has any connection.
    pub fn is_online(&self, user: &str) -> bool {
        self.inner.users.shard(user).contains_key(user)
    }

    /// Closes every connection of `user` with `code`; returns how many.
    pub fn disconnect_user(&self, user: &str, code: u16, reason: &str) -> usize {
        let conns = self.user_conns(user);
        for c in &conns {
            c.close(code, reason);
        }
        conns.len()
    }

    pub(super) fn user_conns(&self, user: &str) -> Vec<Arc<Conn>> {
        self.inner
            .users
            .shard(user)
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Closes the other connections of `conn`'s user with `code` (the single-session
    /// policy), except those sharing its outbox (the other namespaces of one Socket.IO
    /// session). Returns how many were closed.
    pub fn close_others(&self, conn: &Arc<Conn>, code: u16, reason: &str) -> usize {
        let others: Vec<Arc<Conn>> = self
            .user_conns(conn.user())
            .into_iter()
            .filter(|c| c.key != conn.key && !Arc::ptr_eq(&c.outbox, &conn.outbox))
            .collect();
        for c in &others {
            c.close(code, reason);
        }
        others.len()
    }
}
