//! In-site notifications with read state, per user (DESIGN.md, "Services"): the seeds' red
//! dot.
//!
//! A notification is made by the server's API (`POST /api/notify`, or [`Notifications::notify`]
//! from application code) for one user or for everyone, kept (in memory and, with a store,
//! on disk: they survive a restart), and pushed at once to the addressee's connections as
//! `notification`; every change of a user's unread count reaches all of that user's
//! connections as `unread`, and every new connection gets it once after `welcome`. Clients
//! list them (`notifications`) and mark them read (`read`); both answer after the store has
//! committed, as any acknowledgement does.
//!
//! Each user keeps the latest [`KEEP`] of their own, and everyone the latest [`KEEP`] of
//! those to everyone; a notification to everyone has a read state per user.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::HubError;
use crate::hub::durable::unavailable;
use crate::hub::{now_ms, Commit, Hub};
use crate::protocol::v1::RawJson;
use crate::store::{Done, NotificationRow, ReadMarks, Snapshot, Store, StoreError};

/// Notifications kept per user, and to everyone.
pub const KEEP: usize = 1000;
/// The largest page of a listing.
pub const PAGE_MAX: usize = 500;
/// The page size when none is asked for.
pub const PAGE_DEFAULT: usize = 50;
/// The most ids one `read` may name.
pub const READ_MAX: usize = KEEP;

/// A notification as clients see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notification {
    /// Its id, increasing.
    pub id: u64,
    /// Its event name.
    pub event: Arc<str>,
    /// Its payload.
    pub data: Value,
    /// When it was made, ms since the epoch.
    pub ts: u64,
    /// Whether the user has read it.
    pub read: bool,
}

/// Who a notification is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// One user.
    User(Arc<str>),
    /// Every user, each with their own read state.
    Everyone,
}

/// What to mark read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marks {
    /// These ids (unknown ones are ignored).
    Ids(Vec<u64>),
    /// Every notification the user has.
    All,
}

/// A listing request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Only unread ones.
    pub unread_only: bool,
    /// Only ids below this one.
    pub before: Option<u64>,
    /// At most this many (default [`PAGE_DEFAULT`], at most [`PAGE_MAX`]).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    event: Arc<str>,
    data: RawJson,
    ts: u64,
    read: bool,
}

#[derive(Debug, Default)]
struct State {
    own: HashMap<Arc<str>, VecDeque<Entry>>,
    shared: VecDeque<Entry>,
    shared_read: HashMap<Arc<str>, HashSet<u64>>,
    /// The id the next notification gets (one node).
    next_id: u64,
    /// In a cluster that keeps notifications: this node's slot among the nodes, which ids
    /// carry (see [`State::take_id`]).
    slot: Option<u64>,
    /// The millisecond (since [`ID_EPOCH_MS`]) and the count within it of the last id
    /// given in a cluster.
    last_ms: u64,
    in_ms: u64,
}

/// Ids in a cluster count milliseconds from 2026-01-01, so they stay below 2^53 (exact in
/// JavaScript) for 69 years.
const ID_EPOCH_MS: u64 = 1_767_225_600_000;
/// Ids given by one node within one millisecond, at most (more wait for the next one).
const IDS_PER_MS: u64 = 64;
/// Nodes told apart by ids.
pub const ID_SLOTS: u64 = 64;

impl State {
    /// The next id: increasing, and in a cluster unique among the nodes without asking
    /// them: the millisecond, this node's slot, and a count within the millisecond
    /// (`ms << 12 | slot << 6 | n`).
    fn take_id(&mut self) -> u64 {
        let Some(slot) = self.slot else {
            let id = self.next_id;
            self.next_id += 1;
            return id;
        };
        let now = now_ms().saturating_sub(ID_EPOCH_MS);
        if now > self.last_ms {
            self.last_ms = now;
            self.in_ms = 0;
        } else if self.in_ms + 1 >= IDS_PER_MS {
            self.last_ms += 1;
            self.in_ms = 0;
        } else {
            self.in_ms += 1;
        }
        (self.last_ms << 12) | ((slot % ID_SLOTS) << 6) | self.in_ms
    }

