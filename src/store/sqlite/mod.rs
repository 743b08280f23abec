//! The embedded store: one SQLite file (`db`), written by a thread of its own.
//!
//! The hub's calls queue operations on a bounded channel and return at once; the writer
//! thread (`writer`) commits whatever has queued up in one transaction, trims each room it
//! appended to, and only then tells each write's caller (group commit: an acknowledged
//! message is on disk, and its live delivery never waited for it). The file is in WAL mode
//! with `synchronous = NORMAL`: a committed batch survives a crash of the process, and a
//! power loss can cost at most the last batches (`schema`).
//!
//! A file that cannot be written (read-only, corrupt, on a full disk) does not stop the
//! server: the store says it is down ([`Health`]), writes are refused with a reason the
//! callers turn into `unavailable`, and the writer keeps probing the file until it can write
//! again. A full queue (the disk not keeping up) refuses writes the same way.

mod schema;
mod writer;

use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

use super::health::Health;
use super::{Done, Keep, MessageRow, NotificationRow, ReadMarks, Snapshot, Store, StoreError};
use schema::Unusable;
use writer::{Op, Writer};

/// Operations queued at most before new ones are refused.
const QUEUE: usize = 65_536;
/// How far numbering jumps after a run that did not end cleanly: at most this many writes
/// were queued or in a batch, delivered live and possibly never committed.
const MARGIN: u64 = (QUEUE + writer::BATCH) as u64;

/// Rooms, history and notifications in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    tx: SyncSender<Op>,
    health: Arc<Health>,
}

impl SqliteStore {
    /// Opens (or creates) the file, reads back everything stored, and starts the writer.
    ///
    /// A file that cannot be read or written does not fail this: the store starts down
    /// (see [`Store::health`]) with what could be read, logs why, and keeps trying.
    pub fn open(path: &Path) -> (Self, Snapshot) {
        Self::open_with_queue(path, QUEUE)
    }

    fn open_with_queue(path: &Path, queue: usize) -> (Self, Snapshot) {
        let name = format!("db {}", path.display());
        let health = Arc::new(Health::new(name));
        let mut frozen = false;
        let mut snapshot = Snapshot::default();
        let conn = match schema::connect(path) {
            Ok(conn) => {
                let prepared = schema::prepare(&conn);
                match &prepared {
                    Ok(()) => {}
                    Err(Unusable::Newer(e)) => {
                        frozen = true;
                        health.down(e);
                    }
                    Err(Unusable::Failed(e)) => health.down(e),
                }
                if !matches!(prepared, Err(Unusable::Newer(_))) {
                    match schema::load(&conn) {
                        Ok(s) => snapshot = s,
                        Err(e) => health.down(&format!("cannot read it: {e}")),
                    }
                }
                if prepared.is_ok() {
                    // Until this run closes cleanly, the next start must number past what a
                    // crash could have delivered without committing.
                    match schema::begin_run(&conn) {
                        Ok(clean) => snapshot.margin = if clean { 0 } else { MARGIN },
                        Err(e) => health.down(&e.to_string()),
                    }
                }
                Some(conn)
            }
            Err(Unusable::Failed(e) | Unusable::Newer(e)) => {
                health.down(&e);
                None
            }
        };
        let (tx, rx) = mpsc::sync_channel(queue);
        let writer = Writer {
            path: path.to_path_buf(),
            conn,
            health: health.clone(),
            frozen,
        };
        if let Err(e) = std::thread::Builder::new()
            .name("hubbub-store".into())
            .spawn(move || writer.run(rx))
        {
            health.down(&format!("cannot start its writer: {e}"));
        }
        (Self { tx, health }, snapshot)
    }

    /// Writes the store took and then lost (refusals are the caller's to count).
    pub fn dropped(&self) -> u64 {
        self.health.dropped_total()
    }

    fn queue(&self, op: Op) -> Result<(), StoreError> {
        self.health.check()?;
        match self.tx.try_send(op) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                self.health.down("its writer has stopped");
                Err(StoreError::Down("its writer has stopped".into()))
            }
        }
    }
}

