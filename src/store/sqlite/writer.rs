//! The writer thread: takes whatever has queued up, applies it in one transaction, commits,
//! then tells each write's [`Done`] (group commit). A batch that keeps failing marks the store
//! down and its writes lost (their callers hear `unavailable`); while down, the thread probes
//! the file every [`PROBE`] and marks the store up once a write succeeds again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};

use super::schema::{self, Unusable};
use crate::store::health::Health;
use crate::store::{Done, Keep, MessageRow, NotificationRow, ReadMarks, StoreError};

/// Operations applied in one transaction at most.
pub(super) const BATCH: usize = 4_096;
/// Tries to write one batch at most.
const ATTEMPTS: u32 = 3;
/// Pause before the next batch when this one was large: the next one gathers meanwhile, with
/// no wake-up per queued write. After a small batch the thread goes straight back to waiting,
/// so an acknowledgement waits for one commit, not for a pause.
const GATHER: Duration = Duration::from_micros(500);
/// A batch at least this large is followed by a [`GATHER`] pause.
const LARGE_BATCH: usize = 32;
/// How often a store that is down tries to write again.
pub(super) const PROBE: Duration = Duration::from_secs(1);

/// One queued operation.
pub(super) enum Op {
    Room {
        ns: String,
        name: String,
        settings: String,
        done: Option<Done>,
    },
    Delete {
        ns: String,
        name: String,
        done: Option<Done>,
    },
    Append {
        row: MessageRow,
        keep: Keep,
        done: Option<Done>,
    },
    Notification {
        row: NotificationRow,
        keep: usize,
        done: Option<Done>,
    },
    Read {
        marks: ReadMarks,
        done: Option<Done>,
    },
    /// Answered once everything before it is committed; with `close`, the run is then
    /// marked as ended cleanly.
    Flush { done: SyncSender<()>, close: bool },
}

/// The writer's connection: open, or not yet (the file could not be opened at all).
pub(super) struct Writer {
    pub(super) path: PathBuf,
    pub(super) conn: Option<Connection>,
    pub(super) health: Arc<Health>,
    /// The file is from a newer Hubbub: never write to it.
    pub(super) frozen: bool,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Op>) {
        let mut batch: Vec<Op> = Vec::with_capacity(64);
        loop {
            let first = if self.health.is_up() {
                match rx.recv() {
                    Ok(op) => Some(op),
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(PROBE) {
                    Ok(op) => Some(op),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            if let Some(op) = first {
                batch.push(op);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
            }
            if !self.health.is_up() {
                self.probe();
            }
            let large = batch.len() >= LARGE_BATCH;
            self.write(&mut batch);
            if large {
                std::thread::sleep(GATHER);
            }
        }
        // Every sender is gone: the queue is drained and the connection closes here.
    }

    /// Writes a batch (or fails it, while the store is down) and tells everyone waiting.
    fn write(&mut self, batch: &mut Vec<Op>) {
        if batch.is_empty() {
            return;
        }
        let outcome = match (&mut self.conn, self.health.check()) {
            (Some(conn), Ok(())) => {
                let path = &self.path;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    apply_with_retries(conn, batch, path)
                }))
                .unwrap_or_else(|_| Err(StoreError::Down("the writer panicked".into())))
            }
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Down("the file is not open".into())),
        };
        if let Err(StoreError::Down(reason)) = &outcome {
            self.health.down(reason);
        }
        let writes = batch
            .iter()
            .filter(|op| !matches!(op, Op::Flush { .. }))
            .count();
        if outcome.is_err() && writes > 0 {
            tracing::error!(
                "store {}: {writes} writes lost: {}",
                self.path.display(),
                outcome
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            );
            self.health.dropped(writes as u64);
        }
        for op in batch.drain(..) {
            let done = match op {
                Op::Append { done, .. }
                | Op::Notification { done, .. }
                | Op::Read { done, .. }
                | Op::Room { done, .. }
                | Op::Delete { done, .. } => done,
                Op::Flush { done, close } => {
                    if close && outcome.is_ok() {
                        if let Some(Err(e)) = self.conn.as_ref().map(schema::end_run) {
                            tracing::warn!("store {}: {e}", self.path.display());
                        }
                    }
                    let _ = done.send(());
                    None
                }
            };
            if let Some(done) = done {
                // A callback only queues work; one that panics must not take the writer,
                // and every later acknowledgement, with it.
                let outcome = outcome.clone();
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| done(outcome))).is_err()
                {
                    tracing::error!("store {}: a commit callback panicked", self.path.display());
                }
            }
        }
    }

    /// Tries to make the file writable again: opens it if it never was, prepares the tables,
    /// and writes one row. Marks the store up on success.
    fn probe(&mut self) {
        if self.frozen {
            return;
        }
        if self.conn.is_none() {
            match schema::connect(&self.path) {
                Ok(c) => self.conn = Some(c),
                Err(Unusable::Failed(e) | Unusable::Newer(e)) => return self.health.down(&e),
            }
        }
        let Some(conn) = &self.conn else { return };
        let result = schema::prepare(conn).and_then(|()| {
            conn.execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('probe', ?1)",
                params![crate::hub::now_ms() as i64],
            )
            .map(|_| ())
            .map_err(|e| Unusable::Failed(e.to_string()))
        });
        match result {
            Ok(()) => self.health.up(),
            Err(Unusable::Newer(e)) => {
                self.frozen = true;
                self.health.down(&e);
            }
            Err(Unusable::Failed(e)) => self.health.down(&e),
        }
    }
}

