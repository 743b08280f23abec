//! The hub's views across a cluster: who is online, a user's devices, a room's presence and
//! closing a user's connections, gathered from every node's [`Query`] answer (only this
//! node's without a cluster). A node that does not answer in time is left out.

use std::collections::BTreeMap;

use serde_json::Value;

use super::adapter::Query;
use super::users::OnlineUser;
use super::Hub;
use crate::error::HubError;

impl Hub {
    /// Users online on any node: connections summed, `since` the earliest, sorted by user.
    pub async fn online_everywhere(&self) -> Result<Vec<OnlineUser>, HubError> {
        let mut by_user: BTreeMap<String, OnlineUser> = BTreeMap::new();
        for answer in self.ask_cluster(Query::Online).await? {
            let users: Vec<OnlineUser> = serde_json::from_value(answer).unwrap_or_default();
            for u in users {
                match by_user.get_mut(&u.user) {
                    Some(have) => {
                        have.connections += u.connections;
                        have.since = have.since.min(u.since);
                    }
                    None => {
                        by_user.insert(u.user.clone(), u);
                    }
                }
            }
        }
        Ok(by_user.into_values().collect())
    }

    /// A user's connections on every node, oldest first.
    pub async fn devices_everywhere(&self, user: &str) -> Result<Vec<Value>, HubError> {
        let q = Query::Devices {
            user: user.to_string(),
        };
        let mut all: Vec<Value> = self
            .ask_cluster(q)
            .await?
            .into_iter()
            .flat_map(|a| match a {
                Value::Array(v) => v,
                _ => Vec::new(),
            })
            .collect();
        all.sort_by_key(|d| d.get("since").and_then(Value::as_u64).unwrap_or(0));
        Ok(all)
    }

    /// The users in `room` of `/` on any node, sorted; `None` when no node has the room.
    pub async fn presence_everywhere(&self, room: &str) -> Result<Option<Vec<String>>, HubError> {
        let q = Query::Presence {
            ns: "/".into(),
            room: room.to_string(),
        };
        let answers = self.ask_cluster(q).await?;
        if answers.iter().all(Value::is_null) {
            return Ok(None);
        }
        let mut users: Vec<String> = answers
            .iter()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        users.sort();
        users.dedup();
        Ok(Some(users))
    }

    /// Closes `user`'s connections on every node (all, `only` one id, or all `except` one)
    /// with `code`; returns how many were closed.
    pub async fn disconnect_everywhere(
        &self,
        user: &str,
        only: Option<String>,
        except: Option<String>,
        code: u16,
        reason: &str,
    ) -> Result<usize, HubError> {
        let q = Query::Disconnect {
            user: user.to_string(),
            only,
            except,
            code,
            reason: reason.to_string(),
        };
        Ok(self
            .ask_cluster(q)
            .await?
            .iter()
            .filter_map(Value::as_u64)
            .sum::<u64>() as usize)
    }
}
