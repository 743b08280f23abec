//! The Redis store (`store = "redis"`): the [`Store`] the hub writes its rooms to and the
//! notification service its notifications, when the cluster keeps them. History messages
//! never come here: the cluster's numbering script keeps them as it publishes them
//! ([`super::kept`]). Rooms made and deleted through the API go to Redis and to the other
//! nodes; notifications and read marks too ([`super::notices`]). `health` says whether the
//! node is connected and caught up.
//!
//! The store is made before the node joins the cluster (the services need it first) and
//! attached to it once it has ([`RedisStore::attach`]); until then it is down.

use std::sync::{Arc, OnceLock};

use super::RedisAdapter;
use crate::error::HubError;
use crate::hub::Adapter;
use crate::store::{Done, Keep, MessageRow, NotificationRow, ReadMarks, Store, StoreError};

/// Rooms and notifications kept in Redis, for a cluster that keeps them there.
#[derive(Debug, Default)]
pub struct RedisStore {
    adapter: OnceLock<Arc<RedisAdapter>>,
}

impl RedisStore {
    /// A store not attached to a cluster yet: down until [`Self::attach`].
    pub fn detached() -> Self {
        Self::default()
    }

    /// Attaches the store to the node's cluster (started with `keep_history`).
    pub fn attach(&self, adapter: Arc<RedisAdapter>) {
        let _ = self.adapter.set(adapter);
    }

    fn adapter(&self) -> Result<&Arc<RedisAdapter>, StoreError> {
        self.adapter
            .get()
            .ok_or_else(|| StoreError::Down("not part of a cluster yet".into()))
    }
}

fn down(e: &HubError) -> StoreError {
    StoreError::Down(e.message.as_str().into())
}

/// A store callback as the cluster's replies call it.
fn reply(done: Option<Done>) -> Box<dyn FnOnce(Result<(), HubError>) + Send> {
    Box::new(move |r| {
        if let Some(done) = done {
            done(r.map_err(|e| down(&e)));
        }
    })
}

impl Store for RedisStore {
    fn health(&self) -> Result<(), StoreError> {
        self.adapter()?.history_health().map_err(|e| down(&e))
    }

    fn save_room(
        &self,
        ns: &str,
        name: &str,
        settings: String,
        done: Option<Done>,
    ) -> Result<(), StoreError> {
        self.adapter()?
            .save_room(ns, name, settings, reply(done))
            .map_err(|e| down(&e))
    }

    fn delete_room(&self, ns: &str, name: &str, done: Option<Done>) -> Result<(), StoreError> {
        self.adapter()?
            .delete_room(ns, name, reply(done))
            .map_err(|e| down(&e))
    }

    /// Never called: the cluster keeps history messages as it publishes them.
    fn append(&self, _row: MessageRow, _keep: Keep, _done: Option<Done>) -> Result<(), StoreError> {
        Err(StoreError::Down(
            "history is kept by the cluster, not appended".into(),
        ))
    }

    fn put_notification(
        &self,
        row: NotificationRow,
        keep: usize,
        done: Option<Done>,
    ) -> Result<(), StoreError> {
        self.adapter()?
            .put_notification(&row, keep, reply(done))
            .map_err(|e| down(&e))
    }

    fn mark_read(&self, marks: ReadMarks, done: Option<Done>) -> Result<(), StoreError> {
        self.adapter()?
            .mark_read(&marks, reply(done))
            .map_err(|e| down(&e))
    }

    fn flush(&self) {}
}