impl Store for SqliteStore {
    fn health(&self) -> Result<(), StoreError> {
        self.health.check()
    }

    fn save_room(
        &self,
        ns: &str,
        name: &str,
        settings: String,
        done: Option<Done>,
    ) -> Result<(), StoreError> {
        self.queue(Op::Room {
            ns: ns.to_string(),
            name: name.to_string(),
            settings,
            done,
        })
    }

    fn delete_room(&self, ns: &str, name: &str, done: Option<Done>) -> Result<(), StoreError> {
        self.queue(Op::Delete {
            ns: ns.to_string(),
            name: name.to_string(),
            done,
        })
    }

    fn append(&self, row: MessageRow, keep: Keep, done: Option<Done>) -> Result<(), StoreError> {
        self.queue(Op::Append { row, keep, done })
    }

    fn put_notification(
        &self,
        row: NotificationRow,
        keep: usize,
        done: Option<Done>,
    ) -> Result<(), StoreError> {
        self.queue(Op::Notification { row, keep, done })
    }

    fn mark_read(&self, marks: ReadMarks, done: Option<Done>) -> Result<(), StoreError> {
        self.queue(Op::Read { marks, done })
    }

    fn flush(&self) {
        self.flush_then(false);
    }

    fn close(&self) {
        self.flush_then(true);
    }

    fn dropped_total(&self) -> u64 {
        self.health.dropped_total()
    }
}

impl SqliteStore {
    fn flush_then(&self, close: bool) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        // Blocks while the queue is full: a flush must come after everything before it.
        if self
            .tx
            .send(Op::Flush {
                done: done_tx,
                close,
            })
            .is_ok()
        {
            let _ = done_rx.recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rusqlite::Connection;
    use std::sync::Mutex;

    fn row(seq: u64) -> MessageRow {
        MessageRow {
            ns: "/".into(),
            room: "r".into(),
            seq,
            ts: 1_000 + seq,
            event: "e".into(),
            from: None,
            to: None,
            kind: 0,
            data: Bytes::from_static(b"1"),
            attachments: Bytes::new(),
        }
    }

    fn keep(count: usize) -> Keep {
        Keep {
            count,
            max_age_ms: 0,
        }
    }

    fn stored(path: &Path) -> Vec<u64> {
        let (_, snap) = SqliteStore::open(path);
        snap.rooms
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

    /// A `Done` that records its outcome in `log`.
    fn recorder(log: &Arc<Mutex<Vec<(u64, bool)>>>, seq: u64) -> Option<Done> {
        let log = log.clone();
        Some(Box::new(move |r: Result<(), StoreError>| {
            log.lock().unwrap().push((seq, r.is_ok()))
        }))
    }

    #[test]
    fn a_busy_file_delays_writes_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open(&path);
        let other = locked(&path);
        let log = Arc::new(Mutex::new(Vec::new()));
        for seq in 1..=100 {
            assert!(store
                .append(row(seq), keep(1000), recorder(&log, seq))
                .is_ok());
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            log.lock().unwrap().is_empty(),
            "nothing is acknowledged before its commit"
        );
        other.execute_batch("COMMIT").unwrap();
        store.flush();
        assert_eq!(stored(&path), (1..=100).collect::<Vec<_>>());
        let acked: Vec<(u64, bool)> = log.lock().unwrap().clone();
        assert_eq!(acked, (1..=100).map(|s| (s, true)).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_refuses_writes_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open_with_queue(&path, 4);
        let other = locked(&path);
        let mut refused = 0;
        let accepted: Vec<u64> = (1..=50)
            .filter(|&seq| match store.append(row(seq), keep(1000), None) {
                Ok(()) => true,
                Err(e) => {
                    assert_eq!(e, StoreError::Busy);
                    refused += 1;
                    false
                }
            })
            .collect();
        assert!(accepted.len() < 50, "{accepted:?}");
        assert_eq!(refused, 50 - accepted.len());
        assert_eq!(
            store.dropped(),
            0,
            "refused writes were never taken, so none was lost"
        );
        other.execute_batch("COMMIT").unwrap();
        store.flush();
        // What was accepted is on disk; nothing else.
        assert_eq!(stored(&path), accepted);
    }

    #[test]
    fn rooms_are_trimmed_by_count_and_age_and_deleted_in_order_within_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open(&path);
        for seq in 1..=10 {
            store.append(row(seq), keep(3), None).unwrap();
        }
        store.flush();
        assert_eq!(stored(&path), vec![8, 9, 10]);
        // By age: the newest is at ts 1_014, so 2 ms keeps 1_012..=1_014.
        for seq in 11..=14 {
            let age = Keep {
                count: 100,
                max_age_ms: 2,
            };
            store.append(row(seq), age, None).unwrap();
        }
        store.flush();
        assert_eq!(stored(&path), vec![12, 13, 14]);
        // Deleted, then written again in the same batch: only the new messages remain,
        // and the room's counter starts over.
        store.delete_room("/", "r", None).unwrap();
        store.append(row(1), keep(3), None).unwrap();
        store.flush();
        let (_, snap) = SqliteStore::open(&path);
        assert_eq!(snap.rooms.len(), 1);
        assert_eq!(snap.rooms[0].last_seq, 1);
        assert_eq!(snap.rooms[0].messages.len(), 1);
        assert_eq!(snap.rooms[0].settings, None);
    }

    #[test]
    fn notifications_and_read_marks_come_back_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open(&path);
        let note = |id: u64, user: Option<&str>| NotificationRow {
            id,
            user: user.map(Arc::from),
            event: "note".into(),
            data: Bytes::from_static(b"{}"),
            ts: id,
            read: false,
        };
        for id in 1..=5 {
            store
                .put_notification(note(id, Some("ann")), 3, None)
                .unwrap();
        }
        store.put_notification(note(6, None), 10, None).unwrap();
        store
            .mark_read(
                ReadMarks {
                    user: "ann".into(),
                    own: vec![4],
                    shared: vec![6],
                },
                None,
            )
            .unwrap();
        store.flush();
        let (_, snap) = SqliteStore::open(&path);
        let ids: Vec<(u64, bool)> = snap.notifications.iter().map(|n| (n.id, n.read)).collect();
        assert_eq!(ids, vec![(3, false), (4, true), (5, false), (6, false)]);
        assert_eq!(snap.reads, vec![(Arc::from("ann"), 6)]);
    }

