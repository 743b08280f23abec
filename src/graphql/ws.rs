//! One GraphQL WebSocket connection: the handshake (`connection_init`, whose payload may
//! carry the `token`), then operations by id. A subscription makes the connection a member
//! of its room in the hub, so it hears the same deliveries as v1 and Socket.IO clients;
//! each result is the payload its selection's shape encoded once for every subscriber
//! ([`Subscriptions`]). Queries and mutations sent as operations run on async-graphql and
//! answer one result, then `complete`.
//!
//! Protocol errors follow each protocol: `graphql-transport-ws` closes the connection with
//! its codes (4400 bad message, 4401 an operation before `connection_init`, 4403 refused
//! credentials, 4408 no `connection_init` in time, 4409 a duplicate id, 4429 a second
//! `connection_init`); the legacy `graphql-ws` answers `error` (or `connection_error`) and
//! goes on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::OperationType;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use serde_json::{Map, Value};

use super::codec::{self, ClientMessage, GqlError, Protocol, Request};
use super::plan::{self, Plan, Source};
use super::schema::Caller;
use super::GraphqlState;
use crate::error::HubError;
use crate::hub::now_ms;
use crate::hub::{
    CloseRequest, Conn, ConnPermit, ConnSpec, Delivery, Frames, OutFrame, Outbox, ReplayFrom, Right,
};
use crate::identity::Credentials;
use crate::limits::{Limiter, Verdict, RATE_LIMIT_CLOSE};
use crate::stats::Transport;
use crate::ws::driver::{Driver, Link};

/// Queries and mutations one connection may have running at once.
const MAX_RUNNING: usize = 32;

/// The connection's live subscriptions: what the hub asks for each delivery.
pub(super) struct Subscriptions {
    /// The connection's id: a message addressed to it is direct.
    me: Arc<str>,
    live: Mutex<Vec<Live>>,
}

struct Live {
    id: Arc<str>,
    /// What comes before each result's payload (its id, in this protocol).
    prefix: Bytes,
    source: Source,
    /// The room it joined, as the client named it.
    room: Option<String>,
    shape: Arc<plan::Shape>,
    key: Arc<str>,
}

impl Frames for Subscriptions {
    fn frames(&self, d: &Delivery, push: &mut dyn FnMut(OutFrame)) {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in live.iter().filter(|s| s.source.wants(d, &self.me)) {
            let payload = d.shared(&s.key, |d| s.shape.encode(d));
            push(OutFrame::Text(Protocol::around(&s.prefix, &payload)));
        }
    }
}

/// The outbox before the connection is registered (the same one it will have).
struct Waiting(Arc<Outbox>);

impl Link for Waiting {
    fn outbox(&self) -> &Outbox {
        &self.0
    }
    fn pong(&self) {}
    fn name(&self) -> &str {
        "graphql (before connection_init)"
    }
}

fn send(outbox: &Outbox, bytes: Bytes) {
    let _ = outbox.push(OutFrame::Text(bytes), false);
}

fn close(outbox: &Outbox, code: u16, reason: &str) {
    outbox.close(CloseRequest::Close(code, reason.into()));
}

/// Who the connection is, once `connection_init` said.
struct Admitted {
    user: Option<String>,
    creds: Option<Credentials>,
}

