//! The embedded store: one SQLite file (`db`), written by a thread of its own.
//!
//! The hub's calls queue operations on a bounded channel and return at once; the thread
//! takes whatever has queued up and applies it in one transaction, then trims each room it
//! appended to down to its `keep` latest messages. The file is in WAL mode with
//! `synchronous = NORMAL`: a committed batch survives a crash of the process, and a power
//! loss can cost at most the last batches. If the queue is full (the disk cannot keep up)
//! messages are still delivered and kept in memory, but not stored; that is logged.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::{MessageRow, RoomRow, Store};

/// Operations queued at most before new ones are dropped.
const QUEUE: usize = 65_536;
/// Operations applied in one transaction at most.
const BATCH: usize = 4_096;
/// Tries to write one batch at most.
const ATTEMPTS: u32 = 3;
/// Pause between batches.
const GATHER: Duration = Duration::from_millis(5);
/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    ns       TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    settings TEXT,               -- JSON RoomSettings of a room created through the API
    last_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ns, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    ns          TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    sender      TEXT,
    kind        INTEGER NOT NULL, -- 0 JSON, 1 binary, 2 Socket.IO arguments
    data        BLOB    NOT NULL,
    attachments BLOB    NOT NULL,
    PRIMARY KEY (ns, room, seq)
) WITHOUT ROWID;
";

enum Op {
    Room {
        ns: String,
        name: String,
        settings: String,
    },
    Delete {
        ns: String,
        name: String,
    },
    Append {
        row: MessageRow,
        keep: usize,
    },
    Flush(SyncSender<()>),
}

/// Rooms and history in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    tx: SyncSender<Op>,
    dropped: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl SqliteStore {
    /// Opens (or creates) the file, reads back every stored room, and starts the writer.
    pub fn open(path: &Path) -> Result<(Self, Vec<RoomRow>), String> {
        Self::open_with_queue(path, QUEUE)
    }

    fn open_with_queue(path: &Path, queue: usize) -> Result<(Self, Vec<RoomRow>), String> {
        let fail = |e: rusqlite::Error| format!("db {}: {e}", path.display());
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("db {}: journal mode {mode}, not WAL", path.display());
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "db {}: written by a newer Hubbub (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            ));
        }
        conn.execute_batch(SCHEMA).map_err(fail)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail)?;
        let rooms = load(&conn).map_err(fail)?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let name = path.display().to_string();
        std::thread::Builder::new()
            .name("hubbub-store".into())
            .spawn(move || write_loop(conn, rx, &name))
            .map_err(|e| format!("db {}: cannot start its writer: {e}", path.display()))?;
        Ok((
            Self {
                tx,
                dropped: AtomicU64::new(0),
                last_warning: Mutex::new(None),
            },
            rooms,
        ))
    }

    /// Messages not stored because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn queue(&self, op: Op) -> bool {
        match self.tx.try_send(op) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        "store: the disk is not keeping up; {n} writes dropped so far \
                         (delivered and kept in memory, not on disk)"
                    );
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("store: the writer has stopped; nothing is stored any more");
                false
            }
        }
    }
}

impl Store for SqliteStore {
    fn save_room(&self, ns: &str, name: &str, settings: String) -> bool {
        self.queue(Op::Room {
            ns: ns.to_string(),
            name: name.to_string(),
            settings,
        })
    }

    fn delete_room(&self, ns: &str, name: &str) -> bool {
        self.queue(Op::Delete {
            ns: ns.to_string(),
            name: name.to_string(),
        })
    }

    fn append(&self, row: MessageRow, keep: usize) -> bool {
        self.queue(Op::Append { row, keep })
    }

    fn flush(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        // Blocks while the queue is full: a flush must come after everything before it.
        if self.tx.send(Op::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

/// Every stored room with its messages, oldest first.
fn load(conn: &Connection) -> rusqlite::Result<Vec<RoomRow>> {
    let mut rooms: Vec<RoomRow> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut stmt = conn.prepare("SELECT ns, name, settings, last_seq FROM rooms")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (ns, name): (String, String) = (row.get(0)?, row.get(1)?);
        index.insert((ns.clone(), name.clone()), rooms.len());
        rooms.push(RoomRow {
            ns,
            name,
            settings: row.get(2)?,
            last_seq: row.get::<_, i64>(3)?.max(0) as u64,
            messages: Vec::new(),
        });
    }
    let mut stmt = conn.prepare(
        "SELECT ns, room, seq, ts, event, sender, kind, data, attachments FROM messages \
         ORDER BY ns, room, seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: String| {
        names
            .entry(s)
            .or_insert_with_key(|k| k.as_str().into())
            .clone()
    };
    while let Some(row) = rows.next()? {
        let key: (String, String) = (row.get(0)?, row.get(1)?);
        let Some(&i) = index.get(&key) else { continue };
        let (ns, room) = key;
        rooms[i].messages.push(MessageRow {
            ns: intern(ns),
            room: intern(room),
            seq: row.get::<_, i64>(2)?.max(0) as u64,
            ts: row.get::<_, i64>(3)?.max(0) as u64,
            event: intern(row.get(4)?),
            from: row.get::<_, Option<String>>(5)?.map(&mut intern),
            kind: u8::try_from(row.get::<_, i64>(6)?).unwrap_or(u8::MAX),
            data: Bytes::from(row.get::<_, Vec<u8>>(7)?),
            attachments: Bytes::from(row.get::<_, Vec<u8>>(8)?),
        });
    }
    Ok(rooms)
}

fn write_loop(mut conn: Connection, rx: Receiver<Op>, name: &str) {
    let mut batch = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // A busy or briefly failing disk gets a few more chances (SQLite itself waits up
        // to its busy timeout each time) before the batch is given up.
        for attempt in 1..=ATTEMPTS {
            match apply(&mut conn, &batch) {
                Ok(()) => break,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!("store {name}: writing a batch failed ({e}); retrying");
                    std::thread::sleep(GATHER * 20 * attempt);
                }
                Err(e) => {
                    let n = batch.len();
                    tracing::error!("store {name}: {n} writes lost: {e}");
                }
            }
        }
        for op in batch.drain(..) {
            if let Op::Flush(done) = op {
                let _ = done.send(());
            }
        }
        // Let the next batch gather: while this thread sleeps, queuing a write is a push
        // onto the channel, with no wake-up (a futex call and a context switch) per message.
        std::thread::sleep(GATHER);
    }
    // Every sender is gone: the queue is drained and the connection closes here.
}

