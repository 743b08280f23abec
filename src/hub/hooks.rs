//! What applications plug into the hub: ops of their own on `/ws`, connect, disconnect and
//! shutdown hooks, recorders (Socket.IO's connection state recovery), room names of their
//! own mapped onto internal rooms ([`RoomAliases`]: the services' direct messages), and
//! schemas that messages to a room must follow.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::conn::Conn;
use super::delivery::Delivery;
use super::delivery::MessageBody;
use super::emit::BroadcastOptions;
use super::room::RoomSettings;
use super::Hub;
use crate::error::HubError;

/// The future an op handler returns: the ack fields (an object), or an error.
pub type OpFuture =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, HubError>> + Send>>;
type OpHandler = Arc<dyn Fn(OpCall) -> OpFuture + Send + Sync>;
pub(super) type ConnHook = Arc<dyn Fn(&Hub, &Arc<Conn>) + Send + Sync>;
pub(super) type ShutdownHook = Arc<dyn Fn(u16, &str) + Send + Sync>;
pub(super) type KeptHook = Arc<dyn Fn(&Hub, &Arc<Delivery>) + Send + Sync>;
pub(super) type MembershipHook = Arc<dyn Fn(&Hub, &Arc<Conn>, &str, bool) + Send + Sync>;

/// Keeps what a namespace delivered so reconnecting clients can catch up (Socket.IO's
/// connection state recovery).
pub trait Recorder: Send + Sync {
    /// The offset of the next recorded message.
    fn next_offset(&self) -> Arc<str>;
    /// Stores a delivery made with `opts`.
    fn record(&self, hub: &Hub, opts: &BroadcastOptions, d: &Arc<Delivery>);
}

/// A call to an application-defined op.
#[derive(Clone, Debug)]
pub struct OpCall {
    /// The hub, to emit from the handler.
    pub hub: Hub,
    /// The calling connection.
    pub conn: Arc<Conn>,
    /// The op name.
    pub op: String,
    /// The whole client frame.
    pub frame: serde_json::Value,
}

/// A room name of the application's own, mapped onto a hub room.
#[derive(Clone, Debug)]
pub struct Alias {
    /// The hub room's name: an internal one (with [`super::room::INTERNAL_MARK`]).
    pub key: Arc<str>,
    /// The settings the room is created with.
    pub settings: RoomSettings,
    /// Whether clients may publish to it (otherwise `bad_request`).
    pub publish: bool,
}

/// Maps room names of the application's own onto the hub's internal rooms. The services'
/// direct messages map `dm:{other user}` onto the conversation of the two users, and keep
/// every message from one user to another in it.
pub trait RoomAliases: Send + Sync {
    /// For a room a client of `user` names: `None` leaves the name as it is.
    fn resolve(&self, user: &str, name: &str) -> Option<Result<Alias, HubError>>;

    /// For a message from user `from` to user `to`: the room that keeps it, if any. The
    /// message is then numbered and kept there, reaches its members, and reaches every
    /// connection of `to` as before.
    fn user_log(&self, from: &str, to: &str) -> Option<Alias>;

    /// The settings of the internal room `key` (one this mapping made), for rooms brought
    /// back from the store at start.
    fn settings_for(&self, key: &str) -> Option<RoomSettings> {
        let _ = key;
        None
    }
}

/// Checks a message for a room whose `schema` names it: the message's body, and whether a
/// client connection sent it (rather than the server's API or application code).
pub type Schema = Arc<dyn Fn(&MessageBody, bool) -> Result<(), HubError> + Send + Sync>;

#[derive(Default)]
pub(super) struct Hooks {
    pub(super) schemas: HashMap<String, Schema>,
    pub(super) ops: HashMap<String, OpHandler>,
    pub(super) on_connect: Vec<ConnHook>,
    pub(super) on_disconnect: Vec<ConnHook>,
    pub(super) on_kept: Vec<KeptHook>,
    pub(super) on_membership: Vec<MembershipHook>,
    pub(super) on_shutdown: Vec<ShutdownHook>,
    pub(super) recorders: HashMap<Arc<str>, Arc<dyn Recorder>>,
}

