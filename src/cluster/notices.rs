//! Notifications kept by the cluster (`store = "redis"`): every node holds the same
//! notifications and read marks, so a user hears of a notification on whichever node their
//! connections are, and lists and marks them from any node.
//!
//! The node that makes a notification gives it an id unique in the cluster (its slot among
//! the nodes is part of it, from `INCR hubbub:notification-slot`), and one Lua script keeps
//! it (`HSET hubbub:notifications <id> <json>`, its id in the sorted set of its user, or of
//! everyone, trimmed to the latest [`crate::services::notifications::KEEP`]) and publishes it
//! on `hubbub-notice#`; read marks go to the set `hubbub:notifications:read:<user>` and are
//! published the same way. Each node applies what the others publish ([`Replicated`]), and
//! reads everything back when it (re)connects, before it is ready.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::RedisAdapter;
use crate::error::HubError;
use crate::store::{NotificationRow, ReadMarks, Snapshot};

impl RedisAdapter {
    /// Every kept notification by id (JSON).
    fn rows_key(&self) -> String {
        self.names.key("notifications")
    }

    /// Gives each node its slot in notification ids.
    fn slots_key(&self) -> String {
        self.names.key("notification-slot")
    }

    /// The sorted set of the ids of `user`'s notifications (`None`: those to everyone).
    fn ids_key(&self, user: Option<&str>) -> String {
        match user {
            Some(u) => self.names.key(&format!("notifications:user:{u}")),
            None => self.names.key("notifications:all"),
        }
    }

    /// The set of the ids `user` has read.
    fn read_key(&self, user: &str) -> String {
        self.names.key(&format!("notifications:read:{user}"))
    }
}

