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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::HubError;
use crate::hub::durable::unavailable;
use crate::hub::{now_ms, Commit, Hub};
use crate::protocol::v1::RawJson;
use crate::store::{NotificationRow, ReadMarks, Snapshot, Store};

/// Notifications kept per user, and to everyone.
pub const KEEP: usize = 1000;
/// The largest page of a listing.
pub const PAGE_MAX: usize = 500;
/// The page size when none is asked for.
pub const PAGE_DEFAULT: usize = 50;

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
}

impl State {
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
        q.push_back(e);
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

/// The notification service.
#[derive(Debug)]
pub struct Notifications {
    hub: Hub,
    store: Option<Arc<dyn Store>>,
    state: Mutex<State>,
    next_id: AtomicU64,
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
    /// The service on `hub`, with what `snapshot` brought back from `store`.
    pub fn new(hub: Hub, store: Option<Arc<dyn Store>>, snapshot: &Snapshot) -> Arc<Self> {
        let mut state = State::default();
        let mut last = 0;
        for n in &snapshot.notifications {
            last = last.max(n.id);
            let to = match &n.user {
                Some(u) => Recipient::User(u.clone()),
                None => Recipient::Everyone,
            };
            let Ok(data) = RawJson::parse(n.data.clone()) else {
                tracing::warn!("store: notification {} has unreadable data; skipped", n.id);
                continue;
            };
            state.push(
                &to,
                Entry {
                    id: n.id,
                    event: n.event.clone(),
                    data,
                    ts: n.ts,
                    read: n.read,
                },
            );
        }
        for (user, id) in &snapshot.reads {
            state
                .shared_read
                .entry(user.clone())
                .or_default()
                .insert(*id);
        }
        let this = Arc::new(Self {
            hub: hub.clone(),
            store,
            state: Mutex::new(state),
            next_id: AtomicU64::new(last + 1),
        });
        let weak = Arc::downgrade(&this);
        hub.on_connect(move |hub, conn| {
            // Once after `welcome`, in the main namespace (v1 and Socket.IO's `/`).
            if let (Some(me), "/") = (weak.upgrade(), &**conn.ns()) {
                let n = me.unread(conn.user());
                hub.to_conn(conn.id())
                    .notice("unread", &json!({ "count": n }));
            }
        });
        this
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_store(&self) -> Result<(), HubError> {
        match &self.store {
            Some(s) => s.health().map_err(|e| unavailable(&e)),
            None => Ok(()),
        }
    }

    /// `user`'s unread count.
    pub fn unread(&self, user: &str) -> usize {
        self.state().unread(user)
    }

    /// Makes a notification, keeps it, and pushes it (and the new unread counts) to its
    /// recipients' connections. Refused with `unavailable` while the store is down.
    pub fn notify(&self, to: Recipient, event: &str, data: RawJson) -> Result<Notified, HubError> {
        self.check_store()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            id,
            event: event.into(),
            data,
            ts: now_ms(),
            read: false,
        };
        let commit = {
            // The store hears of notifications in id order: under the state lock.
            let mut st = self.state();
            let commit = match &self.store {
                Some(store) => {
                    let (commit, done) = Commit::pending();
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
                    store
                        .put_notification(row, KEEP, Some(done))
                        .map_err(|e| unavailable(&e))?;
                    Some(commit)
                }
                None => None,
            };
            st.push(&to, entry.clone());
            commit
        };
        let fields = json!({
            "id": id,
            "event": &*entry.event,
            "data": entry.data.to_value(),
            "ts": entry.ts,
        });
        let delivered = match &to {
            Recipient::User(u) => {
                let n = self.hub.to_user(u).notice("notification", &fields);
                self.push_unread(u);
                n
            }
            Recipient::Everyone => {
                let n = self.hub.to_all().notice("notification", &fields);
                for user in self.hub.users_online() {
                    self.push_unread(&user);
                }
                n
            }
        };
        Ok(Notified {
            id,
            delivered,
            commit,
        })
    }

    /// Sends `user`'s unread count to every connection of theirs.
    fn push_unread(&self, user: &str) {
        let n = self.unread(user);
        self.hub
            .to_user(user)
            .notice("unread", &json!({ "count": n }));
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
        let st = self.state();
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
    /// commit. When the count changed, every connection of the user hears it.
    pub fn read(&self, user: &str, marks: Marks) -> Result<(usize, Option<Commit>), HubError> {
        self.check_store()?;
        let user: Arc<str> = user.into();
        let (before, after, commit) = {
            let mut st = self.state();
            let before = st.unread(&user);
            let wanted = |id: u64| match &marks {
                Marks::All => true,
                Marks::Ids(ids) => ids.contains(&id),
            };
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
                    let (commit, done) = Commit::pending();
                    let marks = ReadMarks {
                        user: user.clone(),
                        own: own.clone(),
                        shared: shared.clone(),
                    };
                    store
                        .mark_read(marks, Some(done))
                        .map_err(|e| unavailable(&e))?;
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
            (before, st.unread(&user), commit)
        };
        if after != before {
            self.push_unread(&user);
        }
        Ok((after, commit))
    }
}