impl Hub {
    pub(super) fn hooks(&self) -> std::sync::RwLockReadGuard<'_, Hooks> {
        self.inner.hooks.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn hooks_mut(&self) -> std::sync::RwLockWriteGuard<'_, Hooks> {
        self.inner.hooks.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a handler for an application op (`{"op": "<name>", ...}` on `/ws`). The
    /// handler's `Ok(Some(object))` becomes the ack's fields; `Err` becomes an `error`.
    pub fn on_op<F, Fut>(&self, op: &str, handler: F)
    where
        F: Fn(OpCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<serde_json::Value>, HubError>> + Send + 'static,
    {
        let h: OpHandler = Arc::new(move |call| Box::pin(handler(call)));
        self.hooks_mut().ops.insert(op.to_string(), h);
    }

    /// The handler registered for `op`, if any.
    pub fn op_handler(&self, op: &str) -> Option<impl Fn(OpCall) -> OpFuture> {
        self.hooks().ops.get(op).cloned().map(|h| move |c| h(c))
    }

    /// Records the deliveries of namespace `ns` (not volatile ones).
    pub fn set_recorder(&self, ns: &str, recorder: Arc<dyn Recorder>) {
        self.hooks_mut().recorders.insert(ns.into(), recorder);
    }

    pub(super) fn recorder(&self, ns: &str) -> Option<Arc<dyn Recorder>> {
        self.hooks().recorders.get(ns).cloned()
    }

    /// Maps room names of the application's own onto internal rooms (once; false if set).
    pub fn set_aliases(&self, aliases: Arc<dyn RoomAliases>) -> bool {
        self.inner.aliases.set(aliases).is_ok()
    }

    /// What a client of `user` in namespace `ns` means by room `name`: `Ok(None)` for the
    /// room of that name, `Ok(Some(alias))` for an internal room.
    pub(super) fn alias(
        &self,
        ns: &str,
        user: &str,
        name: &str,
    ) -> Result<Option<Alias>, HubError> {
        match self.inner.aliases.get() {
            Some(a) if ns == "/" => a.resolve(user, name).transpose(),
            _ => Ok(None),
        }
    }

    /// The name under which `conn`'s messages of room `name` are delivered: the internal
    /// room an application maps it onto (a `dm:` conversation), or `name` itself.
    pub fn delivered_as(&self, conn: &super::Conn, name: &str) -> Result<String, HubError> {
        Ok(self
            .alias(&conn.ns, &conn.user, name)?
            .map_or_else(|| name.to_string(), |a| a.key.to_string()))
    }

    /// The settings the application gives the internal room `key`, if it knows it.
    pub(super) fn alias_settings(&self, key: &str) -> Option<RoomSettings> {
        self.inner.aliases.get()?.settings_for(key)
    }

    /// The room that keeps messages from `from` to `to`, if the application keeps them.
    pub(super) fn user_log(&self, from: &str, to: &str) -> Option<Alias> {
        self.inner.aliases.get()?.user_log(from, to)
    }

    /// Registers schema `name`: rooms whose `schema` setting names it accept only the
    /// messages `check` accepts.
    pub fn add_schema(
        &self,
        name: &str,
        check: impl Fn(&MessageBody, bool) -> Result<(), HubError> + Send + Sync + 'static,
    ) {
        self.hooks_mut()
            .schemas
            .insert(name.to_string(), Arc::new(check));
    }

    /// The names of the registered schemas, sorted.
    pub fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.hooks().schemas.keys().cloned().collect();
        names.sort();
        names
    }

    /// The schema registered as `name`.
    pub fn schema(&self, name: &str) -> Option<Schema> {
        self.hooks().schemas.get(name).cloned()
    }

    /// Runs `f` for each new connection, after it is registered.
    pub fn on_connect(&self, f: impl Fn(&Hub, &Arc<Conn>) + Send + Sync + 'static) {
        self.hooks_mut().on_connect.push(Arc::new(f));
    }

    /// Runs `f` for each connection that ends, after it left its rooms.
    pub fn on_disconnect(&self, f: impl Fn(&Hub, &Arc<Conn>) + Send + Sync + 'static) {
        self.hooks_mut().on_disconnect.push(Arc::new(f));
    }

    /// Runs `f` for each message kept in a history room (internal rooms included: a
    /// direct message), after its delivery, with no lock held. Its room's store commit may
    /// still be on its way.
    pub fn on_kept(&self, f: impl Fn(&Hub, &Arc<Delivery>) + Send + Sync + 'static) {
        self.hooks_mut().on_kept.push(Arc::new(f));
        self.inner
            .kept_hooks
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Runs `f(hub, conn, room, joined)` whenever a connection joins (`true`) or leaves
    /// (`false`) a room, with no lock held (the admin UI's `room_joined`/`room_left`).
    pub fn on_membership(&self, f: impl Fn(&Hub, &Arc<Conn>, &str, bool) + Send + Sync + 'static) {
        self.hooks_mut().on_membership.push(Arc::new(f));
        self.inner
            .membership_hooks
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Tells the `on_membership` hooks (one flag read when there are none).
    pub(super) fn membership(&self, conn: &Arc<Conn>, room: &str, joined: bool) {
        if !self
            .inner
            .membership_hooks
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let hooks: Vec<MembershipHook> = self.hooks().on_membership.clone();
        for h in hooks {
            h(self, conn, room, joined);
        }
    }

    /// Tells the `on_kept` hooks about `d` (one flag read when there are none).
    pub(super) fn kept(&self, d: &Arc<Delivery>) {
        if !self
            .inner
            .kept_hooks
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let hooks: Vec<KeptHook> = self.hooks().on_kept.clone();
        for h in hooks {
            h(self, d);
        }
    }
}
