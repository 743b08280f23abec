//! Which nodes are alive: each writes `hubbub:node:<id>` (its id, connections, users online,
//! when it started) every `heartbeat_interval / 2`, expiring after `2 × heartbeat_interval`,
//! and adds its id to the set `hubbub:nodes`. The list of nodes is the set's members whose
//! key still exists; a node that shuts down takes itself out, one that died drops out when
//! its key expires (and is then taken out of the set by whoever lists).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::RedisAdapter;
use crate::error::HubError;
use crate::hub::now_ms;

/// The set of the cluster's node ids.
fn nodes_key(a: &RedisAdapter) -> String {
    a.names.key("nodes")
}

/// A node's heartbeat key.
fn key(a: &RedisAdapter, node: &str) -> String {
    a.names.key(&format!("node:{node}"))
}

/// Starts writing this node's heartbeat key; stops when the adapter is dropped.
pub(super) fn start_heartbeat(adapter: &Arc<RedisAdapter>) {
    let me = Arc::downgrade(adapter);
    let every = (adapter.config.heartbeat_interval / 2).max(Duration::from_millis(100));
    let ttl = adapter.config.heartbeat_interval * 2;
    let started = now_ms();
    tokio::spawn(async move {
        loop {
            let Some(a) = me.upgrade() else { return };
            let Some(hub) = a.hub.upgrade() else { return };
            if a.left.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            if a.link.health().is_err() {
                // Beat as soon as Redis is back.
                drop((a, hub));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let body = json!({
                "node": a.uid,
                "connections": hub.connection_count(),
                "users_online": hub.users_online().len(),
                "started": started,
                "seen": now_ms(),
            });
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(key(&a, &a.uid))
                .arg(body.to_string())
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore()
                .cmd("SADD")
                .arg(nodes_key(&a))
                .arg(&a.uid)
                .ignore();
            if let Err(e) = a.link.run(&pipe).await {
                tracing::debug!(error = %e, "heartbeat not written");
            }
            drop((a, hub));
            tokio::time::sleep(every).await;
        }
    });
}

/// Takes this node out of the list (a clean shutdown).
pub(super) async fn leave(a: &RedisAdapter) {
    let mut pipe = redis::pipe();
    pipe.cmd("DEL")
        .arg(key(a, &a.uid))
        .ignore()
        .cmd("SREM")
        .arg(nodes_key(a))
        .arg(&a.uid)
        .ignore();
    if let Err(e) = a.link.run(&pipe).await {
        tracing::debug!(error = %e, "could not take this node out of the list");
    }
}

/// The live nodes' heartbeats, sorted by id.
pub(super) async fn list(a: &RedisAdapter) -> Result<Vec<Value>, HubError> {
    let mut cmd = redis::cmd("SMEMBERS");
    cmd.arg(nodes_key(a));
    let mut ids: Vec<String> = a.link.query(&cmd).await?;
    ids.sort();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = redis::cmd("MGET");
    for id in &ids {
        cmd.arg(key(a, id));
    }
    let beats: Vec<Option<String>> = a.link.query(&cmd).await?;
    let mut gone = Vec::new();
    let mut live = Vec::new();
    for (id, beat) in ids.iter().zip(beats) {
        match beat.and_then(|b| serde_json::from_str::<Value>(&b).ok()) {
            Some(v) => live.push(v),
            None => gone.push(id.clone()),
        }
    }
    if !gone.is_empty() {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(nodes_key(a)).arg(&gone);
        let _: Result<u64, _> = a.link.query(&cmd).await;
    }
    Ok(live)
}
