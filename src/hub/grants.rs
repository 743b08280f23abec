//! Authorization: what a connection may do in which room, from its token's claims.
//!
//! Claims: `rooms` maps room patterns (an exact name, a prefix ending in `*`, or `*`; the
//! most specific pattern that matches decides) to rights among `join`, `publish`, `presence` (receive the room's presence events) and
//! `history` (replay on join), `manage` (create and delete the room: never implied, it must
//! be granted by a pattern); `broadcast: true` allows the broadcast op;
//! `single_session: true` applies the single-session policy to this user. A token without
//! `rooms` may do everything in every room that is not private; a private room needs a
//! pattern that grants the right. Connections without grants (auth mode `none`, where
//! every client is trusted) are not restricted.

use serde_json::Value;

/// One right in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    /// Subscribe.
    Join,
    /// Send to the room.
    Publish,
    /// Receive the room's presence events.
    Presence,
    /// Replay the room's history on join.
    History,
    /// Create and delete the room (granted only by a pattern that names it).
    Manage,
}

impl Right {
    fn bit(self) -> u8 {
        match self {
            Self::Join => 1,
            Self::Publish => 2,
            Self::Presence => 4,
            Self::History => 8,
            Self::Manage => 16,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "join" => Self::Join,
            "publish" => Self::Publish,
            "presence" => Self::Presence,
            "history" => Self::History,
            "manage" => Self::Manage,
            _ => return None,
        })
    }

    /// The right's name in claims and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Publish => "publish",
            Self::Presence => "presence",
            Self::History => "history",
            Self::Manage => "manage",
        }
    }
}

/// The rights a token grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Room patterns and their rights (bit sets); `None` when the token has no `rooms`
    /// claim (every right in rooms that are not private).
    rooms: Option<Vec<(String, u8)>>,
    /// Whether the broadcast op is allowed.
    pub broadcast: bool,
    /// `single_session: true`: this user's new connection closes their older ones (4409),
    /// whatever the server-wide `single_session` setting says.
    pub single_session: bool,
}

impl Grants {
    /// Reads `rooms` and `broadcast` from verified claims; unknown rights are ignored.
    pub fn from_claims(claims: &Value) -> Self {
        let rooms = claims.get("rooms").and_then(Value::as_object).map(|map| {
            map.iter()
                .map(|(pattern, rights)| {
                    let bits = rights
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .filter_map(Right::parse)
                                .fold(0, |acc, r| acc | r.bit())
                        })
                        .unwrap_or(0);
                    (pattern.clone(), bits)
                })
                .collect()
        });
        Self {
            rooms,
            broadcast: claims.get("broadcast") == Some(&Value::Bool(true)),
            single_session: claims.get("single_session") == Some(&Value::Bool(true)),
        }
    }

    /// Whether `right` is granted in `room` (`private` as the room's settings say).
    pub fn allows(&self, room: &str, private: bool, right: Right) -> bool {
        match &self.rooms {
            None => !private && right != Right::Manage,
            // The most specific matching pattern decides: the exact name, else the longest
            // prefix (`*` is the empty prefix).
            Some(list) => list
                .iter()
                .filter(|(pattern, _)| matches(pattern, room))
                .max_by_key(|(pattern, _)| (!pattern.ends_with('*'), pattern.len()))
                .is_some_and(|(_, bits)| bits & right.bit() != 0),
        }
    }
}

/// `*` matches everything, `prefix*` every name starting with the prefix, anything else
/// only itself.
fn matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_grant_rights_and_private_rooms_need_them() {
        let g = Grants::from_claims(&json!({
            "rooms": {"lobby": ["join", "publish", "bogus"], "team-*": ["join", "history"], "*": ["join"]},
            "broadcast": true
        }));
        assert!(g.allows("lobby", false, Right::Publish));
        assert!(g.allows("team-a", true, Right::History));
        assert!(!g.allows("team-a", false, Right::Publish));
        assert!(
            g.allows("other", true, Right::Join),
            "a wildcard grant covers private rooms"
        );
        assert!(!g.allows("other", false, Right::Presence));
        assert!(g.broadcast);
        let open = Grants::from_claims(&json!({"sub": "x"}));
        assert!(open.allows("any", false, Right::Presence));
        assert!(!open.allows("secret", true, Right::Join));
        assert!(
            !open.allows("any", false, Right::Manage),
            "manage is never implied"
        );
        let admin = Grants::from_claims(&json!({"rooms": {"*": ["manage"]}}));
        assert!(admin.allows("any", true, Right::Manage));
        assert!(!open.broadcast);
    }
}