    #[test]
    fn a_corrupt_file_leaves_the_store_down_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let (store, snap) = SqliteStore::open(&path);
        assert!(snap.rooms.is_empty());
        let Err(StoreError::Down(reason)) = store.health() else {
            panic!("a corrupt file is not writable")
        };
        assert!(reason.contains("not a database"), "{reason}");
        assert!(matches!(
            store.append(row(1), keep(10), None),
            Err(StoreError::Down(_))
        ));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            vec![0x5a; 8192],
            "left as it was"
        );
    }

    #[test]
    fn a_store_that_comes_back_takes_writes_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, _) = SqliteStore::open(&path);
        store.health.down("simulated outage");
        assert!(store.append(row(1), keep(10), None).is_err());
        store.flush(); // wakes the writer, as the writes that failed would have
                       // The writer probes the (healthy) file and marks the store up again.
        let deadline = std::time::Instant::now() + writer::PROBE * 5;
        while store.health().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store never came back"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        store.append(row(2), keep(10), None).unwrap();
        store.flush();
        assert_eq!(stored(&path), vec![2]);
    }

    #[test]
    fn numbering_jumps_only_after_a_run_that_did_not_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (store, snap) = SqliteStore::open(&path);
        assert_eq!(snap.margin, 0, "a new file");
        store.append(row(1), keep(10), None).unwrap();
        store.close();
        drop(store);
        let (store, snap) = SqliteStore::open(&path);
        assert_eq!(snap.margin, 0, "after a clean end");
        store.append(row(2), keep(10), None).unwrap();
        store.flush(); // committed, but the run never closes (a crash)
        drop(store);
        let (_, snap) = SqliteStore::open(&path);
        assert_eq!(snap.margin, MARGIN);
        assert_eq!(snap.rooms[0].last_seq, 2);
    }
}
