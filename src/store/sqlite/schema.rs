//! The SQLite file's layout: its tables, opening and upgrading it, and reading everything back
//! at start.
//!
//! Version 1 held rooms and messages; version 2 adds the recipient of a message (direct
//! messages), notifications and their read marks, and a `meta` table the writer probes with.
//! A file written by a newer Hubbub is never written to.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};

use crate::store::{MessageRow, NotificationRow, RoomRow, Snapshot};

/// The schema version this code writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 2;

const TABLES: &str = "
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
    recipient   TEXT,             -- the addressee of a direct message
    PRIMARY KEY (ns, room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notifications (
    id    INTEGER PRIMARY KEY,
    user  TEXT,                   -- NULL: a notification to everyone
    event TEXT    NOT NULL,
    data  BLOB    NOT NULL,
    ts    INTEGER NOT NULL,
    read  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user, id);
CREATE TABLE IF NOT EXISTS notification_reads (
    user TEXT    NOT NULL,        -- who read a notification to everyone
    id   INTEGER NOT NULL,
    PRIMARY KEY (user, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    k TEXT PRIMARY KEY,
    v
) WITHOUT ROWID;
";

/// Why a file cannot be used.
#[derive(Debug)]
pub(super) enum Unusable {
    /// Written by a newer Hubbub: never written to, not even probed.
    Newer(String),
    /// Anything else (unreadable, corrupt, read-only, full): the writer probes it again.
    Failed(String),
}

/// Opens the file with the settings every connection uses.
pub(super) fn connect(path: &Path) -> Result<Connection, Unusable> {
    let fail = |e: rusqlite::Error| Unusable::Failed(e.to_string());
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    Ok(conn)
}

/// Checks the version, creates or upgrades the tables and sets the journal mode. Writes, so
/// it fails on a read-only, corrupt or full file.
pub(super) fn prepare(conn: &Connection) -> Result<(), Unusable> {
    let fail = |e: rusqlite::Error| Unusable::Failed(e.to_string());
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(fail)?;
    if version > SCHEMA_VERSION {
        return Err(Unusable::Newer(format!(
            "written by a newer Hubbub (schema {version}, this one knows {SCHEMA_VERSION})"
        )));
    }
    // SQLite opens a file it may not write read-only, and says nothing until a write.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
        return Err(Unusable::Failed(
            "the file is read-only (its permissions, or its directory's)".into(),
        ));
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Unusable::Failed(format!(
            "cannot switch to WAL (journal mode {mode})"
        )));
    }
    // A commit reaches the operating system before the writer reports it: it survives the
    // process being killed. (A power loss can take the last commits; `FULL` would sync each.)
    conn.execute_batch("PRAGMA synchronous = NORMAL;")
        .map_err(fail)?;
    if version == 1 {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN recipient TEXT;")
            .map_err(fail)?;
    }
    conn.execute_batch(TABLES).map_err(fail)?;
    if version != SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail)?;
    }
    Ok(())
}

/// Starts a run: returns whether the last run ended cleanly (a new file counts as clean),
/// and records that this one has not yet.
pub(super) fn begin_run(conn: &Connection) -> rusqlite::Result<bool> {
    let clean: Option<i64> = conn
        .query_row("SELECT v FROM meta WHERE k = 'clean'", [], |r| r.get(0))
        .optional()?;
    let stored: i64 = conn.query_row(
        "SELECT (SELECT count(*) FROM rooms) + (SELECT count(*) FROM notifications)",
        [],
        |r| r.get(0),
    )?;
    conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('clean', 0)", [])?;
    Ok(clean == Some(1) || (clean.is_none() && stored == 0))
}

/// Records that the run ended cleanly: everything it delivered is committed.
pub(super) fn end_run(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('clean', 1)", [])
        .map(|_| ())
}

/// Everything stored: rooms with their messages (oldest first), notifications and read marks.
pub(super) fn load(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut intern = |s: String| {
        names
            .entry(s)
            .or_insert_with_key(|k| k.as_str().into())
            .clone()
    };
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
        "SELECT ns, room, seq, ts, event, sender, kind, data, attachments, recipient \
         FROM messages ORDER BY ns, room, seq",
    )?;
    let mut rows = stmt.query([])?;
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
            to: row.get::<_, Option<String>>(9)?.map(&mut intern),
        });
    }
    let mut notifications = Vec::new();
    let mut stmt =
        conn.prepare("SELECT id, user, event, data, ts, read FROM notifications ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        notifications.push(NotificationRow {
            id: row.get::<_, i64>(0)?.max(0) as u64,
            user: row.get::<_, Option<String>>(1)?.map(&mut intern),
            event: intern(row.get(2)?),
            data: Bytes::from(row.get::<_, Vec<u8>>(3)?),
            ts: row.get::<_, i64>(4)?.max(0) as u64,
            read: row.get::<_, i64>(5)? != 0,
        });
    }
    let mut reads = Vec::new();
    let mut stmt = conn.prepare("SELECT user, id FROM notification_reads")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        reads.push((intern(row.get(0)?), row.get::<_, i64>(1)?.max(0) as u64));
    }
    Ok(Snapshot {
        margin: 0,
        rooms,
        notifications,
        reads,
    })
}