    /// The state a store's snapshot describes.
    fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut state = State::default();
        let mut last = 0;
        for n in &snapshot.notifications {
            last = last.max(n.id);
            let Ok(data) = RawJson::parse(n.data.clone()) else {
                tracing::warn!("store: notification {} has unreadable data; skipped", n.id);
                continue;
            };
            state.push(&recipient_of(n), entry_of(n, data));
        }
        for (user, id) in &snapshot.reads {
            state
                .shared_read
                .entry(user.clone())
                .or_default()
                .insert(*id);
        }
        state.next_id = last.saturating_add(snapshot.margin).saturating_add(1);
        state
    }

    fn has(&self, to: &Recipient, id: u64) -> bool {
        let q = match to {
            Recipient::User(u) => self.own.get(u),
            Recipient::Everyone => Some(&self.shared),
        };
        q.is_some_and(|q| q.iter().any(|e| e.id == id))
    }

    fn unread(&self, user: &str) -> usize {
        let own = self
            .own
            .get(user)
            .map_or(0, |q| q.iter().filter(|e| !e.read).count());
        let read = self.shared_read.get(user);
        let shared = self
            .shared
            .iter()
            .filter(|e| !read.is_some_and(|r| r.contains(&e.id)))
            .count();
        own + shared
    }

    fn push(&mut self, to: &Recipient, e: Entry) {
        let q = match to {
            Recipient::User(u) => self.own.entry(u.clone()).or_default(),
            Recipient::Everyone => &mut self.shared,
        };
        // In id order (another node's notification may come after a later one of this node).
        let at = q.partition_point(|x| x.id < e.id);
        q.insert(at, e);
        while q.len() > KEEP {
            if let Some(old) = q.pop_front() {
                if *to == Recipient::Everyone {
                    for r in self.shared_read.values_mut() {
                        r.remove(&old.id);
                    }
                }
            }
        }
    }
}

/// What the store's callbacks share with the service: the hub, to push counts, and the
/// state, to undo a change the store lost.
#[derive(Debug)]
struct Shared {
    hub: Hub,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `user`'s unread count to every connection of theirs. Called with the state
    /// locked, so counts reach clients in the order they changed (pushing takes only hub
    /// locks, never this one).
    fn push_unread(&self, st: &State, user: &str) {
        self.hub
            .to_user(user)
            .notice("unread", &json!({ "count": st.unread(user) }));
    }

    /// Pushes a new notification and the new unread counts to its recipients' connections
    /// (the state locked); returns how many connections got it.
    fn deliver(&self, st: &State, to: &Recipient, entry: &Entry) -> usize {
        let fields = json!({
            "id": entry.id,
            "event": &*entry.event,
            "data": entry.data.to_value(),
            "ts": entry.ts,
        });
        match to {
            Recipient::User(u) => {
                let n = self.hub.to_user(u).notice("notification", &fields);
                self.push_unread(st, u);
                n
            }
            Recipient::Everyone => {
                let n = self.hub.to_all().notice("notification", &fields);
                for user in self.hub.users_online() {
                    self.push_unread(st, &user);
                }
                n
            }
        }
    }
}

fn recipient_of(n: &NotificationRow) -> Recipient {
    match &n.user {
        Some(u) => Recipient::User(u.clone()),
        None => Recipient::Everyone,
    }
}

fn entry_of(n: &NotificationRow, data: RawJson) -> Entry {
    Entry {
        id: n.id,
        event: n.event.clone(),
        data,
        ts: n.ts,
        read: n.read,
    }
}

/// The notification service.
#[derive(Debug)]
pub struct Notifications {
    shared: Arc<Shared>,
    store: Option<Arc<dyn Store>>,
}

/// What [`Notifications::notify`] did.
#[derive(Debug)]
pub struct Notified {
    /// The notification's id.
    pub id: u64,
    /// Connections it was pushed to.
    pub delivered: usize,
    /// The store's commit, when there is a store.
    pub commit: Option<Commit>,
}

