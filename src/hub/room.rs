//! A room: its settings, its state (members, users, history log) and how the hub finds or
//! creates one. Rooms live in a sharded map keyed by namespace and name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::conn::{Conn, ConnId};
use super::delivery::Delivery;
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
    /// Kept messages older than this many seconds are dropped; 0 keeps them whatever their
    /// age.
    #[serde(default)]
    pub history_ttl: u64,
    /// Whether members hear `presence` events. On by default; a broadcast channel with
    /// thousands of subscribers turns it off, since every join would reach every member.
    #[serde(default = "yes")]
    pub presence: bool,
    /// The validator the data of every message must pass (one the application registered
    /// with [`Hub::add_schema`], such as the services' `chat`); `None` accepts any data.
    #[serde(default)]
    pub schema: Option<String>,
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
    /// Seconds a kept message lasts, 0 for no limit.
    pub history_ttl: u64,
    /// Whether members hear presence events.
    pub presence: bool,
    /// The schema messages must follow, if any.
    pub schema: Option<String>,
}

/// What a join returns; the front end turns it into its ack.
#[derive(Clone, Debug, Default)]
pub struct Joined {
    /// The room, as the client named it.
    pub room: Arc<str>,
    /// The last seq, for history rooms.
    pub seq: Option<u64>,
    /// Users in the room after the join.
    pub members: usize,
    /// Some requested history was no longer kept.
    pub gap: bool,
    /// The replayed messages, oldest first, when the join asked for them to be handed
    /// over ([`ReplayFrom::Gather`]) rather than queued one by one.
    pub gathered: Vec<Arc<Delivery>>,
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
    /// The n latest, handed to the ack builder in [`Joined::gathered`] instead of being
    /// queued (the seeds' `room-history`, one event with every kept message).
    Gather(u64),
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
    /// Connections that are not members but received this room's messages addressed to
    /// their user (a direct message reaches every device of its addressee), with the first
    /// seq each received that way: a later join with replay skips what they already have.
    pub(super) outside: HashMap<ConnId, u64>,
    /// Messages published to the room since it came into being (for the dashboard).
    pub(super) published: u64,
    /// While missed messages of a room the cluster keeps are read back: what arrived
    /// meanwhile, to land after them ([`super::shared`]).
    pub(super) waiting: Option<Vec<super::shared::Arrival>>,
}

impl RoomState {
    pub(super) fn new(settings: RoomSettings, pinned: bool, log: HistoryLog) -> Self {
        Self {
            dead: false,
            pinned,
            log,
            settings,
            members: HashMap::new(),
            users: HashMap::new(),
            outside: HashMap::new(),
            published: 0,
            waiting: None,
        }
    }

    pub(super) fn removable(&self) -> bool {
        !self.pinned && self.members.is_empty() && self.log.is_empty() && self.waiting.is_none()
    }

    pub(super) fn info(&self) -> RoomInfo {
        RoomInfo {
            name: self.settings.name.clone(),
            members: self.users.len(),
            max_users: self.settings.max_users,
            private: self.settings.private,
            history: self.settings.history,
            history_ttl: self.settings.history_ttl,
            presence: self.settings.presence,
            schema: self.settings.schema.clone(),
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

/// The character that marks the name of an internal room: a room an application maps its
/// own names onto ([`super::RoomAliases`]), never named by clients (their room names have
/// no control characters), never listed, and never shown in the messages it delivers.
pub const INTERNAL_MARK: char = '\u{1f}';

/// Whether `room` is an internal room (see [`INTERNAL_MARK`]).
pub fn is_internal(room: &str) -> bool {
    room.contains(INTERNAL_MARK)
}

impl Hub {
    pub(super) fn default_settings(&self, name: &str) -> RoomSettings {
        RoomSettings {
            name: name.to_string(),
            max_users: None,
            private: false,
            history: self.inner.config.default_history,
            history_ttl: self.inner.config.history_ttl.as_secs(),
            presence: true,
            schema: None,
        }
    }

    /// The room `name` of `ns`, created with `settings` (the defaults when `None`) if it
    /// does not exist.
    pub(super) fn room_or_create_with(
        &self,
        ns: &Arc<str>,
        name: &str,
        settings: Option<&RoomSettings>,
    ) -> Arc<Room> {
        let key = room_key(ns, name);
        let mut rooms = self.inner.rooms.shard(&*key);
        rooms
            .entry(key.clone())
            .or_insert_with(|| {
                self.room_changed(ns, name, true);
                // Rooms an application maps names onto are not pinned: an empty one with no
                // history goes, and a restart asks the application for their settings
                // (`RoomAliases::settings_for`).
                let pinned = false;
                let settings = settings
                    .cloned()
                    .unwrap_or_else(|| self.default_settings(name));
                let log =
                    HistoryLog::new(settings.history, settings.history_ttl.saturating_mul(1000));
                Arc::new(Room {
                    name: name.into(),
                    key,
                    ns: ns.clone(),
                    state: Mutex::new(RoomState::new(settings, pinned, log)),
                })
            })
            .clone()
    }

    pub(super) fn room_in(&self, ns: &str, name: &str) -> Option<Arc<Room>> {
        let key = room_key(ns, name);
        self.inner.rooms.shard(&*key).get(&key).cloned()
    }

    /// Every room of every namespace (a snapshot of the map).
    pub(super) fn all_rooms(&self) -> Vec<Arc<Room>> {
        self.inner
            .rooms
            .all()
            .flat_map(|s| s.values().cloned().collect::<Vec<_>>())
            .collect()
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
            self.room_changed(&room.ns, &room.name, false);
        }
    }

    /// Tells the cluster adapter a room came or went (the map's shard is locked).
    pub(super) fn room_changed(&self, ns: &str, name: &str, here: bool) {
        if let Some(a) = self.inner.adapter.get() {
            a.room_changed(ns, name, here);
        }
    }
}

/// Checks a room name a client or the API gave: 1 to 200 bytes, no control characters
/// (which also keeps clients out of internal rooms).
pub(super) fn check_name(name: &str, field: &str) -> Result<(), HubError> {
    if name.is_empty()
        || name.len() > crate::protocol::v1::MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(HubError::bad_request(format!(
            "`{field}` must be a non-empty string of at most {} bytes, without control \
             characters",
            crate::protocol::v1::MAX_NAME_LEN
        )));
    }
    Ok(())
}
