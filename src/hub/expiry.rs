//! Credential expiry: connections whose token expires are closed with 4401.
//!
//! One queue for the whole hub (a min-heap of deadlines) and one task that sleeps until the
//! earliest: an open connection costs one heap entry and a word, not a timer. A refreshed
//! token pushes a new entry; the stale one is skipped when it comes up, because the
//! connection's current deadline no longer matches it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{now_ms, ConnId, Hub, Inner};

/// The close code for an expired or revoked credential.
pub const TOKEN_EXPIRED: u16 = 4401;

/// Deadlines in milliseconds since the epoch, earliest first.
#[derive(Default)]
pub(crate) struct Expiries {
    heap: Mutex<BinaryHeap<Reverse<(u64, ConnId)>>>,
    changed: tokio::sync::Notify,
}

impl Expiries {
    fn push(&self, at_ms: u64, conn: ConnId) {
        let earliest = {
            let mut heap = self.heap.lock().unwrap_or_else(|p| p.into_inner());
            heap.push(Reverse((at_ms, conn)));
            heap.peek().map(|Reverse((t, _))| *t) == Some(at_ms)
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Pops the entries due at `now`; returns them and the next deadline.
    fn due(&self, now: u64) -> (Vec<(u64, ConnId)>, Option<u64>) {
        let mut heap = self.heap.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        while let Some(Reverse((t, c))) = heap.peek().copied() {
            if t > now {
                return (out, Some(t));
            }
            heap.pop();
            out.push((t, c));
        }
        (out, None)
    }
}

impl Hub {
    /// Sets (or clears, with `None`) when the connection's credentials expire, in
    /// milliseconds since the epoch. At that time the connection is closed with 4401
    /// unless this is called again first (a refreshed token). Needs the task of
    /// [`Hub::spawn_expiry`].
    pub fn set_expiry(&self, conn: &super::Conn, at_ms: Option<u64>) {
        let at = at_ms.unwrap_or(0);
        conn.expires_at.store(at, Ordering::Relaxed);
        if at != 0 {
            self.inner.expiries.push(at, conn.id());
        }
    }

    /// When the connection's credentials expire (ms since the epoch), if they do.
    pub fn expiry(&self, conn: &super::Conn) -> Option<u64> {
        Some(conn.expires_at.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// Starts the task that closes connections whose credentials expired (4401).
    pub fn spawn_expiry(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(expiry_loop(
            Arc::downgrade(&self.inner),
            self.inner.expiries.clone(),
        ))
    }
}

/// Holds the queue, not the hub: the task ends once the hub is dropped.
async fn expiry_loop(weak: Weak<Inner>, expiries: Arc<Expiries>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let hub = Hub { inner };
        let (due, next) = expiries.due(now_ms());
        for (at, id) in due {
            let Some(conn) = hub.conn(id) else { continue };
            // A refreshed token moved the deadline: this entry is stale.
            if conn.expires_at.load(Ordering::Relaxed) == at {
                tracing::debug!(conn = conn.wire_id(), "credentials expired");
                conn.close(TOKEN_EXPIRED, "token expired");
            }
        }
        let wait = next.map_or(Duration::from_secs(3600), |t| {
            Duration::from_millis(t.saturating_sub(now_ms()))
        });
        drop(hub);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = expiries.changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_out_earliest_first() {
        let e = Expiries::default();
        e.push(30, ConnId(3));
        e.push(10, ConnId(1));
        e.push(20, ConnId(2));
        let (due, next) = e.due(20);
        assert_eq!(due, vec![(10, ConnId(1)), (20, ConnId(2))]);
        assert_eq!(next, Some(30));
        assert_eq!(e.due(100), (vec![(30, ConnId(3))], None));
    }
}
