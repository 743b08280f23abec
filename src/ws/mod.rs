//! The raw WebSocket front end: protocol v1 on `/ws` and `/ws/{user}`, and the echo route.
//!
//! The upgrade handler decides everything that can be decided before a WebSocket exists
//! (the connection limit, the identity) and answers refusals with plain HTTP. An accepted
//! connection is registered with the hub and handed to a [`driver::Driver`]; each text frame
//! is parsed by [`crate::protocol::v1`] and turned into a hub call, and replies go through
//! the same outbox as deliveries, so a client sees them in order.

pub(crate) mod driver;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Extension, Router,
};
use bytes::Bytes;
use serde::Deserialize;
use yawc::{DeflatePool, Frame, IncomingUpgrade, OpCode, Options};

use crate::error::{ApiError, ErrorCode, HubError};
use crate::hub::now_ms;
use crate::hub::{
    CloseRequest, Conn, ConnPermit, ConnSpec, Emitted, Hub, OpCall, OutFrame, Payload, ReplayFrom,
    Right,
};
use crate::identity::Credentials;
use crate::limits::{Limiter, RatePolicy, Verdict, RATE_LIMIT_CLOSE};
use crate::protocol::v1::{self, Request};
use crate::stats::{RejectReason, Transport};
use driver::Driver;

/// The hub namespace of echo connections (no client can name it: namespaces they reach
/// start with `/`).
const ECHO_NS: &str = "echo";

/// How long a closing connection waits for the client's close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Settings of the WebSocket front end.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsConfig {
    /// Largest frame and reassembled or decompressed message, in bytes (close 1009 above).
    pub max_payload: usize,
    /// permessage-deflate threshold in bytes; `None` declines compression.
    pub compression: Option<usize>,
    /// Announced in `welcome` as `heartbeat_ms`.
    pub heartbeat_interval: Duration,
    /// Messages and bytes per second a connection may send.
    pub rate: RatePolicy,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            compression: Some(1024),
            heartbeat_interval: Duration::from_secs(25),
            rate: RatePolicy::OFF,
        }
    }
}

/// Shared state of the WebSocket routes; cloning it is one reference count.
#[derive(Clone, Debug)]
pub struct WsState {
    inner: Arc<WsShared>,
}

#[derive(Debug)]
struct WsShared {
    hub: Hub,
    config: WsConfig,
    options: Options,
}

impl WsState {
    /// Builds the state: one deflate pool shared by every connection.
    pub fn new(hub: Hub, config: WsConfig) -> Self {
        let mut options = Options::default()
            // yawc's limits are exclusive; ours is inclusive.
            .with_max_payload_read(config.max_payload + 1)
            .with_max_read_buffer(config.max_payload + 1)
            // UTF-8 is checked by the front end, which can then close with 1007 itself
            // (yawc's own check ends the stream without a close frame).
            .with_no_delay()
            // Small buffers that grow with traffic: 288 bytes in all, not the usual 8-128 KiB
            // (a larger start saves a reallocation per message above it: about 7 % of v1
            // echo throughput at 1,000 connections for 0.35 KiB per idle connection). The
            // write buffer is flushed once it holds 8 KiB, and yawc gives back only growth
            // past that, so it is sized for the first flush, which every connection makes:
            // welcome and unread count, 145 bytes as yawc reserves them for an anonymous
            // user (or a user name of up to 20 bytes). At 128 that flush grew it to 256.
            .with_read_buffer_capacity(128)
            .with_write_buffer_capacity(160)
            .with_backpressure_boundary(8 * 1024);
        options = match config.compression {
            Some(threshold) => options
                .with_low_latency_compression()
                // No context takeover either way: no compressor state lives between
                // messages, and the pool shares it across connections.
                .server_no_context_takeover()
                .client_no_context_takeover()
                .with_deflate_pool(DeflatePool::new(64))
                .with_compression_threshold(threshold),
            None => options.without_compression(),
        };
        Self {
            inner: Arc::new(WsShared {
                hub,
                config,
                options,
            }),
        }
    }

    /// The hub behind these routes.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The WebSocket options every connection is upgraded with.
    pub(crate) fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The messages and bytes per second a connection may send.
    pub(crate) fn rate(&self) -> RatePolicy {
        self.inner.config.rate
    }
}

