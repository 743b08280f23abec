//! Requests this node sent and is waiting on: each has an id, gathers the responses that
//! carry it, and completes when as many nodes answered as the sender expects (for most,
//! those subscribed when it was sent, `PUBSUB NUMSUB` minus this node; for a counted kept
//! message, every node that keeps history, this one included), or when its time is up,
//! with what came.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmpv::Value as Mp;
use tokio::sync::oneshot;

/// The requests in flight.
#[derive(Debug, Default)]
pub(super) struct Pending {
    waiting: Mutex<HashMap<String, Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    /// Answers expected; unknown until `PUBSUB NUMSUB` answered.
    expected: Option<usize>,
    got: Vec<Mp>,
    done: Option<oneshot::Sender<Vec<Mp>>>,
}

impl Waiter {
    fn complete_if_due(&mut self) -> bool {
        if self.expected.is_some_and(|n| self.got.len() >= n) {
            if let Some(tx) = self.done.take() {
                let _ = tx.send(std::mem::take(&mut self.got));
            }
            return true;
        }
        false
    }
}

/// A fresh request id.
pub(super) fn request_id() -> String {
    use rand::Rng;
    let mut r = rand::thread_rng();
    (0..12)
        .map(|_| char::from(b"0123456789abcdef"[r.gen_range(0..16)]))
        .collect()
}

impl Pending {
    /// Registers request `id` before it is published; the answers arrive on the returned
    /// receiver once [`Self::expect`] and [`Self::answered`] say they are all in, or after
    /// `timeout` with those that came.
    pub(super) fn start(
        self: &Arc<Self>,
        id: &str,
        timeout: Duration,
    ) -> oneshot::Receiver<Vec<Mp>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(
            id.to_string(),
            Waiter {
                expected: None,
                got: Vec::new(),
                done: Some(tx),
            },
        );
        let me = Arc::downgrade(self);
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(me) = me.upgrade() {
                if let Some(mut w) = lock(&me.waiting).remove(&id) {
                    if let Some(tx) = w.done.take() {
                        let _ = tx.send(w.got);
                    }
                }
            }
        });
        rx
    }

    /// Sets how many answers request `id` waits for.
    pub(super) fn expect(&self, id: &str, n: usize) {
        let mut waiting = lock(&self.waiting);
        if let Some(w) = waiting.get_mut(id) {
            w.expected = Some(n);
            if w.complete_if_due() {
                waiting.remove(id);
            }
        }
    }

    /// Gives up on request `id` (it could not be sent).
    pub(super) fn cancel(&self, id: &str) {
        lock(&self.waiting).remove(id);
    }

    /// Records a response; false when no request of this node has its id.
    pub(super) fn answered(&self, id: &str, response: Mp) -> bool {
        let mut waiting = lock(&self.waiting);
        let Some(w) = waiting.get_mut(id) else {
            return false;
        };
        w.got.push(response);
        if w.complete_if_due() {
            waiting.remove(id);
        }
        true
    }

    /// Requests in flight.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.waiting).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_when_all_answered_or_on_time() {
        let p = Arc::new(Pending::default());
        let rx = p.start("a", Duration::from_secs(10));
        assert!(
            p.answered("a", Mp::from(1)),
            "an answer before the count is kept"
        );
        p.expect("a", 2);
        assert!(p.answered("a", Mp::from(2)));
        assert_eq!(rx.await.unwrap(), vec![Mp::from(1), Mp::from(2)]);
        assert_eq!(p.len(), 0);
        assert!(!p.answered("a", Mp::from(3)), "late answers are dropped");

        let rx = p.start("b", Duration::from_millis(50));
        p.expect("b", 3);
        p.answered("b", Mp::from(1));
        assert_eq!(
            rx.await.unwrap(),
            vec![Mp::from(1)],
            "partial after the timeout"
        );
        assert_eq!(p.len(), 0);

        let rx = p.start("c", Duration::from_secs(10));
        p.expect("c", 0);
        assert!(rx.await.unwrap().is_empty(), "nobody else: done at once");
    }
}
