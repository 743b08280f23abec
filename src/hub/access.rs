//! Access control in the hub: the rights a connection's credentials grant ([`Grants`]) and
//! the checks the front ends and the hub make with them.

use std::sync::Arc;

use super::conn::Conn;
use super::grants::{Grants, Right};
use super::shards::lock;
use super::users::REPLACED;
use super::Hub;
use crate::error::{ErrorCode, HubError};

impl Hub {
    /// What `conn`'s credentials allow in rooms, when they were restricted.
    pub fn grants(&self, conn: &Conn) -> Option<Arc<Grants>> {
        conn.grants.get().cloned()
    }

    /// Restricts `conn` to what `grants` allow (set once, from its credentials). Grants
    /// with `single_session` close the user's other connections with 4409.
    pub fn set_grants(&self, conn: &Arc<Conn>, grants: Grants) {
        let single = grants.single_session;
        let _ = conn.grants.set(Arc::new(grants));
        if single {
            self.close_others(conn, REPLACED, "replaced by a newer session");
        }
    }

    /// `Ok` when `conn` has `right` in `room` (of its namespace); `forbidden` otherwise.
    /// A room the application maps onto an internal one ([`super::RoomAliases`]) follows
    /// the application's rule instead: publishing to a `dm:` conversation is `bad_request`
    /// (a direct message is sent with `send`).
    pub fn authorize(&self, conn: &Conn, room: &str, right: Right) -> Result<(), HubError> {
        self.authorize_as(
            &conn.ns,
            &conn.user,
            conn.grants.get().map(|g| &**g),
            room,
            right,
        )
    }

    /// [`Self::authorize`] for a caller without a connection (a GraphQL request over HTTP):
    /// `user` in namespace `ns`, restricted to `grants` when given.
    pub fn authorize_as(
        &self,
        ns: &str,
        user: &str,
        grants: Option<&Grants>,
        room: &str,
        right: Right,
    ) -> Result<(), HubError> {
        if let Some(alias) = self.alias(ns, user, room)? {
            if right == Right::Publish && !alias.publish {
                return Err(HubError::bad_request(format!(
                    "clients do not publish to `{room}`; send to the user instead"
                )));
            }
            return Ok(());
        }
        let Some(g) = grants else {
            return Ok(());
        };
        let private = self
            .room_in(ns, room)
            .is_some_and(|r| lock(&r.state).settings.private);
        if g.allows(room, private, right) {
            Ok(())
        } else {
            Err(forbidden_in(room, right))
        }
    }

    /// `Ok` when `conn` may broadcast to its whole namespace.
    pub fn authorize_broadcast(&self, conn: &Conn) -> Result<(), HubError> {
        match conn.grants.get() {
            Some(g) if !g.broadcast => Err(HubError::new(
                ErrorCode::Forbidden,
                "broadcasting needs the `broadcast` claim",
            )),
            _ => Ok(()),
        }
    }
}

pub(super) fn forbidden_in(room: &str, right: Right) -> HubError {
    HubError::new(
        ErrorCode::Forbidden,
        format!("no `{}` right in room `{room}`", right.as_str()),
    )
}

/// Whether `c` receives `room`'s presence events (always, unless its grants say no).
pub(super) fn may_see_presence(c: &Conn, room: &str, private: bool) -> bool {
    c.grants
        .get()
        .is_none_or(|g| g.allows(room, private, Right::Presence))
}
