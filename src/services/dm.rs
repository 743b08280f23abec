//! Direct messages kept per conversation (DESIGN.md, "Services"): with `dm_history` above
//! zero, every message one user sends another (v1 `send`, the Socket.IO `send` event,
//! `POST /api/push` with `from`) is numbered and kept in the conversation of the two users,
//! and a client replays a conversation by joining the room `dm:{other user}` with `since` or
//! `history`, as any history room.
//!
//! A conversation is an internal hub room (see [`crate::hub::RoomAliases`]) named after the
//! pair of users, so each of them reaches it as `dm:{the other}` and nobody else can. Its
//! messages carry `from` and `to` and no `room`; they reach every connection of the
//! addressee as before, and the connections of either user that joined the conversation.

use std::sync::Arc;

use crate::error::HubError;
use crate::hub::room::INTERNAL_MARK;
use crate::hub::{Alias, RoomAliases, RoomSettings};
use crate::protocol::v1::{is_user_name, RawJson};
use crate::services::notifications::{Notifications, Recipient};

/// The prefix of conversation room names.
pub const PREFIX: &str = "dm:";

/// Keeps direct messages.
#[derive(Debug, Clone)]
pub struct DirectMessages {
    /// Messages kept per conversation.
    pub history: usize,
    /// Seconds a message is kept (0: no limit).
    pub history_ttl: u64,
}

impl DirectMessages {
    /// The conversation of users `a` and `b` (in either order).
    pub fn conversation(&self, a: &str, b: &str) -> Alias {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        let key: Arc<str> = format!("dm{INTERNAL_MARK}{x}{INTERNAL_MARK}{y}").into();
        Alias {
            settings: RoomSettings {
                name: key.to_string(),
                max_users: None,
                private: true,
                history: self.history,
                history_ttl: self.history_ttl,
                presence: false,
                schema: None,
            },
            key,
            publish: false,
        }
    }
}

impl RoomAliases for DirectMessages {
    fn resolve(&self, user: &str, name: &str) -> Option<Result<Alias, HubError>> {
        let other = name.strip_prefix(PREFIX)?;
        if !is_user_name(other) || !is_user_name(user) {
            return Some(Err(HubError::bad_request(
                "a conversation is `dm:` followed by the other user's name",
            )));
        }
        Some(Ok(self.conversation(user, other)))
    }

    fn user_log(&self, from: &str, to: &str) -> Option<Alias> {
        // Names with control characters cannot be told apart in the key; they are never
        // users (every way in refuses them), so such a message is simply not kept.
        (is_user_name(from) && is_user_name(to)).then(|| self.conversation(from, to))
    }

    fn settings_for(&self, key: &str) -> Option<RoomSettings> {
        let mut parts = key.split(INTERNAL_MARK);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("dm"), Some(a), Some(b), None) => Some(self.conversation(a, b).settings),
            _ => None,
        }
    }
}

/// Raises a notification (event `dm`, data `{from, conversation, seq}`) for the addressee
/// of every kept direct message: the seeds' "in-site message" red dot. A client that shows
/// the conversation marks them read.
pub fn notify_addressees(hub: &crate::hub::Hub, notifications: &std::sync::Arc<Notifications>) {
    let notifications = std::sync::Arc::downgrade(notifications);
    hub.on_kept(move |_, d| {
        let Some(m) = d.message() else { return };
        let (Some(room), Some(to), Some(from), Some(seq)) = (&m.room, &m.to, &m.from, m.seq) else {
            return;
        };
        if !room.starts_with(&format!("dm{INTERNAL_MARK}")) || from == to {
            return;
        }
        let Some(n) = notifications.upgrade() else {
            return;
        };
        let data = serde_json::json!({
            "from": &**from,
            "conversation": format!("{PREFIX}{from}"),
            "seq": seq,
        });
        if let Err(e) = n.notify(
            Recipient::User(to.clone()),
            "dm",
            RawJson::from_value(&data),
        ) {
            tracing::debug!("no notification for a direct message to {to}: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_users_reach_the_same_conversation_and_nobody_else_does() {
        let dm = DirectMessages {
            history: 50,
            history_ttl: 0,
        };
        let ann = dm.resolve("ann", "dm:bob").unwrap().unwrap();
        let bob = dm.resolve("bob", "dm:ann").unwrap().unwrap();
        let eve = dm.resolve("eve", "dm:bob").unwrap().unwrap();
        assert_eq!(ann.key, bob.key);
        assert_ne!(ann.key, eve.key);
        assert_eq!(dm.user_log("bob", "ann").unwrap().key, ann.key);
        assert!(crate::hub::is_internal(&ann.key));
        assert_eq!(ann.settings.history, 50);
        assert!(!ann.publish);
        assert!(dm.resolve("ann", "lobby").is_none());
        assert!(dm.resolve("ann", "dm:").unwrap().is_err());
        assert!(dm.resolve("ann", "dm:b\u{1f}c").unwrap().is_err());
        assert!(dm.user_log("a\u{1f}b", "c").is_none());
        assert_eq!(dm.settings_for(&ann.key), Some(ann.settings.clone()));
        assert_eq!(dm.settings_for("lobby"), None);
    }
}
