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
use std::task::{ready, Context, Poll};
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

/// How a connection ends once [`Driver::next_message`] has no more messages for it.
enum Ending {
    /// The client closed, or broke the protocol: write what yawc still owes it (the close
    /// reply, or the close frame for the error), within the grace period.
    Flush,
    /// Our close frame is written: wait briefly for the client's reply.
    AwaitReply,
    /// Nothing more to do: the peer is gone, or the connection was terminated.
    Now,
}

/// A close the driver is carrying out: what to send, and when to give up on the peer.
struct Closing {
    code: u16,
    reason: String,
    /// When it fires the connection is dropped even if the peer never reads our close
    /// frame (a consumer that stopped reading altogether).
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// Drives one WebSocket on behalf of one hub connection.
///
/// It lives inline in every connection's task for as long as the connection is open, so it
/// keeps only what an open connection needs; a close's state is allocated when one starts.
pub(crate) struct Driver<S> {
    pub(crate) ws: WebSocket<S>,
    pending: VecDeque<OutFrame>,
    closing: Option<Box<Closing>>,
    /// What a heartbeat ping becomes: a WebSocket ping (v1), or a text frame such as
    /// Engine.IO's `2`.
    ping_text: Option<&'static str>,
    /// The grace period of a close, in milliseconds.
    grace_ms: u32,
    ping_due: bool,
    close_sent: bool,
    unflushed: bool,
    /// Whether this driver drains the outbox; off while an Engine.IO upgrade is probing,
    /// because the polling transport still owns the outbox then.
    draining: bool,
}

impl<S> Driver<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A driver for `ws` that waits up to `grace` for the peer's part of a close.
    pub(crate) fn new(ws: WebSocket<S>, grace: Duration) -> Self {
        Self {
            ws,
            pending: VecDeque::new(),
            closing: None,
            ping_text: None,
            grace_ms: u32::try_from(grace.as_millis()).unwrap_or(u32::MAX),
            ping_due: false,
            close_sent: false,
            unflushed: false,
            draining: true,
        }
    }

    /// Heartbeat pings are sent as this text frame instead of WebSocket pings.
    pub(crate) fn with_text_pings(mut self, ping: &'static str) -> Self {
        self.ping_text = Some(ping);
        self
    }

    fn grace(&self) -> Duration {
        Duration::from_millis(u64::from(self.grace_ms))
    }

    /// Starts carrying out a close, unless one is under way already.
    fn start_close(&mut self, code: u16, reason: String) {
        if self.closing.is_none() {
            let timer = Box::pin(tokio::time::sleep(self.grace()));
            self.closing = Some(Box::new(Closing {
                code,
                reason,
                timer,
            }));
        }
    }

    /// Starts or stops draining the outbox.
    pub(crate) fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Writes one frame now, outside the outbox (the `3probe` of an Engine.IO upgrade).
    pub(crate) async fn send_now(&mut self, frame: Frame) -> bool {
        self.ws.send(frame).await.is_ok()
    }

    /// The next event, writing queued frames meanwhile. Once a close has been requested and
    /// the grace period has passed, yields [`Event::Terminated`].
    fn poll_event(&mut self, cx: &mut Context<'_>, conn: &dyn Link, stats: &Stats) -> Poll<Event> {
        if let Poll::Ready(ev) = self.poll_write(cx, conn, stats) {
            return Poll::Ready(ev);
        }
        if let Some(closing) = &mut self.closing {
            if closing.timer.as_mut().poll(cx).is_ready() {
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
                    self.start_close(code, reason);
                }
                Some(CloseRequest::Close(code, reason)) => self.start_close(code, reason),
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
                match self.ping_text {
                    Some(text) => Frame::text(text),
                    None => Frame::ping(bytes::Bytes::new()),
                }
            } else if let Some(f) = self.pending.pop_front() {
                written += f.len();
                match f {
                    OutFrame::Text(b) => Frame::text(b),
                    OutFrame::Binary(b) => Frame::binary(b),
                }
            } else {
                self.close_sent = true;
                match &self.closing {
                    Some(c) => Frame::close(CloseCode::from(c.code), &c.reason),
                    None => Frame::close(CloseCode::Normal, b""),
                }
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
    ///
    /// The future is small while it waits (the connection task holds it for as long as
    /// the connection idles): the closing paths run in a boxed future of their own.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    pub(crate) fn next_message<'a>(
        &'a mut self,
        conn: &'a dyn Link,
        stats: &'a Stats,
    ) -> impl Future<Output = Option<Frame>> + 'a {
        async move {
            let ending = match poll_fn(|cx| self.poll_message(cx, conn, stats)).await {
                Ok(frame) => return Some(frame),
                Err(Ending::Now) => return None,
                Err(ending) => ending,
            };
            Box::pin(self.end(ending)).await;
            None
        }
    }

    fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
        conn: &dyn Link,
        stats: &Stats,
    ) -> Poll<Result<Frame, Ending>> {
        loop {
            let frame = match ready!(self.poll_event(cx, conn, stats)) {
                Event::Frame(frame) => frame,
                Event::ReadError(e) => {
                    tracing::debug!(conn = conn.name(), "closing on read error: {e}");
                    return Poll::Ready(Err(Ending::Flush));
                }
                Event::CloseSent => return Poll::Ready(Err(Ending::AwaitReply)),
                Event::WriteError | Event::Terminated => return Poll::Ready(Err(Ending::Now)),
            };
            match frame.opcode() {
                yawc::OpCode::Text | yawc::OpCode::Binary => return Poll::Ready(Ok(frame)),
                yawc::OpCode::Pong => conn.pong(),
                yawc::OpCode::Close => return Poll::Ready(Err(Ending::Flush)),
                yawc::OpCode::Ping | yawc::OpCode::Continuation => {}
            }
        }
    }

    /// Carries out the end of a connection, within the grace period.
    async fn end(&mut self, ending: Ending) {
        let grace = self.grace();
        match ending {
            Ending::Flush => self.finish(grace).await,
            Ending::AwaitReply => self.await_close_reply(grace).await,
            Ending::Now => {}
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