impl Notifications {
    /// The service on `hub`, with what `snapshot` brought back from `store`. Ids go on past
    /// the stored ones (and past the store's margin after an unclean end: an id a client
    /// saw is never given again).
    pub fn new(hub: Hub, store: Option<Arc<dyn Store>>, snapshot: &Snapshot) -> Arc<Self> {
        let state = State::from_snapshot(snapshot);
        let this = Arc::new(Self {
            shared: Arc::new(Shared {
                hub: hub.clone(),
                state: Mutex::new(state),
            }),
            store,
        });
        let weak = Arc::downgrade(&this.shared);
        hub.on_connect(move |_, conn| {
            // Once after `welcome`, in the main namespace (v1 and Socket.IO's `/`).
            if let (Some(shared), "/") = (weak.upgrade(), &**conn.ns()) {
                let st = shared.state();
                shared
                    .hub
                    .to_conn(conn.id())
                    .notice("unread", &json!({ "count": st.unread(conn.user()) }));
            }
        });
        this
    }

    fn check_store(&self) -> Result<(), HubError> {
        match &self.store {
            Some(s) => s.health().map_err(|e| unavailable(&e)),
            None => Ok(()),
        }
    }

    fn refused(&self, e: &StoreError) -> HubError {
        self.shared.hub.stats().store_dropped();
        unavailable(e)
    }

    /// A commit whose failure first runs `undo` on the state (the store lost the write, so
    /// the state goes back to what is on disk), then reports.
    fn undoable(&self, undo: impl FnOnce(&Shared, &mut State) + Send + 'static) -> (Commit, Done) {
        let (commit, done) = Commit::pending();
        let shared = self.shared.clone();
        let done: Done = Box::new(move |r: Result<(), StoreError>| {
            if r.is_err() {
                let mut st = shared.state();
                undo(&shared, &mut st);
            }
            done(r);
        });
        (commit, done)
    }

    /// Takes the notifications a cluster keeps (read back after this node connected to it),
    /// in place of what this node had; from now on this node gives ids as node `slot` of
    /// the cluster. Every user online here hears their count.
    pub fn replace(&self, snapshot: &Snapshot, slot: u64) {
        let mut st = self.shared.state();
        let mut fresh = State::from_snapshot(snapshot);
        fresh.slot = Some(slot);
        fresh.last_ms = st.last_ms;
        fresh.in_ms = st.in_ms;
        *st = fresh;
        for user in self.shared.hub.users_online() {
            self.shared.push_unread(&st, &user);
        }
    }

    /// Takes a notification another node of the cluster made (and kept): pushed to its
    /// recipients' connections on this node. One this node has already is ignored.
    pub fn apply_notification(&self, row: &NotificationRow) {
        let Ok(data) = RawJson::parse(row.data.clone()) else {
            return;
        };
        let to = recipient_of(row);
        let mut st = self.shared.state();
        if st.has(&to, row.id) {
            return;
        }
        let entry = entry_of(row, data);
        st.push(&to, entry.clone());
        self.shared.deliver(&st, &to, &entry);
    }

    /// Takes read marks made on another node of the cluster: the user's connections here
    /// hear their new count.
    pub fn apply_read(&self, marks: &ReadMarks) {
        let mut st = self.shared.state();
        let before = st.unread(&marks.user);
        if let Some(q) = st.own.get_mut(&marks.user) {
            q.iter_mut()
                .filter(|e| marks.own.contains(&e.id))
                .for_each(|e| e.read = true);
        }
        if !marks.shared.is_empty() {
            st.shared_read
                .entry(marks.user.clone())
                .or_default()
                .extend(marks.shared.iter().copied());
        }
        if st.unread(&marks.user) != before {
            self.shared.push_unread(&st, &marks.user);
        }
    }

    /// `user`'s unread count.
    pub fn unread(&self, user: &str) -> usize {
        self.shared.state().unread(user)
    }