/// Runs one connection until it ends.
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` keeps
/// its arguments and their moved copies side by side in the task, which held the driver
/// twice.
#[allow(clippy::manual_async_fn)] // deliberate, as said above
pub(super) fn run<S>(
    state: GraphqlState,
    mut driver: Driver<S>,
    protocol: Protocol,
    upgrade_user: Option<String>,
    upgrade_creds: Option<Credentials>,
    permit: ConnPermit,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    async move {
        let hub = state.inner.hub.clone();
        let outbox = Arc::new(Outbox::new(hub.queue_limit()));
        let waiting = Waiting(outbox.clone());
        let deadline = tokio::time::Instant::now() + state.inner.config.init_timeout;
        // Until `connection_init`: nothing but pings.
        let admitted = loop {
            let next =
                tokio::time::timeout_at(deadline, driver.next_message(&waiting, hub.stats()));
            let frame = match next.await {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(_) => {
                    close(&outbox, 4408, "Connection initialisation timeout");
                    while driver.next_message(&waiting, hub.stats()).await.is_some() {}
                    return;
                }
            };
            hub.stats().message_in();
            if outbox.is_closing() {
                continue;
            }
            match codec::decode(protocol, &frame.into_payload()) {
                Ok(ClientMessage::Init(payload)) => {
                    match admit(&state, payload, upgrade_user.clone(), upgrade_creds.clone()) {
                        Ok(a) => break a,
                        Err(e) => {
                            if let Some(b) = protocol.connection_error(&e.message) {
                                send(&outbox, b);
                            }
                            close(&outbox, 4403, "Forbidden");
                        }
                    }
                }
                Ok(ClientMessage::Ping) => send(&outbox, protocol.pong()),
                Ok(ClientMessage::Pong) => {}
                Ok(ClientMessage::Terminate) => close(&outbox, 1000, "terminated"),
                Ok(ClientMessage::Subscribe { id, .. }) => match protocol {
                    Protocol::TransportWs => close(&outbox, 4401, "Unauthorized"),
                    Protocol::Legacy => send(
                        &outbox,
                        protocol.error(
                            &id,
                            &[GqlError::new("unauthorized", "send connection_init first")],
                        ),
                    ),
                },
                Ok(ClientMessage::Complete { .. }) => {}
                Err(e) => bad_message(protocol, &outbox, &e.message),
            }
        };
        let conn = hub.register_with(
            ConnSpec::new(admitted.user.as_deref(), Transport::GraphQl)
                .with_outbox(outbox.clone())
                .from_address(permit.address()),
            |_| Some(OutFrame::Text(protocol.ack())),
        );
        if let Some(c) = admitted.creds {
            hub.set_expiry(&conn, c.expires_at_ms);
            hub.set_grants(&conn, c.grants);
        }
        let subs = Arc::new(Subscriptions {
            me: conn.wire_id().into(),
            live: Mutex::new(Vec::new()),
        });
        conn.set_frames(subs.clone());
        let mut session = Session {
            state: &state,
            conn: &conn,
            protocol,
            subs: &subs,
            rooms: HashMap::new(),
            running: HashMap::new(),
        };
        let rate = state.inner.ws.rate();
        let mut limiter = rate.is_on().then(|| Limiter::new(&rate, now_ms()));
        while let Some(frame) = driver.next_message(&*conn, hub.stats()).await {
            hub.stats().message_in();
            if conn.outbox().is_closing() {
                continue;
            }
            if let Some(l) = &mut limiter {
                match l.check(&rate, frame.payload().len(), now_ms) {
                    Verdict::Allow => {}
                    Verdict::Refuse => {
                        // The message is dropped (an operation it would start is answered), but
                        // ending an operation is always heard.
                        let payload = frame.into_payload();
                        match codec::decode(protocol, &payload) {
                            Ok(ClientMessage::Subscribe { id, .. }) => {
                                let e =
                                    GqlError::new("rate_limited", "too many messages; slow down");
                                send(conn.outbox(), protocol.error(&id, &[e]));
                            }
                            Ok(m @ ClientMessage::Complete { .. }) => session.handle(m),
                            _ => {}
                        }
                        continue;
                    }
                    Verdict::Close => {
                        conn.close(RATE_LIMIT_CLOSE, "rate limit exceeded");
                        continue;
                    }
                }
            }
            if frame.opcode() == yawc::OpCode::Binary {
                bad_message(
                    protocol,
                    conn.outbox(),
                    "binary frames are not GraphQL messages",
                );
                continue;
            }
            let payload = frame.into_payload();
            // Invalid UTF-8 in a text frame closes with 1007, as on every WebSocket front end.
            if !crate::ws::is_utf8(&conn, &payload) {
                continue;
            }
            match codec::decode(protocol, &payload) {
                Ok(m) => session.handle(m),
                Err(e) => bad_message(protocol, conn.outbox(), &e.message),
            }
        }
        for (_, task) in session.running.drain() {
            task.abort();
        }
        hub.unregister(&conn);
        // Held until here in the block's own capture (a local would be a second copy).
        drop(permit);
    }
}

/// A message that cannot be read: `graphql-transport-ws` closes with 4400, the legacy
/// protocol answers `error`.
fn bad_message(protocol: Protocol, outbox: &Outbox, why: &str) {
    match protocol {
        Protocol::TransportWs => close(outbox, 4400, &truncate(why)),
        Protocol::Legacy => {
            let v = serde_json::json!({"type": "error", "payload": {"message": why}});
            send(outbox, Bytes::from(v.to_string()));
        }
    }
}

/// A close reason fits in 123 bytes.
fn truncate(s: &str) -> String {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Who `connection_init` says the connection is. With authentication on, a `token` in
/// the payload is verified and counts; without one, the upgrade's credentials do. In auth
/// mode `none`, the upgrade's user or the payload's `user` names it.
fn admit(
    state: &GraphqlState,
    payload: Map<String, Value>,
    upgrade_user: Option<String>,
    upgrade_creds: Option<Credentials>,
) -> Result<Admitted, HubError> {
    let auth = &state.inner.auth;
    if auth.required() {
        if let Some(token) = payload.get("token").and_then(Value::as_str) {
            let p = auth.verify(token)?;
            let creds = p.credentials();
            return Ok(Admitted {
                user: Some(p.user),
                creds: Some(creds),
            });
        }
        return match upgrade_user {
            Some(user) => Ok(Admitted {
                user: Some(user),
                creds: upgrade_creds,
            }),
            None => Err(auth.missing()),
        };
    }
    let user = upgrade_user.or_else(|| {
        payload
            .get("user")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    if user
        .as_deref()
        .is_some_and(|u| !crate::protocol::v1::is_user_name(u))
    {
        return Err(HubError::bad_request(
            "a user name is 1 to 200 bytes, without control characters",
        ));
    }
    Ok(Admitted {
        user,
        creds: upgrade_creds,
    })
}

/// The operations of one connection.
struct Session<'a> {
    state: &'a GraphqlState,
    conn: &'a Arc<Conn>,
    protocol: Protocol,
    subs: &'a Arc<Subscriptions>,
    /// Rooms joined for subscriptions, with how many use each.
    rooms: HashMap<String, usize>,
    /// Queries and mutations still running, by id.
    running: HashMap<String, tokio::task::JoinHandle<()>>,
}

impl Session<'_> {
    fn handle(&mut self, m: ClientMessage) {
        let outbox = self.conn.outbox();
        match m {
            ClientMessage::Init(_) => match self.protocol {
                Protocol::TransportWs => close(outbox, 4429, "Too many initialisation requests"),
                Protocol::Legacy => {}
            },
            ClientMessage::Ping => send(outbox, self.protocol.pong()),
            ClientMessage::Pong => {}
            ClientMessage::Terminate => close(outbox, 1000, "terminated"),
            ClientMessage::Complete { id } => self.stop(&id),
            ClientMessage::Subscribe { id, request } => {
                self.running.retain(|_, t| !t.is_finished());
                if self.is_live(&id) {
                    match self.protocol {
                        Protocol::TransportWs => {
                            let reason = truncate(&format!("Subscriber for {id} already exists"));
                            return close(outbox, 4409, &reason);
                        }
                        // subscriptions-transport-ws replaces an operation of the same id.
                        Protocol::Legacy => self.stop(&id),
                    }
                }
                if let Err(errors) = self.start(&id, request) {
                    send(outbox, self.protocol.error(&id, &errors));
                }
            }
        }
    }

    fn is_live(&self, id: &str) -> bool {
        self.running.contains_key(id)
            || self
                .subs
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|s| &*s.id == id)
    }

    /// Runs operation `id`: a subscription joins the hub; a query or mutation runs once.
    fn start(&mut self, id: &str, request: Request) -> Result<(), Vec<GqlError>> {
        let one = |code, message: String| vec![GqlError::new(code, message)];
        let doc = async_graphql::parser::parse_query(&request.query)
            .map_err(|e| one("bad_request", e.to_string()))?;
        let op = plan::operation(&doc, request.operation_name.as_deref()).map_err(|e| vec![e])?;
        let gql_request = async_graphql::Request::new(request.query.clone())
            .variables(async_graphql::Variables::from_json(Value::Object(
                request.variables.clone(),
            )))
            .data(Caller::of_conn(&self.state.inner.hub, self.conn));
        let gql_request = match &request.operation_name {
            Some(n) => gql_request.operation_name(n),
            None => gql_request,
        };
        let schema = self.state.inner.schema.clone();
        if op.node.ty != OperationType::Subscription {
            if self.running.len() >= MAX_RUNNING {
                return Err(one(
                    "limit",
                    format!("at most {MAX_RUNNING} queries and mutations at once per connection"),
                ));
            }
            let (protocol, conn, op_id) = (self.protocol, self.conn.clone(), id.to_string());
            let task = tokio::spawn(async move {
                let response = schema.execute(gql_request).await;
                // Refused before it ran (invalid, too deep, too complex): `error`, as the
                // protocol says, with the schema's errors.
                if response.data == async_graphql::Value::Null && !response.errors.is_empty() {
                    let errors = response
                        .errors
                        .iter()
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect();
                    return send(conn.outbox(), protocol.error_values(&op_id, errors));
                }
                match serde_json::to_vec(&response) {
                    Ok(payload) => {
                        send(conn.outbox(), protocol.next(&op_id, &payload));
                        send(conn.outbox(), protocol.complete(&op_id));
                    }
                    Err(_) => close(conn.outbox(), 4500, "Internal error"),
                }
            });
            self.running.insert(id.to_string(), task);
            return Ok(());
        }
        // Validation (types, arguments, variables, depth and complexity) is the schema's:
        // its subscription resolvers never yield, so a valid document gives nothing now.
        let mut stream = schema.execute_stream(gql_request);
        if let Some(Some(response)) = stream.next().now_or_never() {
            if response.is_err() {
                return Err(response
                    .errors
                    .iter()
                    .map(|e| GqlError::new("bad_request", e.message.clone()))
                    .collect());
            }
        }
        drop(stream);
        let limit = self.state.inner.config.max_subscriptions;
        let live_now = self
            .subs
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if live_now >= limit {
            return Err(one(
                "limit",
                format!("at most {limit} subscriptions per connection"),
            ));
        }
        let Plan { mut source, shape } =
            plan::plan(&doc, request.operation_name.as_deref(), &request.variables)
                .map_err(|e| vec![e])?;
        // Listed before the room is joined: a message published right after the join (a
        // peer answering the presence event) finds the subscription.
        let room = source.room().map(str::to_string);
        if let (Some(r), Source::Messages(matched)) = (&room, &mut source) {
            // A conversation (`dm:bob`) is delivered under its internal name.
            *matched = self
                .state
                .inner
                .hub
                .delivered_as(self.conn, r)
                .map_err(|e| one(e.code.as_str(), e.message))?;
        }
        let presence = matches!(source, Source::Presence(_));
        let key: Arc<str> = shape.key().into();
        self.live().push(Live {
            id: id.into(),
            prefix: self.protocol.next_prefix(id),
            source,
            room: room.clone(),
            shape,
            key,
        });
        if let Some(room) = room {
            if let Err(e) = self.enter(&room, presence) {
                self.live().retain(|s| &*s.id != id);
                return Err(one(e.code.as_str(), e.message));
            }
        }
        Ok(())
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Live>> {
        self.subs
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins `room` for a subscription, counting the subscriptions that use it. The join
    /// is made each time (it changes nothing for a member): a connection the hub took out
    /// of the room (the room deleted, a server's `socketsLeave`) is a member again.
    fn enter(&mut self, room: &str, presence: bool) -> Result<(), HubError> {
        let hub = &self.state.inner.hub;
        if presence {
            hub.authorize(self.conn, room, Right::Presence)?;
        }
        hub.join(self.conn, room, ReplayFrom::None, |_| None)?;
        *self.rooms.entry(room.to_string()).or_insert(0) += 1;
        Ok(())
    }

    /// Ends operation `id`: a subscription leaves its room when it was the last to use it.
    fn stop(&mut self, id: &str) {
        if let Some(task) = self.running.remove(id) {
            task.abort();
            return;
        }
        let gone = {
            let mut live = self
                .subs
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(i) = live.iter().position(|s| &*s.id == id) else {
                return;
            };
            live.remove(i)
        };
        if let Some(room) = gone.room.as_deref() {
            if let Some(n) = self.rooms.get_mut(room) {
                *n -= 1;
                if *n == 0 {
                    self.rooms.remove(room);
                    self.state.inner.hub.leave(self.conn, room);
                }
            }
        }
    }
}