/// The v1 routes: `/ws`, `/ws/{user}` and `/ws/echo`. Mount them with `Router::merge`, or
/// under a prefix with `Router::nest`.
pub fn routes(state: WsState) -> Router {
    Router::new()
        .route("/ws", get(v1_handler))
        .route("/ws/echo", get(echo_handler))
        .route("/ws/{user}", get(v1_user_handler))
        .with_state(state)
        .layer(axum::middleware::map_request(first_deflate_offer))
}

/// Keeps only the client's first permessage-deflate offer in `Sec-WebSocket-Extensions`.
///
/// A client may list several offers, best first, separated by commas (RFC 7692 §5: the
/// server accepts one it supports). yawc reads a single offer and treats a list as no
/// offer at all, which turned compression off for such clients; the first offer is the
/// client's preferred one and yawc can answer any single permessage-deflate offer.
async fn first_deflate_offer(mut req: axum::extract::Request) -> axum::extract::Request {
    let headers = req.headers_mut();
    let offers: Vec<String> = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty())
        .collect();
    if offers.len() <= 1 {
        return req;
    }
    headers.remove(axum::http::header::SEC_WEBSOCKET_EXTENSIONS);
    let first = offers.into_iter().find(|o| {
        o.split(';')
            .next()
            .is_some_and(|name| name.trim().eq_ignore_ascii_case("permessage-deflate"))
    });
    if let Some(v) = first.and_then(|o| axum::http::HeaderValue::from_str(&o).ok()) {
        headers.insert(axum::http::header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    req
}

pub use crate::identity::Identity;

#[derive(Debug, Deserialize)]
struct IdentityQuery {
    user: Option<String>,
}

/// The client's address, as the server's accept loop recorded it (absent when the router
/// is served without connect info).
pub(crate) type Peer = Option<Extension<axum::extract::ConnectInfo<SocketAddr>>>;

pub(crate) fn ip_of(peer: Peer) -> Option<IpAddr> {
    peer.map(|Extension(axum::extract::ConnectInfo(a))| a.ip())
}

async fn v1_handler(
    State(state): State<WsState>,
    peer: Peer,
    identity: Option<Extension<Identity>>,
    creds: Option<Extension<Credentials>>,
    Query(q): Query<IdentityQuery>,
    upgrade: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    let user = identity.map(|Extension(Identity(u))| u).or(q.user);
    let creds = creds.map(|Extension(c)| Box::new(c));
    accept_v1(state, ip_of(peer), user, creds, upgrade)
}

async fn v1_user_handler(
    State(state): State<WsState>,
    peer: Peer,
    identity: Option<Extension<Identity>>,
    creds: Option<Extension<Credentials>>,
    Path(user): Path<String>,
    upgrade: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    let user = identity.map(|Extension(Identity(u))| u).unwrap_or(user);
    accept_v1(
        state,
        ip_of(peer),
        Some(user),
        creds.map(|Extension(c)| Box::new(c)),
        upgrade,
    )
}

/// Refuses or accepts an upgrade, before any WebSocket state exists.
pub(crate) fn admit(
    state: &WsState,
    address: Option<IpAddr>,
    upgrade: Result<IncomingUpgrade, StatusCode>,
) -> Result<(IncomingUpgrade, ConnPermit), ApiError> {
    let upgrade = upgrade.map_err(|status| {
        state
            .inner
            .hub
            .stats()
            .upgrade_rejected(RejectReason::BadHandshake);
        ApiError::new(
            ErrorCode::BadRequest,
            format!("not a valid WebSocket upgrade ({status})"),
        )
    })?;
    let permit = state.inner.hub.try_reserve_from(address)?;
    Ok((upgrade, permit))
}

fn accept_v1(
    state: WsState,
    address: Option<IpAddr>,
    user: Option<String>,
    creds: Option<Box<Credentials>>,
    upgrade: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    if let Some(u) = &user {
        if !v1::is_user_name(u) {
            state
                .inner
                .hub
                .stats()
                .upgrade_rejected(RejectReason::BadHandshake);
            let msg = "a user name is 1 to 200 bytes, without control characters";
            return ApiError::new(ErrorCode::BadRequest, msg).into_response();
        }
    }
    let (upgrade, permit) = match admit(&state, address, upgrade) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (response, fut) = match upgrade.upgrade(state.inner.options.clone()) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::new(ErrorCode::BadRequest, e.to_string()).into_response();
        }
    };
    // The upgrade completes in a short-lived task; the connection then runs in a task of
    // its own whose future holds only what an open connection needs.
    tokio::spawn(async move {
        match fut.await {
            Ok(ws) => {
                let conn = open_v1(&state, user.as_deref(), creds, permit.address());
                let rate = state.inner.config.rate;
                let driver = Driver::new(ws, CLOSE_GRACE);
                tokio::spawn(run_v1(state.inner.hub.clone(), conn, driver, rate, permit));
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    response.into_response()
}

/// Registers a v1 connection with the hub, its welcome queued first.
fn open_v1(
    state: &WsState,
    user: Option<&str>,
    creds: Option<Box<Credentials>>,
    address: Option<IpAddr>,
) -> Arc<Conn> {
    let hub = &state.inner.hub;
    let config = &state.inner.config;
    let spec = ConnSpec::new(user, Transport::Ws).from_address(address);
    let conn = hub.register_with(spec, |conn| {
        Some(OutFrame::Text(v1::encode_welcome(
            conn.wire_id(),
            conn.user(),
            config.heartbeat_interval.as_millis() as u64,
            config.max_payload as u64,
        )))
    });
    if let Some(c) = creds {
        hub.set_expiry(&conn, c.expires_at_ms);
        hub.set_grants(&conn, c.grants);
    }
    conn
}

/// The life of one v1 connection, once registered. A plain function returning an `async
/// move` block (not an `async fn`): the block captures `driver` once, where an `async fn`
/// would keep the argument and its moved copy side by side in the task, doubling its size.
/// The task holds only what an open connection needs: the registration happened before.
#[allow(clippy::manual_async_fn)] // deliberate, as said above
fn run_v1<S>(
    hub: Hub,
    conn: Arc<Conn>,
    mut driver: Driver<S>,
    rate: RatePolicy,
    permit: ConnPermit,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    async move {
        let mut limiter = rate.is_on().then(|| Limiter::new(&rate, now_ms()));
        // The frame is handed over, not borrowed, so that nothing of it stays in the task
        // while a request is handled.
        loop {
            let Some(frame) = driver.next_message(&*conn, hub.stats()).await else {
                break;
            };
            if let Some(text) = admit_text(&hub, &conn, &rate, &mut limiter, frame) {
                // Boxed: the task's own future stays small while the connection idles.
                Box::pin(handle_text(&hub, &conn, text)).await;
            }
        }
        hub.unregister(&conn);
        // Held until here, in the block's own capture: binding it to a local would keep a
        // second copy in the task.
        drop(permit);
    }
}

/// Checks one message of a v1 connection (closing, rate, binary, UTF-8) and answers what
/// it refuses; the text to handle when it passes.
fn admit_text(
    hub: &Hub,
    conn: &Conn,
    rate: &RatePolicy,
    limiter: &mut Option<Limiter>,
    frame: Frame,
) -> Option<Bytes> {
    hub.stats().message_in();
    if conn.outbox().is_closing() {
        return None;
    }
    let (opcode, payload) = (frame.opcode(), frame.into_payload());
    if let Some(l) = limiter {
        match l.check(rate, payload.len(), now_ms) {
            Verdict::Allow => {}
            Verdict::Refuse => {
                let msg = "too many messages; slow down";
                reply(
                    hub,
                    conn,
                    v1::encode_error(None, ErrorCode::RateLimited, msg),
                );
                return None;
            }
            Verdict::Close => {
                conn.close(RATE_LIMIT_CLOSE, "rate limit exceeded");
                return None;
            }
        }
    }
    if opcode == OpCode::Binary {
        let msg = "binary frames are not accepted on /ws; send JSON text";
        reply(
            hub,
            conn,
            v1::encode_error(None, ErrorCode::BadRequest, msg),
        );
        return None;
    }
    is_utf8(conn, &payload).then_some(payload)
}

/// Checks a text message; invalid UTF-8 closes the connection with 1007 (RFC 6455 §8.1).
pub(crate) fn is_utf8(conn: &Conn, payload: &[u8]) -> bool {
    if std::str::from_utf8(payload).is_ok() {
        return true;
    }
    conn.outbox().close(CloseRequest::Abort(
        1007,
        "invalid UTF-8 in a text frame".into(),
    ));
    false
}

/// Queues a reply to the connection's own request.
fn reply(hub: &Hub, conn: &Conn, bytes: Bytes) {
    if conn.outbox().push(OutFrame::Text(bytes), false) == crate::hub::Push::Overflow {
        hub.stats().slow_consumer();
    }
}

fn reply_error(hub: &Hub, conn: &Conn, id: Option<u64>, e: &HubError) {
    reply(hub, conn, v1::encode_error(id, e.code, &e.message));
}

/// Answers a publish or send once it is durable: its `ack` (for a request with an `id`)
/// after the store committed a message kept in history, at once otherwise; its `error` when
/// it was refused or the store lost it (with or without an `id`). The connection goes on
/// reading meanwhile: the ack is queued from the store's thread.
fn ack_when_committed(
    hub: &Hub,
    conn: &Arc<Conn>,
    id: Option<u64>,
    res: Result<Emitted, HubError>,
    fill: impl FnOnce(&mut crate::protocol::json::ObjectWriter, &Emitted) + Send + 'static,
) {
    match res {
        Err(e) => reply_error(hub, conn, id, &e),
        Ok(out) if out.is_settled() => {
            if let Some(id) = id {
                let mut w = v1::ack_writer(id);
                fill(&mut w, &out);
                reply(hub, conn, w.finish());
            }
        }
        Ok(out) => {
            let (hub, conn) = (hub.clone(), conn.clone());
            out.when_committed(move |r| match r {
                Ok(out) => {
                    if let Some(id) = id {
                        let mut w = v1::ack_writer(id);
                        fill(&mut w, &out);
                        reply(&hub, &conn, w.finish());
                    }
                }
                Err(e) => reply_error(&hub, &conn, id, &e),
            });
        }
    }
}

async fn handle_text(hub: &Hub, conn: &Arc<Conn>, payload: Bytes) {
    let frame = match v1::parse(&payload) {
        Ok(f) => f,
        Err(e) => return reply(hub, conn, v1::encode_error(e.id, e.code, &e.message)),
    };
    let id = frame.id;
    let ack = |fill: &dyn Fn(&mut crate::protocol::json::ObjectWriter)| {
        if let Some(id) = id {
            let mut w = v1::ack_writer(id);
            fill(&mut w);
            reply(hub, conn, w.finish());
        }
    };
    match frame.request {
        Request::Join {
            room,
            since,
            history,
        } => {
            let replay = match (since, history) {
                (Some(s), _) => ReplayFrom::Since(s),
                (None, Some(n)) => ReplayFrom::Latest(n),
                (None, None) => ReplayFrom::None,
            };
            let res = hub.join(conn, &room, replay, |j| {
                let id = id?;
                let mut w = v1::ack_writer(id);
                w.str("room", &j.room);
                if let Some(seq) = j.seq {
                    w.u64("seq", seq);
                }
                w.u64("members", j.members as u64);
                if j.gap {
                    w.bool("gap", true);
                }
                Some(OutFrame::Text(w.finish()))
            });
            if let Err(e) = res {
                reply_error(hub, conn, id, &e);
            }
        }
        Request::Leave { room } => {
            hub.leave(conn, &room);
            ack(&|w| {
                w.str("room", &room);
            });
        }
        Request::Publish {
            room,
            event,
            data,
            volatile,
            exclude_self,
            transient,
        } => {
            if let Err(e) = hub.authorize(conn, &room, Right::Publish) {
                return reply_error(hub, conn, id, &e);
            }
            let mut em = hub.to_room(&room).from(conn.user_arc()).sent_by(conn.id());
            if exclude_self {
                em = em.except(conn.id());
            }
            if volatile {
                em = em.volatile();
            }
            if transient {
                em = em.transient();
            }
            let res = em.publish(&event, Payload::Json(data));
            ack_when_committed(hub, conn, id, res, |w, out| {
                if let Some(seq) = out.seq {
                    w.u64("seq", seq);
                }
            });
        }
        Request::Send { to, event, data } => {
            // Offline is an error unless the message is kept for the user (a direct message
            // with `dm_history`); in a cluster, the ack waits for the other nodes' counts.
            let res = hub
                .to_user(&to)
                .from(conn.user_arc())
                .sent_by(conn.id())
                .counted()
                .publish(&event, Payload::Json(data))
                .and_then(|out| out.require_online(&to));
            ack_when_committed(hub, conn, id, res, |w, out| {
                w.u64("delivered", out.delivered as u64);
                if let Some(seq) = out.seq {
                    w.u64("seq", seq);
                }
            });
        }
        Request::Broadcast { event, data } => {
            if let Err(e) = hub.authorize_broadcast(conn) {
                return reply_error(hub, conn, id, &e);
            }
            match hub
                .to_all()
                .from(conn.user_arc())
                .sent_by(conn.id())
                .publish(&event, Payload::Json(data))
            {
                Ok(_) => ack(&|_| {}),
                Err(e) => reply_error(hub, conn, id, &e),
            }
        }
        Request::Ping => reply(hub, conn, v1::encode_pong(id)),
        Request::Custom { op, frame } => {
            let Some(handler) = hub.op_handler(&op) else {
                return reply_error(
                    hub,
                    conn,
                    id,
                    &HubError::new(ErrorCode::UnknownOp, format!("unknown op `{op}`")),
                );
            };
            let call = OpCall {
                hub: hub.clone(),
                conn: conn.clone(),
                op,
                frame: frame.to_value(),
            };
            match handler(call).await {
                Ok(fields) => ack(&|w| {
                    if let Some(serde_json::Value::Object(map)) = &fields {
                        for (k, v) in map {
                            if k != "op" && k != "id" {
                                w.value(k, v);
                            }
                        }
                    }
                }),
                Err(e) => reply_error(hub, conn, id, &e),
            }
        }
    }
}

async fn echo_handler(
    State(state): State<WsState>,
    peer: Peer,
    upgrade: Result<IncomingUpgrade, StatusCode>,
) -> Response {
    let (upgrade, permit) = match admit(&state, ip_of(peer), upgrade) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (response, fut) = match upgrade.upgrade(state.inner.options.clone()) {
        Ok(v) => v,
        Err(e) => return ApiError::new(ErrorCode::BadRequest, e.to_string()).into_response(),
    };
    tokio::spawn(async move {
        if let Ok(ws) = fut.await {
            let task = run_echo(
                state.inner.hub.clone(),
                Driver::new(ws, CLOSE_GRACE),
                permit,
            );
            tokio::spawn(task);
        }
    });
    response.into_response()
}

/// Sends every text and binary message back to its sender. The echo connection is a hub
/// connection like any other (heartbeat, shutdown, limits), but joins nothing.
#[allow(clippy::manual_async_fn)] // an async block, as in `run_v1`, keeps the task small
fn run_echo<S>(
    hub: Hub,
    mut driver: Driver<S>,
    permit: ConnPermit,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    async move {
        // A namespace of its own: an echo connection is nobody's device and hears no
        // broadcast, presence or notification.
        let spec = ConnSpec::new(None, Transport::Ws).in_ns(ECHO_NS.into());
        let conn = hub.register_with(spec, |_| None);
        while let Some(frame) = driver.next_message(&*conn, hub.stats()).await {
            hub.stats().message_in();
            if conn.outbox().is_closing() {
                continue;
            }
            let (opcode, payload) = (frame.opcode(), frame.into_payload());
            let out = if opcode == OpCode::Binary {
                OutFrame::Binary(payload)
            } else if is_utf8(&conn, &payload) {
                OutFrame::Text(payload)
            } else {
                continue;
            };
            if conn.outbox().push(out, false) == crate::hub::Push::Overflow {
                hub.stats().slow_consumer();
            }
        }
        hub.unregister(&conn);
        // Held until here, in the block's own capture: binding it to a local would keep a
        // second copy in the task.
        drop(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    /// An idle connection's task is the largest part of its memory: it must hold the
    /// WebSocket once and little else (it held the driver's state and the setup's values
    /// besides, 536 bytes more than the WebSocket).
    #[tokio::test]
    async fn a_v1_connection_task_holds_its_websocket_and_little_else() {
        let hub = Hub::new(HubConfig::default());
        let state = WsState::new(hub.clone(), WsConfig::default());
        let (io, _peer) = tokio::io::duplex(64);
        let ws = yawc::WebSocket::from_stream(io, yawc::Role::Server, state.options().clone())
            .expect("a WebSocket over a duplex stream");
        let websocket = std::mem::size_of_val(&ws);
        let permit = hub.try_reserve_from(None).expect("a connection slot");
        let conn = open_v1(&state, None, None, None);
        let task = run_v1(
            hub.clone(),
            conn.clone(),
            Driver::new(ws, CLOSE_GRACE),
            state.rate(),
            permit,
        );
        let rest = std::mem::size_of_val(&task) - websocket;
        assert!(
            rest <= 320,
            "the v1 task holds {rest} bytes besides its WebSocket"
        );
        drop(task);
        hub.unregister(&conn);
    }
}
