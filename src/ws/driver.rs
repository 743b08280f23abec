//! One task per WebSocket connection: reads frames and drains the outbox.
//!
//! The [`Driver`] owns the socket. Each wake-up it first takes everything queued in the
//! connection's [`Outbox`] and feeds it to the socket with a single flush at the end (so a
//! burst of deliveries becomes as few `write` calls as the socket allows), then reads the
//! next frame. Reading and writing interleave in the same task, so a connection costs one
//! task and no channel; the heartbeat, slow-consumer and shutdown paths reach it through the
//! outbox's close requests.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite};
use yawc::{close::CloseCode, Frame, WebSocket, WebSocketError};

use crate::hub::{CloseRequest, Conn, OutFrame, Outbox};
use crate::stats::Stats;

/// What a driver needs from the connection it serves.
pub(crate) trait Link: Send + Sync {
    /// The outbox to drain.
    fn outbox(&self) -> &Outbox;
    /// A WebSocket pong arrived.
    fn pong(&self);
    /// A name for logs.
    fn name(&self) -> &str;
}

impl Link for Conn {
    fn outbox(&self) -> &Outbox {
        Conn::outbox(self)
    }
    fn pong(&self) {
        self.pong_received();
    }
    fn name(&self) -> &str {
        self.wire_id()
    }
}

/// What the driver surfaces to the connection loop.
enum Event {
    /// A complete message or a control frame from the client.
    Frame(Frame),
    /// The client broke the protocol or a limit; yawc has queued the matching close frame.
    ReadError(WebSocketError),
    /// Writing failed: the peer is gone.
    WriteError,
    /// Our close frame is written; wait for the client's reply, briefly.
    CloseSent,
    /// The connection must end now, with no handshake (heartbeat reap).
    Terminated,
}

/// Drives one WebSocket on behalf of one hub connection.
pub(crate) struct Driver<S> {
    pub(crate) ws: WebSocket<S>,
    pending: VecDeque<OutFrame>,
    ping_due: bool,
    closing: Option<(u16, String)>,
    close_sent: bool,
    unflushed: bool,
    /// Started when a close is first requested: when it fires the connection is dropped even
    /// if the peer never reads our close frame (a consumer that stopped reading altogether).
    /// Allocated only then, so an open connection carries no timer.
    close_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    grace: Duration,
    /// What a heartbeat ping becomes: a WebSocket ping (v1), or a text frame such as
    /// Engine.IO's `2`.
    ping_text: Option<bytes::Bytes>,
    /// Whether this driver drains the outbox; off while an Engine.IO upgrade is probing,
    /// because the polling transport still owns the outbox then.
    draining: bool,
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(ws: WebSocket<S>, grace: Duration) -> Self {
        Self {
            ws,
            pending: VecDeque::new(),
            ping_due: false,
            closing: None,
            close_sent: false,
            unflushed: false,
            close_timer: None,
            grace,
            ping_text: None,
            draining: true,
        }
    }

    /// Heartbeat pings are sent as this text frame instead of WebSocket pings.
    pub(crate) fn with_text_pings(mut self, ping: bytes::Bytes) -> Self {
        self.ping_text = Some(ping);
        self
    }

    /// Starts or stops draining the outbox.
    pub(crate) fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Writes one frame now, outside the outbox (the `3probe` of an Engine.IO upgrade).
    pub(crate) async fn send_now(&mut self, frame: Frame) -> bool {
        self.ws.send(frame).await.is_ok()
    }

