//! The bounded outbound queue of one connection.
//!
//! Fan-out pushes already-encoded frames (shared `Bytes`) into a connection's [`Outbox`]
//! without awaiting anything; the connection's own task drains the whole queue into its
//! socket in one batch. The queue is bounded in bytes: a reliable frame that would overflow
//! it turns the connection into a slow consumer (closed with 1008), a volatile one is
//! dropped for this connection only. The lock is a `std::sync::Mutex` held for a push or a
//! swap, never across an await.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

/// One frame waiting to be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutFrame {
    /// A text frame; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl OutFrame {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a connection is asked to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseRequest {
    /// Write what is queued, then a close frame with this code and reason, and end.
    Close(u16, String),
    /// Drop what is queued, send a close frame with this code and reason, and end
    /// (a slow consumer: what it has not read is not worth waiting for).
    Abort(u16, String),
    /// Drop the transport at once, with no close handshake (dead peers).
    Terminate,
}

/// What happened to a pushed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Queued for writing.
    Queued,
    /// Volatile and the queue was full: dropped for this connection.
    Dropped,
    /// Reliable and the queue was full: the connection is now closing as a slow consumer.
    Overflow,
    /// The connection is already closing; nothing was queued.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<OutFrame>,
    /// Bytes queued and not yet handed to the socket.
    bytes: usize,
    ping: bool,
    close: Option<CloseRequest>,
}

/// A connection's bounded outbound queue plus the waker of the task that drains it.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    waker: AtomicWaker,
    limit: usize,
}

/// What the writer takes from the outbox in one go.
#[derive(Debug, Default)]
pub struct Batch {
    /// Frames to write, oldest first.
    pub frames: VecDeque<OutFrame>,
    /// A ping was requested by the heartbeat.
    pub ping: bool,
    /// The connection should end.
    pub close: Option<CloseRequest>,
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes of queued frames.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            waker: AtomicWaker::new(),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every critical section is a push, a swap or a flag), so poison is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame. `volatile` frames are dropped instead of overflowing.
    pub fn push(&self, frame: OutFrame, volatile: bool) -> Push {
        self.push_with(frame.len(), volatile, |q| q.push_back(frame))
    }

    /// Queues several frames that belong together (a Socket.IO packet and its
    /// attachments): all of them or none.
    pub fn push_many(&self, frames: &[OutFrame], volatile: bool) -> Push {
        let len = frames.iter().map(OutFrame::len).sum();
        self.push_with(len, volatile, |q| q.extend(frames.iter().cloned()))
    }

    /// The one place that applies the byte limit: `insert` runs only if `len` more bytes
    /// fit (or the queue is empty, so one oversized message still gets through).
    fn push_with(
        &self,
        len: usize,
        volatile: bool,
        insert: impl FnOnce(&mut VecDeque<OutFrame>),
    ) -> Push {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Push::Closed;
        }
        if inner.bytes + len > self.limit && !(inner.bytes == 0 && inner.queue.is_empty()) {
            if volatile {
                return Push::Dropped;
            }
            inner.queue.clear();
            inner.bytes = 0;
            inner.close = Some(CloseRequest::Abort(1008, "slow consumer".into()));
            drop(inner);
            self.waker.wake();
            return Push::Overflow;
        }
        let was_empty = inner.queue.is_empty();
        insert(&mut inner.queue);
        inner.bytes += len;
        drop(inner);
        if was_empty {
            self.waker.wake();
        }
        Push::Queued
    }

    /// Wakes whoever drains this outbox (a transport change needs a look).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Queues a frame regardless of the byte limit (bounded replays, the welcome).
    pub fn push_unbounded(&self, frame: OutFrame) -> Push {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Push::Closed;
        }
        inner.bytes += frame.len();
        inner.queue.push_back(frame);
        drop(inner);
        self.waker.wake();
        Push::Queued
    }

    /// Asks the writer to send a ping.
    pub fn request_ping(&self) {
        self.lock().ping = true;
        self.waker.wake();
    }

    /// Asks the connection to end. The first request wins; queued frames are still written
    /// before a `Close`, dropped before a `Terminate`.
    pub fn close(&self, request: CloseRequest) {
        let mut inner = self.lock();
        match (&inner.close, &request) {
            (None, _)
            | (Some(CloseRequest::Close(..) | CloseRequest::Abort(..)), CloseRequest::Terminate) => {
                // A Close keeps the queue so it is flushed first; the others drop it.
                if matches!(request, CloseRequest::Terminate | CloseRequest::Abort(..)) {
                    inner.queue.clear();
                    inner.bytes = 0;
                }
                inner.close = Some(request);
            }
            _ => {}
        }
        drop(inner);
        self.waker.wake();
    }

    /// Whether the connection has been asked to end.
    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Forgets the drain task's waker until the next [`take`](Self::take). The driver calls
    /// it while its task handles a client frame: what that handler queues (an ack, a reply
    /// to the sender) is taken by the same task right after, and a wake-up would reschedule
    /// the task ahead of every other connection (tokio runs a task woken by itself next),
    /// which starves the others under load.
    pub fn forget_waker(&self) {
        drop(self.waker.take());
    }

    /// Takes everything queued, registering `waker` for the next push. `spare` is an empty
    /// queue handed back so its allocation is reused.
    pub fn take(&self, waker: &std::task::Waker, spare: VecDeque<OutFrame>) -> Batch {
        self.waker.register(waker);
        let mut inner = self.lock();
        let frames = std::mem::replace(&mut inner.queue, spare);
        Batch {
            frames,
            ping: std::mem::take(&mut inner.ping),
            close: inner.close.clone(),
        }
    }

    /// Gives back `n` bytes of budget once frames have been handed to the socket.
    pub fn written(&self, n: usize) {
        let mut inner = self.lock();
        inner.bytes = inner.bytes.saturating_sub(n);
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> OutFrame {
        OutFrame::Text(Bytes::from(vec![b'x'; n]))
    }

    #[test]
    fn overflow_closes_reliable_and_drops_volatile() {
        let o = Outbox::new(100);
        assert_eq!(o.push(text(60), false), Push::Queued);
        assert_eq!(o.push(text(60), true), Push::Dropped);
        assert_eq!(o.queued_bytes(), 60);
        assert_eq!(o.push(text(60), false), Push::Overflow);
        assert!(o.is_closing());
        assert_eq!(o.push(text(1), false), Push::Closed);
        let b = o.take(futures_util::task::noop_waker_ref(), VecDeque::new());
        assert!(b.frames.is_empty());
        assert_eq!(
            b.close,
            Some(CloseRequest::Abort(1008, "slow consumer".into()))
        );
    }

    #[test]
    fn one_oversized_frame_fits_an_empty_queue() {
        let o = Outbox::new(10);
        assert_eq!(o.push(text(50), false), Push::Queued);
    }

    #[test]
    fn written_bytes_free_budget() {
        let o = Outbox::new(100);
        assert_eq!(o.push(text(80), false), Push::Queued);
        let b = o.take(futures_util::task::noop_waker_ref(), VecDeque::new());
        assert_eq!(b.frames.len(), 1);
        o.written(80);
        assert_eq!(o.push(text(80), false), Push::Queued);
    }

    #[test]
    fn terminate_overrides_close_and_drops_queue() {
        let o = Outbox::new(100);
        o.push(text(5), false);
        o.close(CloseRequest::Close(1001, "bye".into()));
        o.close(CloseRequest::Terminate);
        let b = o.take(futures_util::task::noop_waker_ref(), VecDeque::new());
        assert!(b.frames.is_empty());
        assert_eq!(b.close, Some(CloseRequest::Terminate));
    }
}
