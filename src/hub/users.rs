//! Users: who is online, a user's connections, and closing them (the HTTP API's disconnect,
//! the single-session policy).

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use super::conn::Conn;
use super::Hub;

/// An online user, as the BFF's "who is online" shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OnlineUser {
    /// The user.
    pub user: String,
    /// Their open connections (tabs, devices).
    pub connections: usize,
    /// When the oldest of them was opened, ms since the epoch.
    pub since: u64,
}

/// One of a user's connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The connection id (the Socket.IO socket id).
    pub conn: String,
    /// `ws` or `socketio`.
    pub transport: &'static str,
    /// The client's address, when known.
    pub address: Option<IpAddr>,
    /// When it was opened, ms since the epoch.
    pub since: u64,
}

/// The close code for connections replaced by a newer session of their user (the
/// single-session policy).
pub const REPLACED: u16 = 4409;

impl Hub {
    /// Users with at least one connection, sorted.
    pub fn users_online(&self) -> Vec<String> {
        self.online_users().into_iter().map(|u| u.user).collect()
    }

    /// Online users with their connection counts and since when, sorted by user.
    pub fn online_users(&self) -> Vec<OnlineUser> {
        let mut v: Vec<OnlineUser> = self
            .inner
            .users
            .all()
            .flat_map(|s| {
                s.iter()
                    .filter_map(|(u, c)| {
                        // Client connections only: namespaces clients reach start with `/`
                        // (an echo connection is nobody's device).
                        let devices: Vec<&Arc<Conn>> =
                            c.iter().filter(|c| c.ns.starts_with('/')).collect();
                        (!devices.is_empty()).then(|| OnlineUser {
                            user: u.to_string(),
                            connections: devices.len(),
                            since: devices.iter().map(|c| c.since).min().unwrap_or(0),
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    /// A user's connections, oldest first (none when offline).
    pub fn devices(&self, user: &str) -> Vec<Device> {
        let mut v: Vec<Device> = self
            .user_conns(user)
            .iter()
            .map(|c| Device {
                conn: c.wire_id.to_string(),
                transport: c.transport.as_str(),
                address: c.address,
                since: c.since,
            })
            .collect();
        v.sort_by_key(|d| d.since);
        v
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
        self.disconnect_user_where(user, |_| true, code, reason)
    }

    /// Closes the connections of `user` that `which` picks with `code`; returns how many.
    pub fn disconnect_user_where(
        &self,
        user: &str,
        which: impl Fn(&Conn) -> bool,
        code: u16,
        reason: &str,
    ) -> usize {
        let conns: Vec<Arc<Conn>> = self
            .user_conns(user)
            .into_iter()
            .filter(|c| which(c))
            .collect();
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
        if let Some(a) = self.adapter() {
            // The user's connections on the other nodes too.
            let q = super::Query::Disconnect {
                user: conn.user().to_string(),
                only: None,
                except: Some(conn.wire_id().to_string()),
                code,
                reason: reason.to_string(),
            };
            if a.tell(q).is_err() {
                self.inner.stats.cluster_failed();
            }
        }
        others.len()
    }
}
