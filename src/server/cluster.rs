//! What the server wires between the cluster and the layers above the hub: the
//! notification service hears what other nodes did to the notifications, and a Node
//! server's `broadcastWithAck` reaches this node's Socket.IO sockets with acknowledgements.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{AckSink, RedisAdapter, Replicated};
use crate::hub::{Delivery, Hub, Reach};
use crate::services::Notifications;
use crate::sio::SocketIo;

/// Hands the other nodes' notifications, read marks and the catch-up to `notifications`.
pub(super) fn replicate_notifications(a: &RedisAdapter, notifications: &Arc<Notifications>) {
    let notifications = Arc::downgrade(notifications);
    a.on_notices(move |r| {
        if let Some(n) = notifications.upgrade() {
            match r {
                Replicated::Notification(row) => n.apply_notification(&row),
                Replicated::Read(marks) => n.apply_read(&marks),
                Replicated::Loaded { snapshot, slot } => n.replace(&snapshot, slot),
            }
        }
    });
}

/// Lets a Node server's `broadcastWithAck` ask this node's Socket.IO sockets for an
/// acknowledgement each (v1 connections get the message without being asked).
pub(super) fn relay_node_acks(a: &RedisAdapter, hub: &Hub, io: &SocketIo) {
    let (hub, io) = (hub.downgrade(), io.clone());
    a.on_acked_broadcast(move |reach, d, wait, counted, acked| {
        let Some(hub) = hub.upgrade() else {
            return counted(0);
        };
        ask_sockets(&hub, &io, reach, d, wait, counted, acked);
    });
}

fn ask_sockets(
    hub: &Hub,
    io: &SocketIo,
    reach: &Reach,
    d: &Arc<Delivery>,
    wait: Duration,
    counted: Box<dyn FnOnce(usize) + Send>,
    acked: AckSink,
) {
    let ns = io.of(&reach.ns);
    let mut sockets = Vec::new();
    let mut others = Vec::new();
    for c in hub.reached(reach) {
        match ns.as_ref().and_then(|n| n.socket(c.wire_id())) {
            Some(s) => sockets.push(s),
            None => others.push(Arc::from(c.wire_id())),
        }
    }
    if !others.is_empty() {
        let rest = Reach {
            ns: reach.ns.clone(),
            rooms: others,
            except: Vec::new(),
            volatile: reach.volatile,
        };
        hub.deliver_remote(&rest, d);
    }
    counted(sockets.len());
    let Some(m) = d.message() else { return };
    let (event, args) = (m.event.clone(), m.sio_args());
    for s in sockets {
        let (event, args, acked) = (event.clone(), args.clone(), acked.clone());
        tokio::spawn(async move {
            if let Ok(answer) = s.emit_with_ack(&event, args, wait).await {
                acked(answer);
            }
        });
    }
}
