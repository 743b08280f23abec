//! The rooms as the API sees them: create, inspect, list and delete rooms, their presence
//! and their history pages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::conn::Conn;
use super::delivery::Delivery;
use super::history::HistoryLog;
use super::room::{check_name, Room, RoomInfo, RoomSettings, RoomState};
use super::shards::lock;
use super::Hub;
use crate::error::{ErrorCode, HubError};

impl Hub {
    /// Creates a room of `/` with its own settings; `room_exists` if it exists.
    pub fn create_room(&self, settings: RoomSettings) -> Result<RoomInfo, HubError> {
        check_name(&settings.name, "name")?;
        let name: Arc<str> = settings.name.as_str().into();
        let mut rooms = self.inner.rooms.shard(&*name);
        if rooms.contains_key(&name) {
            return Err(HubError::new(
                ErrorCode::RoomExists,
                format!("room `{name}` already exists"),
            ));
        }
        let st = RoomState {
            dead: false,
            pinned: true,
            log: HistoryLog::new(settings.history),
            settings,
            members: HashMap::new(),
            users: HashMap::new(),
        };
        let info = st.info();
        if let Some(store) = self.inner.store.get() {
            let json = serde_json::to_string(&st.settings).unwrap_or_default();
            if !store.save_room("/", &name, json) {
                self.inner.stats.store_dropped();
            }
        }
        rooms.insert(
            name.clone(),
            Arc::new(Room {
                name: name.clone(),
                key: name,
                ns: "/".into(),
                state: Mutex::new(st),
            }),
        );
        Ok(info)
    }

    /// A room's settings and member count (`/`).
    pub fn room_info(&self, name: &str) -> Option<RoomInfo> {
        self.room(name).map(|r| lock(&r.state).info())
    }

    /// Every room of `/`, sorted by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self
            .inner
            .rooms
            .all()
            .flat_map(|s| {
                s.values()
                    .filter(|r| &*r.ns == "/")
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut infos: Vec<RoomInfo> = rooms.iter().map(|r| lock(&r.state).info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Deletes a room of `/` and its history; its members are unsubscribed. False if unknown.
    pub fn delete_room(&self, name: &str) -> bool {
        // The map's shard, then the room: the order `remove_if_removable` takes them in.
        // The store hears of the deletion while both are held, so every write of the old
        // room is queued before it and every write of a room of the same name made later
        // (which needs the shard) after it.
        let mut shard = self.inner.rooms.shard(name);
        let Some(room) = shard.remove(name) else {
            return false;
        };
        let members: Vec<Arc<Conn>> = {
            let mut st = lock(&room.state);
            st.dead = true;
            st.log.clear();
            st.users.clear();
            if let Some(store) = self.inner.store.get() {
                if !store.delete_room("/", name) {
                    self.inner.stats.store_dropped();
                }
            }
            st.members.drain().map(|(_, c)| c).collect()
        };
        drop(shard);
        for c in members {
            lock(&c.rooms).retain(|r| **r != *name);
        }
        true
    }

    /// Users in a room of `/`, sorted; `None` if the room does not exist.
    pub fn presence(&self, room: &str) -> Option<Vec<String>> {
        let r = self.room(room)?;
        let st = lock(&r.state);
        let mut users: Vec<String> = st.users.keys().map(|u| u.to_string()).collect();
        users.sort();
        Some(users)
    }

    /// A page of a room's history, newest first, and the `before` of the next page.
    pub fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Option<(Vec<Arc<Delivery>>, Option<u64>)> {
        let r = self.room(room)?;
        let st = lock(&r.state);
        Some(st.log.before(before, limit))
    }
}