fn apply(conn: &mut Connection, batch: &[Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    // Rooms appended to: the last seq and how many to keep.
    let mut trims: HashMap<(Arc<str>, Arc<str>), (u64, usize)> = HashMap::new();
    {
        let mut put_room = tx.prepare_cached(
            "INSERT INTO rooms (ns, name, settings) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ns, name) DO UPDATE SET settings = excluded.settings",
        )?;
        let mut seen = tx.prepare_cached(
            "INSERT INTO rooms (ns, name, last_seq) VALUES (?1, ?2, ?3) \
             ON CONFLICT (ns, name) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO messages \
             (ns, room, seq, ts, event, sender, kind, data, attachments) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for op in batch {
            match op {
                Op::Room { ns, name, settings } => {
                    put_room.execute(params![ns, name, settings])?;
                }
                Op::Delete { ns, name } => {
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
                Op::Append { row, keep } => {
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
                    ])?;
                    trims.insert((row.ns.clone(), row.room.clone()), (row.seq, *keep));
                }
                Op::Flush(_) => {}
            }
        }
        // Once per room and batch: its counter, then its trim.
        let mut trim =
            tx.prepare_cached("DELETE FROM messages WHERE ns = ?1 AND room = ?2 AND seq <= ?3")?;
        for ((ns, room), (last, keep)) in &trims {
            seen.execute(params![&**ns, &**room, *last as i64])?;
            if let Some(cut) = last.checked_sub(*keep as u64) {
                trim.execute(params![&**ns, &**room, cut as i64])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64) -> MessageRow {
        MessageRow {
            ns: "/".into(),
            room: "r".into(),
            seq,
            ts: 1,
            event: "e".into(),
            from: None,
            kind: 0,
            data: Bytes::from_static(b"1"),
            attachments: Bytes::new(),
        }
    }

    fn stored(path: &Path) -> Vec<u64> {
        let (_, rooms) = SqliteStore::open(path).unwrap();
        rooms
            .iter()
            .flat_map(|r| r.messages.iter().map(|m| m.seq))
            .collect()
    }

    /// Another connection holding the write lock, as a busy or slow disk would.
    fn locked(path: &Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    #[test]
    fn a_busy_file_delays_writes_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open(&path).unwrap();
        let other = locked(&path);
        for seq in 1..=100 {
            assert!(store.append(row(seq), 1000));
        }
        std::thread::sleep(Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
        store.flush();
        assert_eq!(stored(&path), (1..=100).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_drops_writes_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open_with_queue(&path, 4).unwrap();
        let other = locked(&path);
        let accepted: Vec<u64> = (1..=50)
            .filter(|&seq| store.append(row(seq), 1000))
            .collect();
        assert!(accepted.len() < 50, "{accepted:?}");
        assert_eq!(store.dropped(), 50 - accepted.len() as u64);
        other.execute_batch("COMMIT").unwrap();
        store.flush();
        // What was accepted is on disk; nothing else.
        assert_eq!(stored(&path), accepted);
    }

    #[test]
    fn rooms_are_trimmed_and_deleted_in_order_within_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open(&path).unwrap();
        for seq in 1..=10 {
            store.append(row(seq), 3);
        }
        store.flush();
        assert_eq!(stored(&path), vec![8, 9, 10]);
        // Deleted, then written again in the same batch: only the new messages remain,
        // and the room's counter starts over.
        store.delete_room("/", "r");
        store.append(row(1), 3);
        store.flush();
        let (_, rooms) = SqliteStore::open(&path).unwrap();
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].last_seq, 1);
        assert_eq!(rooms[0].messages.len(), 1);
        assert_eq!(rooms[0].settings, None);
    }
}