    /// Makes a notification, keeps it, and pushes it (and the new unread counts) to its
    /// recipients' connections. Refused with `unavailable` while the store is down; taken
    /// back (and the counts pushed again) if the store then loses it.
    pub fn notify(&self, to: Recipient, event: &str, data: RawJson) -> Result<Notified, HubError> {
        self.check_store()?;
        let mut st = self.shared.state();
        // Ids are given, stored and delivered in one order: under the state lock.
        let id = st.take_id();
        let entry = Entry {
            id,
            event: event.into(),
            data,
            ts: now_ms(),
            read: false,
        };
        let commit = match &self.store {
            Some(store) => {
                let (commit, done) = self.undoable({
                    let to = to.clone();
                    move |shared, st| {
                        let q = match &to {
                            Recipient::User(u) => st.own.get_mut(u),
                            Recipient::Everyone => Some(&mut st.shared),
                        };
                        if let Some(q) = q {
                            q.retain(|e| e.id != id);
                        }
                        match &to {
                            Recipient::User(u) => shared.push_unread(st, u),
                            Recipient::Everyone => {
                                for user in shared.hub.users_online() {
                                    shared.push_unread(st, &user);
                                }
                            }
                        }
                    }
                });
                let row = NotificationRow {
                    id,
                    user: match &to {
                        Recipient::User(u) => Some(u.clone()),
                        Recipient::Everyone => None,
                    },
                    event: entry.event.clone(),
                    data: entry.data.bytes().clone(),
                    ts: entry.ts,
                    read: false,
                };
                if let Err(e) = store.put_notification(row, KEEP, Some(done)) {
                    return Err(self.refused(&e));
                }
                Some(commit)
            }
            None => None,
        };
        st.push(&to, entry.clone());
        let delivered = self.shared.deliver(&st, &to, &entry);
        Ok(Notified {
            id,
            delivered,
            commit,
        })
    }

    /// A page of `user`'s notifications, newest first, and their unread count.
    pub fn list(&self, user: &str, page: Page) -> Result<(Vec<Notification>, usize), HubError> {
        self.check_store()?;
        let limit = page.limit.unwrap_or(PAGE_DEFAULT);
        if limit == 0 || limit > PAGE_MAX {
            return Err(HubError::bad_request(format!(
                "`limit` must be between 1 and {PAGE_MAX}"
            )));
        }
        let st = self.shared.state();
        let read = st.shared_read.get(user);
        let own = st.own.get(user).into_iter().flatten().map(|e| (e, e.read));
        let shared = st
            .shared
            .iter()
            .map(|e| (e, read.is_some_and(|r| r.contains(&e.id))));
        let mut all: Vec<(&Entry, bool)> = own
            .chain(shared)
            .filter(|(e, read)| {
                page.before.is_none_or(|b| e.id < b) && !(page.unread_only && *read)
            })
            .collect();
        all.sort_by_key(|(e, _)| std::cmp::Reverse(e.id));
        let list = all
            .into_iter()
            .take(limit)
            .map(|(e, read)| Notification {
                id: e.id,
                event: e.event.clone(),
                data: e.data.to_value(),
                ts: e.ts,
                read,
            })
            .collect();
        Ok((list, st.unread(user)))
    }