    /// Waits for the next event, writing queued frames meanwhile. Once a close has been
    /// requested and the grace period has passed, yields [`Event::Terminated`].
    async fn next(&mut self, conn: &dyn Link, stats: &Stats) -> Event {
        poll_fn(|cx| self.poll_event(cx, conn, stats)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>, conn: &dyn Link, stats: &Stats) -> Poll<Event> {
        if let Poll::Ready(ev) = self.poll_write(cx, conn, stats) {
            return Poll::Ready(ev);
        }
        if self.closing.is_some() {
            let grace = self.grace;
            let timer = self
                .close_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(grace)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Terminated);
            }
        }
        match self.ws.poll_next_frame(cx) {
            Poll::Ready(Ok(frame)) => {
                // The connection loop handles the frame, then comes back here and takes what
                // was queued meanwhile: no wake-up needed for that (see `forget_waker`).
                conn.outbox().forget_waker();
                Poll::Ready(Event::Frame(frame))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Event::ReadError(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, conn: &dyn Link, stats: &Stats) -> Poll<Event> {
        if !self.close_sent && self.draining {
            let batch = conn.outbox().take(cx.waker(), VecDeque::new());
            if self.pending.is_empty() {
                self.pending = batch.frames;
            } else {
                self.pending.extend(batch.frames);
            }
            self.ping_due |= batch.ping;
            match batch.close {
                None => {}
                Some(CloseRequest::Terminate) => return Poll::Ready(Event::Terminated),
                Some(CloseRequest::Abort(code, reason)) => {
                    let dropped: usize = self.pending.drain(..).map(|f| f.len()).sum();
                    conn.outbox().written(dropped);
                    self.closing.get_or_insert((code, reason));
                }
                Some(CloseRequest::Close(code, reason)) => {
                    self.closing.get_or_insert((code, reason));
                }
            }
        }
        let mut written = 0usize;
        loop {
            let has_work = self.ping_due
                || !self.pending.is_empty()
                || (self.closing.is_some() && !self.close_sent);
            if !has_work {
                break;
            }
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Event::WriteError),
                Poll::Pending => break,
            }
            let frame = if self.ping_due {
                self.ping_due = false;
                match &self.ping_text {
                    Some(text) => Frame::text(text.clone()),
                    None => Frame::ping(bytes::Bytes::new()),
                }
            } else if let Some(f) = self.pending.pop_front() {
                written += f.len();
                match f {
                    OutFrame::Text(b) => Frame::text(b),
                    OutFrame::Binary(b) => Frame::binary(b),
                }
            } else {
                let (code, reason) = self.closing.clone().unwrap_or((1000, String::new()));
                self.close_sent = true;
                Frame::close(CloseCode::from(code), reason)
            };
            if Pin::new(&mut self.ws).start_send(frame).is_err() {
                return Poll::Ready(Event::WriteError);
            }
            self.unflushed = true;
        }
        if written > 0 {
            conn.outbox().written(written);
            stats.bytes_out(written as u64);
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // An idle connection keeps no queue allocation; the next burst makes a new one.
            self.pending = VecDeque::new();
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Poll::Ready(Event::WriteError),
                Poll::Pending => return Poll::Pending,
            }
        }
        if self.close_sent && !self.unflushed {
            return Poll::Ready(Event::CloseSent);
        }
        Poll::Pending
    }

    /// The next text or binary message, handling everything else on the way: pongs are
    /// recorded, a client close is answered, protocol errors get their close frame, a
    /// requested close is carried out. `None` when the connection is over.
    pub(crate) async fn next_message(&mut self, conn: &dyn Link, stats: &Stats) -> Option<Frame> {
        loop {
            match self.next(conn, stats).await {
                Event::Frame(frame) => match frame.opcode() {
                    yawc::OpCode::Text | yawc::OpCode::Binary => return Some(frame),
                    yawc::OpCode::Pong => conn.pong(),
                    yawc::OpCode::Close => {
                        // Boxed, like the other closing paths: rare, and kept out of the
                        // connection task's resident size.
                        Box::pin(self.finish(self.grace)).await;
                        return None;
                    }
                    yawc::OpCode::Ping | yawc::OpCode::Continuation => {}
                },
                Event::ReadError(e) => {
                    tracing::debug!(conn = conn.name(), "closing on read error: {e}");
                    Box::pin(self.finish(self.grace)).await;
                    return None;
                }
                Event::CloseSent => {
                    Box::pin(self.await_close_reply(self.grace)).await;
                    return None;
                }
                Event::WriteError | Event::Terminated => return None,
            }
        }
    }

    /// After our close frame: reads until the client's close reply, an error, or `limit`.
    async fn await_close_reply(&mut self, limit: Duration) {
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(limit, async {
            loop {
                match ws.next_frame().await {
                    Ok(f) if f.opcode() == yawc::OpCode::Close => break,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        })
        .await;
    }

    /// Writes whatever the WebSocket still owes the peer (a close reply), within `limit`.
    async fn finish(&mut self, limit: Duration) {
        let ws = &mut self.ws;
        let _ = tokio::time::timeout(limit, async {
            poll_fn(|cx| Pin::new(&mut *ws).poll_ready(cx)).await?;
            ws.flush().await
        })
        .await;
    }
}
