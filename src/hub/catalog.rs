//! The rooms as the API sees them: create, inspect, list and delete rooms, their presence
//! and their history pages.

use std::sync::{Arc, Mutex};

use super::conn::Conn;
use super::delivery::{now_ms, Delivery};
use super::durable::{unavailable, Commit};
use super::history::HistoryLog;
use super::room::{check_name, is_internal, Room, RoomInfo, RoomSettings, RoomState};
use super::shards::lock;
use super::Hub;
use crate::error::{ErrorCode, HubError};

/// A room just created, and the store's commit of it.
#[derive(Debug)]
pub struct Created {
    /// The room.
    pub info: RoomInfo,
    /// Completes once the room is on disk (`None` without a store).
    pub commit: Option<Commit>,
}

impl Created {
    /// Waits until the room is durable.
    pub async fn committed(self) -> Result<RoomInfo, HubError> {
        if let Some(c) = self.commit {
            c.await?;
        }
        Ok(self.info)
    }
}

impl Hub {
    /// Creates a room of `/` with its own settings: `room_exists` if it exists,
    /// `bad_request` for a schema nobody registered, `unavailable` when the store cannot
    /// keep it. With a store, [`Created::commit`] completes once the room is on disk: an
    /// acknowledgement of the creation waits for it.
    pub fn create_room(&self, settings: RoomSettings) -> Result<Created, HubError> {
        check_name(&settings.name, "name")?;
        if let Some(schema) = &settings.schema {
            if self.schema(schema).is_none() {
                return Err(HubError::bad_request(format!(
                    "unknown schema `{schema}`; known: {}",
                    self.schema_names().join(", ")
                )));
            }
        }
        let name: Arc<str> = settings.name.as_str().into();
        let mut rooms = self.inner.rooms.shard(&*name);
        if rooms.contains_key(&name) {
            return Err(HubError::new(
                ErrorCode::RoomExists,
                format!("room `{name}` already exists"),
            ));
        }
        let log = HistoryLog::new(settings.history, settings.history_ttl.saturating_mul(1000));
        let st = RoomState::new(settings, true, log);
        let info = st.info();
        let mut commit = None;
        if let Some(store) = self.inner.store.get() {
            let json = serde_json::to_string(&st.settings).unwrap_or_default();
            let (pending, done) = Commit::pending();
            if let Err(e) = store.save_room("/", &name, json, Some(done)) {
                self.inner.stats.store_dropped();
                return Err(unavailable(&e));
            }
            commit = Some(pending);
        }
        self.room_changed("/", &name, true);
        rooms.insert(
            name.clone(),
            Arc::new(Room {
                name: name.clone(),
                key: name,
                ns: "/".into(),
                state: Mutex::new(st),
            }),
        );
        Ok(Created { info, commit })
    }

    /// A room's settings and member count (`/`; internal rooms are not shown).
    pub fn room_info(&self, name: &str) -> Option<RoomInfo> {
        if is_internal(name) {
            return None;
        }
        self.room(name).map(|r| lock(&r.state).info())
    }

    /// The rooms of `/` a client may see (internal ones left out).
    fn public_rooms(&self) -> Vec<Arc<Room>> {
        self.inner
            .rooms
            .all()
            .flat_map(|s| {
                s.values()
                    .filter(|r| &*r.ns == "/" && !is_internal(&r.name))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every room of `/`, sorted by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms = self.public_rooms();
        let mut infos: Vec<RoomInfo> = rooms.iter().map(|r| lock(&r.state).info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Every room of `/` with its users and the messages published to it since it came into
    /// being (the dashboard's top rooms), unsorted.
    pub fn room_traffic(&self) -> Vec<(String, usize, u64)> {
        let rooms = self.public_rooms();
        rooms
            .iter()
            .map(|r| {
                let st = lock(&r.state);
                (r.name.to_string(), st.users.len(), st.published)
            })
            .collect()
    }

    /// Deletes a room of `/` and its history; its members are unsubscribed.
    /// `room_not_found` if unknown, `unavailable` when the store cannot record it (the room
    /// would come back at the next start). With a store, the returned commit completes once
    /// the deletion is on disk.
    pub fn delete_room(&self, name: &str) -> Result<Option<Commit>, HubError> {
        if is_internal(name) {
            return Err(not_found(name));
        }
        self.remove_room("/", name, true)
    }

    /// Deletes a room another node of the cluster deleted (the store knows already).
    pub fn forget_room(&self, ns: &str, name: &str) {
        let _ = self.remove_room(ns, name, false);
    }

    fn remove_room(&self, ns: &str, name: &str, store: bool) -> Result<Option<Commit>, HubError> {
        let key = super::room::room_key(ns, name);
        // The map's shard, then the room: the order `remove_if_removable` takes them in.
        // The store hears of the deletion while both are held, so every write of the old
        // room is queued before it and every write of a room of the same name made later
        // (which needs the shard) after it.
        let mut shard = self.inner.rooms.shard(&*key);
        let Some(room) = shard.get(&key).cloned() else {
            return Err(not_found(name));
        };
        let mut commit = None;
        let members: Vec<Arc<Conn>> = {
            let mut st = lock(&room.state);
            if let Some(store) = self.inner.store.get().filter(|_| store) {
                let (pending, done) = Commit::pending();
                if let Err(e) = store.delete_room(ns, name, Some(done)) {
                    self.inner.stats.store_dropped();
                    return Err(unavailable(&e));
                }
                commit = Some(pending);
            }
            shard.remove(&key);
            self.room_changed(ns, name, false);
            st.dead = true;
            st.log.clear();
            st.waiting = None;
            st.users.clear();
            st.members.drain().map(|(_, c)| c).collect()
        };
        drop(shard);
        for c in members {
            lock(&c.rooms).retain(|r| **r != *name);
            self.membership(&c, name, false);
        }
        Ok(commit)
    }

    /// Users in a room of `/`, sorted; `None` if the room does not exist.
    pub fn presence(&self, room: &str) -> Option<Vec<String>> {
        if is_internal(room) {
            return None;
        }
        let r = self.room(room)?;
        let st = lock(&r.state);
        let mut users: Vec<String> = st.users.keys().map(|u| u.to_string()).collect();
        users.sort();
        Some(users)
    }

    /// A page of a room's history, newest first, and the `before` of the next page:
    /// `room_not_found`, or `unavailable` while the store of a history room is down.
    pub fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Arc<Delivery>>, Option<u64>), HubError> {
        let r = self
            .room(room)
            .filter(|_| !is_internal(room))
            .ok_or_else(|| not_found(room))?;
        let mut st = lock(&r.state);
        if st.log.enabled() {
            if let Some(Err(e)) = self.inner.store.get().map(|s| s.health()) {
                return Err(unavailable(&e));
            }
        }
        st.log.expire(now_ms());
        Ok(st.log.before(before, limit))
    }
}

/// `room_not_found` for `room`.
pub fn not_found(room: &str) -> HubError {
    HubError::new(
        ErrorCode::RoomNotFound,
        format!("room `{room}` does not exist"),
    )
}
