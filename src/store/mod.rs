//! The durable tier behind the hub's history and the services' notifications (DESIGN.md,
//! "Layers": store; "Durability").
//!
//! The hub keeps each history room's latest messages in memory and serves every replay and
//! history page from there; a [`Store`] gets a copy of what the hub appends, of the rooms
//! created through the API and of deletions, and gives it all back at start
//! ([`Snapshot`]), so rooms, their settings, their `seq` counters and their kept messages
//! survive a restart. The notification service keeps its notifications and read marks the
//! same way.
//!
//! Writes never make delivery wait: they are queued to the store's own thread, which commits
//! whatever has queued up in one transaction (group commit) and then calls each write's
//! [`Done`], so the acknowledgement of a message can wait for its commit while its live
//! delivery does not. A write the store cannot take (its queue is full, or the store is
//! down) is refused at once with a [`StoreError`], never dropped silently.
//!
//! The store sits below the hub: it keeps rows ([`RoomRow`], [`MessageRow`],
//! [`NotificationRow`]) and knows nothing of deliveries; the hub turns its messages into rows
//! and back ([`crate::hub::persist`]).
//!
//! [`sqlite::SqliteStore`] is the embedded default (`store = "sqlite"`, file `db`).

pub mod health;
pub mod sqlite;

use std::sync::Arc;

use bytes::Bytes;

/// Why the store did not take or keep a write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Its queue is full: the disk is not keeping up.
    #[error("the store is not keeping up; retry later")]
    Busy,
    /// It cannot write (a read-only, corrupt or full file, an I/O error): the reason.
    #[error("the store is unavailable: {0}")]
    Down(Arc<str>),
}

/// Called once with the fate of a write: `Ok` once it is committed, `Err` when it was lost.
/// It runs on the store's thread, so it must only queue work (push to an outbox, wake a task).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// How much of a room's history the store keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// The latest this many messages.
    pub count: usize,
    /// Only messages younger than this, in milliseconds; 0 keeps them whatever their age.
    pub max_age_ms: u64,
}

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
    /// The user it was addressed to (direct messages).
    pub to: Option<Arc<str>>,
    /// How `data` and `attachments` are to be read (the hub's encoding).
    pub kind: u8,
    /// The payload.
    pub data: Bytes,
    /// Attachments, when `kind` has them.
    pub attachments: Bytes,
}

/// A stored notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRow {
    /// Its id, unique and increasing.
    pub id: u64,
    /// The user it is for; `None` for a notification to everyone.
    pub user: Option<Arc<str>>,
    /// Its event name.
    pub event: Arc<str>,
    /// Its payload, JSON text.
    pub data: Bytes,
    /// When it was made, ms since the epoch.
    pub ts: u64,
    /// Whether its user has read it (for a notification to everyone, see
    /// [`Snapshot::reads`]).
    pub read: bool,
}

/// Notifications a user has read: their own (marked in place) and ones to everyone
/// (remembered per user).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadMarks {
    /// The reader.
    pub user: Arc<str>,
    /// Ids of the user's own notifications now read.
    pub own: Vec<u64>,
    /// Ids of notifications to everyone now read by this user.
    pub shared: Vec<u64>,
}

/// Everything a store holds, read back at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// How far numbering must jump past what is stored: writes the last run may have
    /// delivered live but never committed (it did not shut down cleanly), whose `seq`s and
    /// notification ids must not be given again. Zero after a clean shutdown.
    pub margin: u64,
    /// Rooms with their kept messages.
    pub rooms: Vec<RoomRow>,
    /// Notifications, oldest first.
    pub notifications: Vec<NotificationRow>,
    /// Which notifications to everyone each user has read: `(user, id)`.
    pub reads: Vec<(Arc<str>, u64)>,
}

/// Where the hub's rooms and history, and the services' notifications, are kept between
/// runs.
///
/// The hub calls these methods while it holds a room's lock, in `seq` order: they must
/// only queue the work. Each returns an error when the write was refused (the store is
/// down or cannot keep up); the caller answers `unavailable` and counts it
/// (`hubbub_store_dropped_total`). A write that was taken and then failed reaches its
/// [`Done`] with the error, and is counted by the store ([`Store::dropped_total`]).
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `Ok` while the store takes writes; the reason it does not otherwise. Cheap: checked
    /// before every write to a history room.
    fn health(&self) -> Result<(), StoreError>;

    /// Remembers a room created through the API, with its settings (JSON).
    fn save_room(
        &self,
        ns: &str,
        name: &str,
        settings: String,
        done: Option<Done>,
    ) -> Result<(), StoreError>;

    /// Forgets a room and its messages.
    fn delete_room(&self, ns: &str, name: &str, done: Option<Done>) -> Result<(), StoreError>;

    /// Appends a history message; its room keeps what `keep` says. `done` learns when the
    /// message is committed.
    fn append(&self, row: MessageRow, keep: Keep, done: Option<Done>) -> Result<(), StoreError>;

    /// Stores a notification; the user (or everyone, for a shared one) keeps the latest
    /// `keep`.
    fn put_notification(
        &self,
        row: NotificationRow,
        keep: usize,
        done: Option<Done>,
    ) -> Result<(), StoreError>;

    /// Marks notifications read.
    fn mark_read(&self, marks: ReadMarks, done: Option<Done>) -> Result<(), StoreError>;

    /// Waits until everything queued so far is committed (or known lost).
    fn flush(&self);

    /// Flushes, and records that this run ended cleanly (see [`Snapshot::margin`]).
    fn close(&self) {
        self.flush();
    }

    /// Writes taken and then lost so far (`hubbub_store_lost_total`; refusals are counted by
    /// whoever was refused, in `hubbub_store_dropped_total`).
    fn dropped_total(&self) -> u64 {
        0
    }
}
