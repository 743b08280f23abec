//! The heartbeat of v1 connections: one task pings everyone and reaps the silent ones.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::conn::Conn;
use super::outbox::CloseRequest;
use super::Hub;
use crate::stats::Transport;

impl Hub {
    /// Starts the heartbeat of v1 connections: one task pings every connection each
    /// interval and terminates those whose pong has not come within the timeout. It stops
    /// at shutdown. (Socket.IO sessions run Engine.IO's own heartbeat.)
    pub fn spawn_heartbeat(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.config.heartbeat_interval;
        let timeout = self.inner.config.heartbeat_timeout;
        tokio::spawn(heartbeat_loop(
            interval,
            timeout,
            move || {
                let hub = Hub {
                    inner: weak.upgrade()?,
                };
                if hub.is_shutting_down() {
                    return None;
                }
                let conns: Vec<Arc<Conn>> = hub
                    .all_conns()
                    .into_iter()
                    // Socket.IO pings at its own level; v1 and GraphQL get WebSocket pings.
                    .filter(|c| c.transport != Transport::SocketIo)
                    .collect();
                Some((hub, conns))
            },
            |c: &Arc<Conn>| {
                c.awaiting_pong.store(true, Ordering::Relaxed);
                c.outbox.request_ping();
            },
            |hub: &Hub, c: &Arc<Conn>| {
                if c.awaiting_pong.load(Ordering::Relaxed) && !c.outbox.is_closing() {
                    c.outbox.close(CloseRequest::Terminate);
                    hub.inner.stats.reaped();
                }
            },
        ))
    }
}

/// The heartbeat schedule shared by every transport: each round pings every target, waits
/// `timeout`, then lets `check` reap those that did not answer; rounds start `interval`
/// apart. `targets` returns `None` to stop.
pub async fn heartbeat_loop<C, T>(
    interval: Duration,
    timeout: Duration,
    targets: impl Fn() -> Option<(C, Vec<T>)>,
    ping: impl Fn(&T),
    check: impl Fn(&C, &T),
) {
    loop {
        tokio::time::sleep(interval.saturating_sub(timeout.min(interval))).await;
        let Some((ctx, list)) = targets() else { return };
        list.iter().for_each(&ping);
        drop(ctx);
        tokio::time::sleep(timeout.min(interval)).await;
        let Some((ctx, _)) = targets() else { return };
        for t in &list {
            check(&ctx, t);
        }
    }
}