/// Keeps one notification and publishes it; 0 when its id is taken (two nodes with one
/// slot: refused rather than overwritten). KEYS: the rows, the recipient's ids, the
/// recipient's read set (a user's own; for everyone's, a key never written). ARGV: the id,
/// the row, how many the recipient keeps, the channel, the message.
const PUT: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  for i = 1, #old, 1000 do
    local part = {unpack(old, i, math.min(i + 999, #old))}
    redis.call('HDEL', KEYS[1], unpack(part))
    redis.call('SREM', KEYS[3], unpack(part))
  end
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Keeps read marks and publishes them. KEYS: the user's read set. ARGV: the channel, the
/// message, the ids.
const READ: &str = r"
if #ARGV > 2 then
  redis.call('SADD', KEYS[1], unpack(ARGV, 3))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
";

/// What another node did to the notifications, or what they all are after a catch-up.
#[derive(Debug)]
pub enum Replicated {
    /// A new notification.
    Notification(NotificationRow),
    /// Read marks.
    Read(ReadMarks),
    /// Everything the cluster keeps, read back, and this node's slot in ids.
    Loaded {
        /// The notifications and the reads of notifications to everyone.
        snapshot: Snapshot,
        /// This node's slot.
        slot: u64,
    },
}

/// Called with what [`Replicated`] says, on the task that listens to Redis.
pub type NoticeHandler = Box<dyn Fn(Replicated) + Send + Sync>;

/// Where [`Replicated`] goes, once the notification service said.
#[derive(Default)]
pub(super) struct Handler(std::sync::OnceLock<NoticeHandler>);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Handler")
            .field(&self.0.get().is_some())
            .finish()
    }
}

impl Handler {
    /// True when `f` is the handler now (the first one set).
    fn set(&self, f: NoticeHandler) -> bool {
        self.0.set(f).is_ok()
    }

    fn get(&self) -> Option<&NoticeHandler> {
        self.0.get()
    }
}

fn row_json(row: &NotificationRow) -> Value {
    json!({
        "id": row.id,
        "user": row.user.as_deref(),
        "event": &*row.event,
        "data": serde_json::from_slice::<Value>(&row.data).unwrap_or(Value::Null),
        "ts": row.ts,
    })
}

fn row_of(v: &Value) -> Option<NotificationRow> {
    Some(NotificationRow {
        id: v.get("id")?.as_u64()?,
        user: match v.get("user")? {
            Value::Null => None,
            u => Some(u.as_str()?.into()),
        },
        event: v.get("event")?.as_str()?.into(),
        data: Bytes::from(v.get("data")?.to_string()),
        ts: v.get("ts")?.as_u64()?,
        read: false,
    })
}

fn ids_of(v: Option<&Value>) -> Vec<u64> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

impl RedisAdapter {
    /// Hands what other nodes do to the notifications (and the catch-up) to `f`. Only the
    /// first call counts.
    ///
    /// The connection is made in the background from [`RedisAdapter::start`], so a
    /// catch-up may already have run without anyone to hand the notifications to. If so,
    /// it runs again, and the node is not ready (`/readyz`) until that one is done.
    pub fn on_notices(&self, f: impl Fn(Replicated) + Send + Sync + 'static) {
        if self.notices.set(Box::new(f)) && self.config.keep_history && self.link.health().is_ok() {
            self.on_listening(true);
        }
    }

    /// Keeps a notification in the cluster and publishes it; `done` hears when Redis has it.
    pub(super) fn put_notification(
        &self,
        row: &NotificationRow,
        keep: usize,
        done: Box<dyn FnOnce(Result<(), HubError>) + Send>,
    ) -> Result<(), HubError> {
        self.kept_health()?;
        let message = json!({ "uid": self.uid, "notification": row_json(row) });
        let mut cmd = redis::cmd("EVAL");
        let read = match row.user.as_deref() {
            Some(u) => self.read_key(u),
            None => self.names.key("notifications:read-none"),
        };
        cmd.arg(PUT)
            .arg(3)
            .arg(self.rows_key())
            .arg(self.ids_key(row.user.as_deref()))
            .arg(read)
            .arg(row.id)
            .arg(row_json(row).to_string())
            .arg(keep.max(1))
            .arg(self.names.hub_notices())
            .arg(message.to_string());
        self.link.eval(
            cmd,
            Box::new(move |r| {
                done(r.and_then(|v| match v {
                    redis::Value::Int(1) => Ok(()),
                    _ => Err(HubError::new(
                        crate::error::ErrorCode::Unavailable,
                        "a notification with this id exists in the cluster",
                    )),
                }))
            }),
        )
    }

    /// Keeps read marks in the cluster and publishes them.
    pub(super) fn mark_read(
        &self,
        marks: &ReadMarks,
        done: Box<dyn FnOnce(Result<(), HubError>) + Send>,
    ) -> Result<(), HubError> {
        self.kept_health()?;
        let message = json!({
            "uid": self.uid,
            "read": {"user": &*marks.user, "own": marks.own, "shared": marks.shared},
        });
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(READ)
            .arg(1)
            .arg(self.read_key(&marks.user))
            .arg(self.names.hub_notices())
            .arg(message.to_string());
        for id in marks.own.iter().chain(&marks.shared) {
            cmd.arg(*id);
        }
        self.link.eval(cmd, Box::new(move |r| done(r.map(|_| ()))))
    }

    /// A message on the notices channel: another node's notification or read marks.
    pub(super) fn on_notice(&self, payload: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            tracing::debug!("a notice that is not JSON");
            return;
        };
        if v.get("uid").and_then(Value::as_str) == Some(&self.uid) {
            return;
        }
        let replicated = if let Some(row) = v.get("notification").and_then(row_of) {
            Replicated::Notification(row)
        } else if let Some(r) = v.get("read") {
            let Some(user) = r.get("user").and_then(Value::as_str) else {
                return;
            };
            Replicated::Read(ReadMarks {
                user: user.into(),
                own: ids_of(r.get("own")),
                shared: ids_of(r.get("shared")),
            })
        } else {
            tracing::debug!("a notice this node does not know");
            return;
        };
        self.hand_notice(replicated);
    }

    /// Hands `r` on, or keeps it for after the catch-up under way.
    fn hand_notice(&self, r: Replicated) {
        let mut waiting = super::lock(&self.notices_waiting);
        match waiting.as_mut() {
            Some(w) => w.push(r),
            None => {
                drop(waiting);
                if let Some(f) = self.notices.get() {
                    f(r);
                }
            }
        }
    }

    /// Reads back every notification and read mark the cluster keeps and hands them on
    /// (what other nodes publish meanwhile follows them).
    pub(super) async fn load_notices(&self) -> Result<(), HubError> {
        if self.notices.get().is_none() {
            return Ok(());
        }
        let _one_at_a_time = self.notices_loading.lock().await;
        *super::lock(&self.notices_waiting) = Some(Vec::new());
        let loaded = match self.read_notices().await {
            Ok(l) => l,
            Err(e) => {
                *super::lock(&self.notices_waiting) = None;
                return Err(e);
            }
        };
        if let Some(f) = self.notices.get() {
            // The snapshot first, while what others publish still waits: applied after it,
            // nothing published meanwhile is overwritten by the snapshot.
            f(loaded);
            let waiting = super::lock(&self.notices_waiting)
                .take()
                .unwrap_or_default();
            waiting.into_iter().for_each(f);
        }
        Ok(())
    }

    async fn read_notices(&self) -> Result<Replicated, HubError> {
        let slot = match self.slot.get() {
            Some(s) => *s,
            None => {
                let n: u64 = self
                    .link
                    .query(redis::cmd("INCR").arg(self.slots_key()))
                    .await?;
                *self
                    .slot
                    .get_or_init(|| n.saturating_sub(1) % crate::services::notifications::ID_SLOTS)
            }
        };
        let rows: HashMap<String, String> = self
            .link
            .query(redis::cmd("HGETALL").arg(self.rows_key()))
            .await?;
        let mut rows: Vec<NotificationRow> = rows
            .values()
            .filter_map(|j| serde_json::from_str::<Value>(j).ok())
            .filter_map(|v| row_of(&v))
            .collect();
        rows.sort_by_key(|r| r.id);
        let at: HashMap<u64, usize> = rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        let mut reads = Vec::new();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(self.read_key("*"))
                .arg("COUNT")
                .arg(500);
            let (next, found): (u64, Vec<String>) = self.link.query(&scan).await?;
            keys.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let prefix = self.read_key("");
        for key in keys {
            let Some(user) = key.strip_prefix(&prefix) else {
                continue;
            };
            let ids: Vec<u64> = self.link.query(redis::cmd("SMEMBERS").arg(&key)).await?;
            let user: Arc<str> = user.into();
            for id in ids {
                let Some(r) = at.get(&id).map(|i| &mut rows[*i]) else {
                    continue;
                };
                match r.user.as_deref() {
                    Some(u) if u == &*user => r.read = true,
                    None => reads.push((user.clone(), id)),
                    _ => {}
                }
            }
        }
        Ok(Replicated::Loaded {
            snapshot: Snapshot {
                margin: 0,
                rooms: Vec::new(),
                notifications: rows,
                reads,
            },
            slot,
        })
    }
}