fn apply_with_retries(
    conn: &mut Connection,
    batch: &[Op],
    path: &std::path::Path,
) -> Result<(), StoreError> {
    // A busy or briefly failing disk gets a few more chances (SQLite itself waits up to its
    // busy timeout each time) before the batch is given up.
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match apply(conn, batch) {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = e.to_string();
                if attempt < ATTEMPTS {
                    tracing::warn!(
                        "store {}: writing a batch failed ({e}); retrying",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(50) * attempt);
                }
            }
        }
    }
    Err(StoreError::Down(last.into()))
}

fn apply(conn: &mut Connection, batch: &[Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    // Rooms appended to (namespace, name): the last seq, its time, and what to keep.
    type Room = (Arc<str>, Arc<str>);
    let mut trims: HashMap<Room, (u64, u64, Keep)> = HashMap::new();
    // Users (or everyone, `None`) given notifications: how many to keep.
    let mut kept: HashMap<Option<Arc<str>>, usize> = HashMap::new();
    {
        let mut put_room = tx.prepare_cached(
            "INSERT INTO rooms (ns, name, settings) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ns, name) DO UPDATE SET settings = excluded.settings",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO messages \
             (ns, room, seq, ts, event, sender, kind, data, attachments, recipient) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut notify = tx.prepare_cached(
            "INSERT OR REPLACE INTO notifications (id, user, event, data, ts, read) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut read_own =
            tx.prepare_cached("UPDATE notifications SET read = 1 WHERE id = ?1 AND user = ?2")?;
        let mut read_shared = tx.prepare_cached(
            "INSERT OR IGNORE INTO notification_reads (user, id) VALUES (?1, ?2)",
        )?;
        for op in batch {
            match op {
                Op::Room {
                    ns, name, settings, ..
                } => {
                    put_room.execute(params![ns, name, settings])?;
                }
                Op::Delete { ns, name, .. } => {
                    tx.execute(
                        "DELETE FROM messages WHERE ns = ?1 AND room = ?2",
                        params![ns, name],
                    )?;
                    tx.execute(
                        "DELETE FROM rooms WHERE ns = ?1 AND name = ?2",
                        params![ns, name],
                    )?;
                    trims.remove(&(Arc::from(ns.as_str()), Arc::from(name.as_str())));
                }
                Op::Append { row, keep, .. } => {
                    insert.execute(params![
                        &*row.ns,
                        &*row.room,
                        row.seq as i64,
                        row.ts as i64,
                        &*row.event,
                        row.from.as_deref(),
                        row.kind,
                        &row.data[..],
                        &row.attachments[..],
                        row.to.as_deref(),
                    ])?;
                    trims.insert((row.ns.clone(), row.room.clone()), (row.seq, row.ts, *keep));
                }
                Op::Notification { row, keep, .. } => {
                    notify.execute(params![
                        row.id as i64,
                        row.user.as_deref(),
                        &*row.event,
                        &row.data[..],
                        row.ts as i64,
                        row.read as i64,
                    ])?;
                    kept.insert(row.user.clone(), *keep);
                }
                Op::Read { marks, .. } => {
                    for id in &marks.own {
                        read_own.execute(params![*id as i64, &*marks.user])?;
                    }
                    for id in &marks.shared {
                        read_shared.execute(params![&*marks.user, *id as i64])?;
                    }
                }
                Op::Flush { .. } => {}
            }
        }
        // Once per room and batch: its counter, then its trim by count and by age.
        let mut seen = tx.prepare_cached(
            "INSERT INTO rooms (ns, name, last_seq) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ns, name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
        )?;
        // Both trims walk the primary key from the oldest message: by count, a range; by
        // age, the oldest few (messages age in seq order, so repeated batches catch up).
        let mut trim =
            tx.prepare_cached("DELETE FROM messages WHERE ns = ?1 AND room = ?2 AND seq <= ?3")?;
        let mut expire = tx.prepare_cached(
            "DELETE FROM messages WHERE ns = ?1 AND room = ?2 AND ts < ?3 AND seq IN \
             (SELECT seq FROM messages WHERE ns = ?1 AND room = ?2 ORDER BY seq LIMIT 256)",
        )?;
        for ((ns, room), (last, ts, keep)) in &trims {
            seen.execute(params![&**ns, &**room, *last as i64])?;
            let cut = last.saturating_sub(keep.count as u64);
            if cut > 0 {
                trim.execute(params![&**ns, &**room, cut as i64])?;
            }
            if keep.max_age_ms > 0 {
                let oldest = ts.saturating_sub(keep.max_age_ms);
                expire.execute(params![&**ns, &**room, oldest as i64])?;
            }
        }
        let mut trim_user = tx.prepare_cached(
            "DELETE FROM notifications WHERE user IS ?1 AND id NOT IN \
             (SELECT id FROM notifications WHERE user IS ?1 ORDER BY id DESC LIMIT ?2)",
        )?;
        for (user, keep) in &kept {
            trim_user.execute(params![user.as_deref(), *keep as i64])?;
        }
        if kept.contains_key(&None) {
            tx.execute(
                "DELETE FROM notification_reads WHERE id NOT IN \
                 (SELECT id FROM notifications WHERE user IS NULL)",
                [],
            )?;
        }
    }
    tx.commit()
}
