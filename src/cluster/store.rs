//! The Redis store (`store = "redis"`): the [`Store`] the hub writes its rooms to when the
//! cluster keeps history ([`super::kept`]). History messages never come here: the cluster's
//! numbering script keeps them as it publishes them. Rooms made and deleted through the API
//! go to Redis (and to the other nodes); `health` says whether history can be used now.
//! Notifications are not kept here (each node keeps its own in its SQLite file, `db`).

use std::sync::Arc;

use super::RedisAdapter;
use crate::hub::Adapter;
use crate::store::{Done, Keep, MessageRow, NotificationRow, ReadMarks, Store, StoreError};

/// Rooms kept in Redis, for a cluster that keeps history there.
#[derive(Debug)]
pub struct RedisStore {
    adapter: Arc<RedisAdapter>,
}

impl RedisStore {
    /// The store of the cluster `adapter` belongs to (started with `keep_history`).
    pub fn new(adapter: Arc<RedisAdapter>) -> Self {
        Self { adapter }
    }
}

fn down(e: &crate::error::HubError) -> StoreError {
    StoreError::Down(e.message.as_str().into())
}

/// A store callback as the cluster's replies call it.
fn reply(done: Option<Done>) -> Box<dyn FnOnce(Result<(), crate::error::HubError>) + Send> {
    Box::new(move |r| {
        if let Some(done) = done {
            done(r.map_err(|e| down(&e)));
        }
    })
}

impl Store for RedisStore {
    fn health(&self) -> Result<(), StoreError> {
        self.adapter.history_health().map_err(|e| down(&e))
    }

    fn save_room(
        &self,
        ns: &str,
        name: &str,
        settings: String,
        done: Option<Done>,
    ) -> Result<(), StoreError> {
        self.adapter
            .save_room(ns, name, settings, reply(done))
            .map_err(|e| down(&e))
    }

    fn delete_room(&self, ns: &str, name: &str, done: Option<Done>) -> Result<(), StoreError> {
        self.adapter
            .delete_room(ns, name, reply(done))
            .map_err(|e| down(&e))
    }

    /// Never called: the cluster keeps history messages as it publishes them.
    fn append(&self, _row: MessageRow, _keep: Keep, _done: Option<Done>) -> Result<(), StoreError> {
        Err(StoreError::Down(
            "history is kept by the cluster, not appended".into(),
        ))
    }

    /// Not kept here: notifications stay in each node's own store.
    fn put_notification(
        &self,
        _row: NotificationRow,
        _keep: usize,
        _done: Option<Done>,
    ) -> Result<(), StoreError> {
        Err(StoreError::Down(
            "notifications are kept by each node's own store".into(),
        ))
    }

    /// Not kept here: notifications stay in each node's own store.
    fn mark_read(&self, _marks: ReadMarks, _done: Option<Done>) -> Result<(), StoreError> {
        Err(StoreError::Down(
            "notifications are kept by each node's own store".into(),
        ))
    }

    fn flush(&self) {}
}
