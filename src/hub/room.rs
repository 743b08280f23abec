//! A room: its settings, its state (members, users, history log) and how the hub finds or
//! creates one. Rooms live in a sharded map keyed by namespace and name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::conn::{Conn, ConnId};
use super::history::HistoryLog;
use super::shards::lock;
use super::Hub;
use crate::error::HubError;

/// The settings of a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// The room name.
    pub name: String,
    /// At most this many users (not connections) may be members; `None` is unlimited.
    pub max_users: Option<usize>,
    /// Private rooms need an explicit grant to join (enforced when auth is on).
    #[serde(default)]
    pub private: bool,
    /// Messages kept for replay; 0 keeps none and numbers nothing.
    pub history: usize,
    /// Whether members hear `presence` events. On by default; a broadcast channel with
    /// thousands of subscribers turns it off, since every join would reach every member.
    #[serde(default = "yes")]
    pub presence: bool,
}

pub(super) fn yes() -> bool {
    true
}

/// A room as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// The room name.
    pub name: String,
    /// Users in the room.
    pub members: usize,
    /// The user limit, `null` when unlimited.
    pub max_users: Option<usize>,
    /// Whether joining needs a grant.
    pub private: bool,
    /// Messages kept.
    pub history: usize,
    /// Whether members hear presence events.
    pub presence: bool,
}

/// What a join returns; the front end turns it into its ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: Arc<str>,
    /// The last seq, for history rooms.
    pub seq: Option<u64>,
    /// Users in the room after the join.
    pub members: usize,
    /// Some requested history was no longer kept.
    pub gap: bool,
}

/// Which history a join replays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Nothing.
    #[default]
    None,
    /// Messages after this seq.
    Since(u64),
    /// The n latest.
    Latest(u64),
}

#[derive(Debug)]
pub(super) struct RoomState {
    pub(super) dead: bool,
    /// Created through the API: lives until deleted, even when empty.
    pub(super) pinned: bool,
    pub(super) settings: RoomSettings,
    pub(super) members: HashMap<ConnId, Arc<Conn>>,
    /// Connections per user in this room.
    pub(super) users: HashMap<Arc<str>, usize>,
    pub(super) log: HistoryLog,
}

impl RoomState {
    pub(super) fn removable(&self) -> bool {
        !self.pinned && self.members.is_empty() && self.log.is_empty()
    }

    pub(super) fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.settings.name.clone(),
            members: self.users.len(),
            max_users: self.settings.max_users,
            private: self.settings.private,
            history: self.settings.history,
            presence: self.settings.presence,
        }
    }
}

#[derive(Debug)]
pub(super) struct Room {
    /// The name clients see.
    pub(super) name: Arc<str>,
    /// The map key: the name in `/`, `ns` + NUL + name elsewhere.
    pub(super) key: Arc<str>,
    pub(super) ns: Arc<str>,
    pub(super) state: Mutex<RoomState>,
}

/// The rooms map key of `room` in `ns` (names cannot contain NUL, so keys never collide).
pub(super) fn room_key(ns: &str, room: &str) -> Arc<str> {
    if ns == "/" {
        room.into()
    } else {
        format!("{ns}\0{room}").into()
    }
}

impl Hub {
    pub(super) fn default_settings(&self, name: &str) -> RoomSettings {
        RoomSettings {
            name: name.to_string(),
            max_users: None,
            private: false,
            history: self.inner.config.default_history,
            presence: true,
        }
    }

    pub(super) fn room_or_create(&self, ns: &Arc<str>, name: &str) -> Arc<Room> {
        let key = room_key(ns, name);
        let mut rooms = self.inner.rooms.shard(&*key);
        rooms
            .entry(key.clone())
            .or_insert_with(|| {
                let settings = self.default_settings(name);
                Arc::new(Room {
                    name: name.into(),
                    key,
                    ns: ns.clone(),
                    state: Mutex::new(RoomState {
                        dead: false,
                        pinned: false,
                        log: HistoryLog::new(settings.history),
                        settings,
                        members: HashMap::new(),
                        users: HashMap::new(),
                    }),
                })
            })
            .clone()
    }

    pub(super) fn room_in(&self, ns: &str, name: &str) -> Option<Arc<Room>> {
        let key = room_key(ns, name);
        self.inner.rooms.shard(&*key).get(&key).cloned()
    }

    pub(super) fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.room_in("/", name)
    }

    pub(super) fn remove_if_removable(&self, room: &Arc<Room>) {
        let mut rooms = self.inner.rooms.shard(&*room.key);
        let mut st = lock(&room.state);
        if st.removable() && !st.dead {
            st.dead = true;
            rooms.remove(&room.key);
        }
    }
}

pub(super) fn check_name(name: &str, field: &str) -> Result<(), HubError> {
    if name.is_empty() || name.len() > crate::protocol::v1::MAX_NAME_LEN || name.contains('\0') {
        return Err(HubError::bad_request(format!(
            "`{field}` must be a non-empty string of at most {} bytes, without NUL",
            crate::protocol::v1::MAX_NAME_LEN
        )));
    }
    Ok(())
}
