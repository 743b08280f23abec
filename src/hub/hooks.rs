//! What applications plug into the hub: ops of their own on `/ws`, connect, disconnect and
//! shutdown hooks, and recorders (Socket.IO's connection state recovery).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::conn::Conn;
use super::delivery::Delivery;
use super::emit::BroadcastOptions;
use super::Hub;
use crate::error::HubError;

/// The future an op handler returns: the ack fields (an object), or an error.
pub type OpFuture =
    Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, HubError>> + Send>>;
type OpHandler = Arc<dyn Fn(OpCall) -> OpFuture + Send + Sync>;
pub(super) type ConnHook = Arc<dyn Fn(&Hub, &Arc<Conn>) + Send + Sync>;
pub(super) type ShutdownHook = Arc<dyn Fn(u16, &str) + Send + Sync>;

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

#[derive(Default)]
pub(super) struct Hooks {
    pub(super) ops: HashMap<String, OpHandler>,
    pub(super) on_connect: Vec<ConnHook>,
    pub(super) on_disconnect: Vec<ConnHook>,
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

    /// Runs `f` for each new connection, after it is registered.
    pub fn on_connect(&self, f: impl Fn(&Hub, &Arc<Conn>) + Send + Sync + 'static) {
        self.hooks_mut().on_connect.push(Arc::new(f));
    }

    /// Runs `f` for each connection that ends, after it left its rooms.
    pub fn on_disconnect(&self, f: impl Fn(&Hub, &Arc<Conn>) + Send + Sync + 'static) {
        self.hooks_mut().on_disconnect.push(Arc::new(f));
    }
}