    /// Marks `user`'s notifications read; returns the new unread count and the store's
    /// commit. When the count changed, every connection of the user hears it (and hears it
    /// again, restored, if the store loses the marks).
    pub fn read(&self, user: &str, marks: Marks) -> Result<(usize, Option<Commit>), HubError> {
        self.check_store()?;
        let wanted: Option<HashSet<u64>> = match marks {
            Marks::All => None,
            Marks::Ids(ids) if ids.len() > READ_MAX => {
                return Err(HubError::bad_request(format!(
                    "at most {READ_MAX} ids at a time"
                )))
            }
            Marks::Ids(ids) => Some(ids.into_iter().collect()),
        };
        let wanted = |id: u64| wanted.as_ref().is_none_or(|w| w.contains(&id));
        let user: Arc<str> = user.into();
        let mut st = self.shared.state();
        let before = st.unread(&user);
        let own: Vec<u64> = st
            .own
            .get(&user)
            .into_iter()
            .flatten()
            .filter(|e| !e.read && wanted(e.id))
            .map(|e| e.id)
            .collect();
        let already = st.shared_read.get(&user);
        let shared: Vec<u64> = st
            .shared
            .iter()
            .filter(|e| wanted(e.id) && !already.is_some_and(|r| r.contains(&e.id)))
            .map(|e| e.id)
            .collect();
        if own.is_empty() && shared.is_empty() {
            return Ok((before, None));
        }
        let commit = match &self.store {
            Some(store) => {
                let (commit, done) = self.undoable({
                    let (user, own, shared) = (user.clone(), own.clone(), shared.clone());
                    move |hub_side, st| {
                        if let Some(q) = st.own.get_mut(&user) {
                            q.iter_mut()
                                .filter(|e| own.contains(&e.id))
                                .for_each(|e| e.read = false);
                        }
                        if let Some(r) = st.shared_read.get_mut(&user) {
                            r.retain(|id| !shared.contains(id));
                        }
                        hub_side.push_unread(st, &user);
                    }
                });
                let marks = ReadMarks {
                    user: user.clone(),
                    own: own.clone(),
                    shared: shared.clone(),
                };
                if let Err(e) = store.mark_read(marks, Some(done)) {
                    return Err(self.refused(&e));
                }
                Some(commit)
            }
            None => None,
        };
        if let Some(q) = st.own.get_mut(&user) {
            q.iter_mut()
                .filter(|e| own.contains(&e.id))
                .for_each(|e| e.read = true);
        }
        if !shared.is_empty() {
            st.shared_read
                .entry(user.clone())
                .or_default()
                .extend(shared);
        }
        let after = st.unread(&user);
        if after != before {
            self.shared.push_unread(&st, &user);
        }
        Ok((after, commit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;
    use crate::store::{Keep, MessageRow};

    /// A store that takes every write and then loses it, reporting from its own thread as
    /// a real one does.
    #[derive(Debug)]
    struct Losing;

    fn lose(done: Option<Done>) -> Result<(), StoreError> {
        if let Some(done) = done {
            std::thread::spawn(move || done(Err(StoreError::Down("disk full".into()))));
        }
        Ok(())
    }

    impl Store for Losing {
        fn health(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn save_room(
            &self,
            _: &str,
            _: &str,
            _: String,
            d: Option<Done>,
        ) -> Result<(), StoreError> {
            lose(d)
        }
        fn delete_room(&self, _: &str, _: &str, d: Option<Done>) -> Result<(), StoreError> {
            lose(d)
        }
        fn append(&self, _: MessageRow, _: Keep, d: Option<Done>) -> Result<(), StoreError> {
            lose(d)
        }
        fn put_notification(
            &self,
            _: NotificationRow,
            _: usize,
            d: Option<Done>,
        ) -> Result<(), StoreError> {
            lose(d)
        }
        fn mark_read(&self, _: ReadMarks, d: Option<Done>) -> Result<(), StoreError> {
            lose(d)
        }
        fn flush(&self) {}
    }

    #[tokio::test]
    async fn what_the_store_loses_is_taken_back() {
        let hub = Hub::new(HubConfig::default());
        // Two notifications that made it to disk, then a store that loses everything.
        let snapshot = Snapshot {
            notifications: (1..=2)
                .map(|id| NotificationRow {
                    id,
                    user: Some("ann".into()),
                    event: "e".into(),
                    data: bytes::Bytes::from_static(b"1"),
                    ts: id,
                    read: false,
                })
                .collect(),
            margin: 100,
            ..Snapshot::default()
        };
        let n = Notifications::new(hub, Some(Arc::new(Losing)), &snapshot);
        assert_eq!(n.unread("ann"), 2);
        let made = n
            .notify(Recipient::User("ann".into()), "e", RawJson::null())
            .unwrap();
        assert_eq!(made.id, 103, "ids go on past the margin of an unclean end");
        assert_eq!(n.unread("ann"), 3, "counted at once");
        let err = made.commit.unwrap().await.unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::Unavailable);
        assert_eq!(n.unread("ann"), 2, "the lost notification is gone again");
        let (read, commit) = n.read("ann", Marks::All).unwrap();
        assert_eq!(read, 0);
        assert!(commit.unwrap().await.is_err());
        assert_eq!(n.unread("ann"), 2, "marks the store lost are undone");
        let (list, _) = n.list("ann", Page::default()).unwrap();
        assert!(list.iter().all(|e| !e.read && e.id <= 2), "{list:?}");
        assert!(matches!(
            n.read("ann", Marks::Ids((0..=READ_MAX as u64).collect())),
            Err(e) if e.code == crate::error::ErrorCode::BadRequest
        ));
    }
}
