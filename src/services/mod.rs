//! The services: chat rooms, direct messages, presence for the seeds' BFF, notifications, and
//! the seeds' Socket.IO chat events (DESIGN.md, "Services").
//!
//! A layer of its own above the hub and the front ends: it uses the hub's public API (rooms,
//! emitters, schemas, room aliases, ops and hooks) and the Socket.IO namespace's event
//! handlers, and the hub learns nothing about chat or notifications. The binary installs it
//! ([`Services::install`]); a library user gets the same through [`crate::Hubbub`].
//!
//! - [`schema`]: the `chat` message schema (the seeds' validator);
//! - [`dm`]: direct messages kept per conversation and replayed through `dm:{user}`;
//! - [`notifications`]: per-user notifications with read state and the unread count;
//! - [`ops`]: the rooms and notifications requests over v1 and Socket.IO;
//! - [`seed_chat`]: the seeds' Socket.IO chat events;
//! - [`dashboard`]: the live dashboard's feed of the server's figures;
//! - [`admin`]: the server side of the official Socket.IO admin UI.

pub mod admin;
pub mod dashboard;
pub mod dm;
pub mod notifications;
pub mod ops;
pub mod schema;
pub mod seed_chat;

use std::sync::Arc;
use std::time::Duration;

use crate::hub::Hub;
use crate::sio::SocketIo;
use crate::store::{Snapshot, Store};

/// What the services need from the configuration.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServiceSettings {
    /// Direct messages kept per conversation; 0 keeps none (`dm_history`).
    pub dm_history: usize,
    /// How long kept messages last (`history_ttl`); zero for no limit.
    pub history_ttl: Duration,
    /// The admin UI's namespace: `None` for none, `Some(None)` without auth.
    pub admin: Option<Option<admin::AdminAuth>>,
}

impl ServiceSettings {
    /// Settings with direct messages kept (`dm_history`) for `history_ttl`.
    pub fn new(dm_history: usize, history_ttl: Duration) -> Self {
        Self {
            dm_history,
            history_ttl,
            admin: None,
        }
    }
}

/// The installed services.
#[derive(Clone, Debug)]
pub struct Services {
    /// Notifications and unread counts.
    pub notifications: Arc<Notifications>,
    /// The seeds' chat events.
    pub seed_chat: Arc<seed_chat::SeedChat>,
    /// The admin UI's server side, when on.
    pub admin: Option<Arc<admin::Admin>>,
}

pub use notifications::Notifications;

impl Services {
    /// Installs every service on `hub` and the main namespace of `io`, with what `snapshot`
    /// brought back from `store`.
    pub fn install(
        hub: &Hub,
        io: &SocketIo,
        settings: &ServiceSettings,
        store: Option<Arc<dyn Store>>,
        snapshot: &Snapshot,
    ) -> Self {
        hub.add_schema(schema::CHAT, schema::check_chat_body);
        if settings.dm_history > 0 {
            hub.set_aliases(Arc::new(dm::DirectMessages {
                history: settings.dm_history,
                history_ttl: settings.history_ttl.as_secs(),
            }));
        }
        let notifications = Notifications::new(hub.clone(), store, snapshot);
        if settings.dm_history > 0 {
            dm::notify_addressees(hub, &notifications);
        }
        let main = io.of("/").unwrap_or_else(|| io.ns("/", |_| {}));
        ops::install(hub, &main, &notifications);
        let seed_chat = seed_chat::SeedChat::install(hub, &main);
        let admin = settings
            .admin
            .clone()
            .map(|auth| admin::Admin::install(hub, io, auth));
        Self {
            notifications,
            seed_chat,
            admin,
        }
    }
}
