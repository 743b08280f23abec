//! The live dashboard's feed: once a second, while anyone listens, the server's figures go
//! to the room [`ROOM`] as a transient `stats` event (never kept): connections per
//! transport, users online, rooms, the message and byte totals (the page turns them into
//! rates), slow-consumer closes and heartbeat reaps, and the top rooms by members and by
//! traffic; in a cluster also `nodes`, every live node's heartbeat. The figures stay on this
//! node (`local`). Any v1 or Socket.IO client that joins the room gets it; with auth on,
//! joining needs a grant for it like any room.

use std::time::Duration;

use serde_json::{json, Value};

use crate::hub::Hub;

/// The room the figures go to.
pub const ROOM: &str = "hubbub:stats";

/// How many rooms each top list shows.
const TOP: usize = 5;

/// The figures as the dashboard reads them.
pub fn snapshot(hub: &Hub) -> Value {
    let st = hub.stats();
    let mut rooms = hub.room_traffic();
    rooms.retain(|(name, _, _)| name != ROOM);
    let top = |rooms: &mut Vec<(String, usize, u64)>, by_members: bool| -> Value {
        if by_members {
            rooms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        } else {
            rooms.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        }
        rooms
            .iter()
            .take(TOP)
            .map(|(name, members, messages)| {
                json!({"room": name, "members": members, "messages": messages})
            })
            .collect()
    };
    json!({
        "node": hub.node(),
        "ts": crate::hub::now_ms(),
        "connections": st.connections_json(),
        "users_online": hub.online_users().len(),
        "rooms": rooms.len(),
        "messages_in": st.messages_in_total(),
        "messages_out": st.messages_out_total(),
        "bytes_out": st.bytes_out_total(),
        "slow_consumer_closes": st.slow_consumer_total(),
        "heartbeat_reaped": st.reaped_total(),
        "top_by_members": top(&mut rooms.clone(), true),
        "top_by_traffic": top(&mut rooms, false),
    })
}

/// Sends the figures every `every` while the room has members; ends with the hub.
pub async fn feed(hub: Hub, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if hub.is_shutting_down() {
            return;
        }
        if hub.room_info(ROOM).is_some_and(|r| r.members > 0) {
            let mut figures = snapshot(&hub);
            if let Some(a) = hub.adapter() {
                // In a cluster: every live node's heartbeat (id, connections, users online).
                figures["nodes"] = Value::Array(a.nodes().await.unwrap_or_default());
            }
            // This node's figures to its own dashboards: in a cluster each node's page shows
            // the node that serves it (named in the figures) and lists the others.
            let _ = hub.to_room(ROOM).transient().local().emit("stats", figures);
        }
    }
}
