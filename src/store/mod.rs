//! The durable tier behind the hub's history (DESIGN.md, "Layers": store).
//!
//! The hub keeps each history room's latest messages in memory and serves every replay and
//! history page from there; a [`Store`] gets a copy of what the hub appends, of the rooms
//! created through the API and of deletions, and gives it all back at start, so rooms,
//! their settings, their `seq` counters and their kept messages survive a restart. Writes
//! never wait on the disk: they are queued to the store's own thread.
//!
//! The store sits below the hub: it keeps rows ([`RoomRow`], [`MessageRow`]) and knows
//! nothing of deliveries; the hub turns its messages into rows and back
//! ([`crate::hub::persist`]).
//!
//! [`sqlite::SqliteStore`] is the embedded default (`store = "sqlite"`, file `db`).

pub mod sqlite;

use std::sync::Arc;

use bytes::Bytes;

/// A room as it was stored.
#[derive(Clone, Debug)]
pub struct RoomRow {
    /// Its namespace (`/` for v1 clients and the HTTP API).
    pub ns: String,
    /// Its name.
    pub name: String,
    /// The settings (JSON, as the hub wrote them) of a room created through the API; `None`
    /// for a room that came into being on first use.
    pub settings: Option<String>,
    /// The last `seq` it gave.
    pub last_seq: u64,
    /// Its kept messages, oldest first.
    pub messages: Vec<MessageRow>,
}

/// A stored history message. Cloning one shares its strings and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    /// The room's namespace.
    pub ns: Arc<str>,
    /// The room.
    pub room: Arc<str>,
    /// Its `seq` in the room.
    pub seq: u64,
    /// When it was sent, ms since the epoch.
    pub ts: u64,
    /// The event name.
    pub event: Arc<str>,
    /// The sender, when a user sent it.
    pub from: Option<Arc<str>>,
    /// How `data` and `attachments` are to be read (the hub's encoding).
    pub kind: u8,
    /// The payload.
    pub data: Bytes,
    /// Attachments, when `kind` has them.
    pub attachments: Bytes,
}

/// Where the hub's rooms and history are kept between runs.
///
/// The hub calls these methods while it holds a room's lock, in `seq` order: they must
/// only queue the work. Each returns false when the write was dropped instead (the store
/// could not keep up); the hub counts those (`hubbub_store_dropped_total`).
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Remembers a room created through the API, with its settings (JSON).
    fn save_room(&self, ns: &str, name: &str, settings: String) -> bool;

    /// Forgets a room and its messages.
    fn delete_room(&self, ns: &str, name: &str) -> bool;

    /// Appends a history message; its room keeps the `keep` latest.
    fn append(&self, row: MessageRow, keep: usize) -> bool;

    /// Waits until everything queued so far is on disk.
    fn flush(&self);
}
