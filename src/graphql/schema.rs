//! The GraphQL schema (DESIGN.md, "GraphQL"), on async-graphql: queries `rooms`, `room`,
//! `history`, `presence` and `stats`; mutations `publish`, `send` and `notify`; and the
//! subscriptions `messages(room)`, `direct`, `notifications` and `presence(room)`.
//!
//! Queries and mutations run here, as the [`Caller`] the request carries, under the same
//! rights as the other front ends. Subscriptions are declared here so that documents are
//! validated and introspected against them; their results come from the hub, written once
//! per delivery for every subscriber of the same selection ([`super::plan`]), so their
//! resolvers never yield.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Error, ErrorExtensions, Json, Object, Schema, SimpleObject,
    Subscription,
};
use futures_util::Stream;
use serde_json::Value;

use crate::error::{ErrorCode, HubError};
use crate::hub::{Conn, Delivery, Grants, Hub, Payload, Right};
use crate::protocol::v1::RawJson;
use crate::services::notifications::{Notifications, Recipient};

/// The schema Hubbub serves.
pub type HubbubSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// A schema without subscriptions, for what runs over HTTP.
pub type PlainSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Limits a document must keep to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The deepest selection.
    pub depth: usize,
    /// The largest complexity (one per field).
    pub complexity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            depth: 10,
            complexity: 200,
        }
    }
}

/// What resolvers reach.
#[derive(Clone, Debug)]
pub struct Services {
    /// The hub.
    pub hub: Hub,
    /// The notification service.
    pub notifications: Option<Arc<Notifications>>,
}

/// Who runs an operation: a GraphQL WebSocket connection, or the credentials of an HTTP
/// request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user, when known (anonymous HTTP callers in auth mode `none` are not).
    pub user: Option<Arc<str>>,
    /// What the credentials allow; `None`: unrestricted (auth mode `none`).
    pub grants: Option<Arc<Grants>>,
    /// The connection, for a WebSocket caller.
    pub conn: Option<Arc<Conn>>,
}

impl Caller {
    /// The caller behind connection `conn`.
    pub fn of_conn(hub: &Hub, conn: &Arc<Conn>) -> Self {
        Self {
            user: Some(conn.user_arc()),
            grants: hub.grants(conn),
            conn: Some(conn.clone()),
        }
    }

    /// Whether the caller may know of room `info` (public, or granted).
    fn may_see(&self, info: &crate::hub::RoomInfo) -> bool {
        match &self.grants {
            Some(g) => g.allows(&info.name, info.private, Right::Join),
            None => !info.private,
        }
    }

    fn authorize(&self, hub: &Hub, room: &str, right: Right) -> Result<(), Error> {
        let user = self.user.as_deref().unwrap_or("");
        hub.authorize_as("/", user, self.grants.as_deref(), room, right)
            .map_err(gql_error)
    }
}

/// Builds the schema.
pub fn build(services: Services, limits: Limits) -> HubbubSchema {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(services)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        .finish()
}

fn gql_error(e: HubError) -> Error {
    Error::new(e.message.clone()).extend_with(|_, ext| ext.set("code", e.code.as_str()))
}

fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

fn caller<'a>(ctx: &Context<'a>) -> Result<&'a Caller, Error> {
    ctx.data::<Caller>().map_err(|_| {
        gql_error(HubError::new(
            ErrorCode::Unauthorized,
            "this operation needs a connection",
        ))
    })
}

/// A room.
#[derive(SimpleObject)]
pub struct Room {
    /// Its name.
    name: String,
    /// Users in it.
    members: u64,
    /// Its user limit, null when unlimited.
    max_users: Option<u64>,
    /// Whether joining needs a grant.
    private: bool,
    /// Messages it keeps.
    history: u64,
}

impl From<crate::hub::RoomInfo> for Room {
    fn from(i: crate::hub::RoomInfo) -> Self {
        Self {
            name: i.name,
            members: i.members as u64,
            max_users: i.max_users.map(|n| n as u64),
            private: i.private,
            history: i.history as u64,
        }
    }
}

/// A message: to a room, or to a user.
#[derive(SimpleObject)]
pub struct Message {
    /// Its room (none for a push to a user).
    room: Option<String>,
    /// Its event.
    event: String,
    /// Its payload.
    data: Json<Value>,
    /// Its sender.
    from: Option<String>,
    /// Its addressee (a direct message).
    to: Option<String>,
    /// Its number in its room's history.
    seq: Option<u64>,
    /// When it was sent, ms since the epoch.
    ts: u64,
}

impl Message {
    fn of(d: &Delivery) -> Option<Self> {
        let m = d.message()?;
        Some(Self {
            room: m.shown_room().map(str::to_string),
            event: m.event.to_string(),
            data: Json(serde_json::from_slice(&m.v1_data()).unwrap_or_default()),
            from: m.from.as_deref().map(str::to_string),
            to: m.to.as_deref().map(str::to_string),
            seq: m.seq,
            ts: m.ts,
        })
    }
}

/// A notification.
#[derive(SimpleObject)]
pub struct Notification {
    /// Its id (increasing).
    id: u64,
    /// Its event.
    event: String,
    /// Its payload.
    data: Json<Value>,
    /// When it was made, ms since the epoch.
    ts: u64,
    /// Whether the user read it.
    read: bool,
}

/// Someone joined or left a room.
#[derive(SimpleObject)]
pub struct PresenceEvent {
    /// The room.
    room: String,
    /// Who.
    user: String,
    /// Joined (or left).
    joined: bool,
    /// Users in the room now.
    count: u64,
}

/// What a publish did.
#[derive(SimpleObject)]
pub struct Published {
    /// Connections it was queued for.
    delivered: u64,
    /// Its number in the room's history.
    seq: Option<u64>,
}

/// What a notification did.
#[derive(SimpleObject)]
pub struct Notified {
    /// Its id.
    id: u64,
    /// Connections it reached.
    delivered: u64,
}

/// Queries.
#[derive(Debug, Default)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The rooms the caller may join (a private room only with a grant that names it).
    async fn rooms(&self, ctx: &Context<'_>) -> Result<Vec<Room>, Error> {
        let caller = caller(ctx)?;
        Ok(services(ctx)
            .hub
            .rooms()
            .into_iter()
            .filter(|i| caller.may_see(i))
            .map(Room::from)
            .collect())
    }

    /// One room, null when it does not exist or the caller may not join it.
    async fn room(&self, ctx: &Context<'_>, name: String) -> Result<Option<Room>, Error> {
        let caller = caller(ctx)?;
        Ok(services(ctx)
            .hub
            .room_info(&name)
            .filter(|i| caller.may_see(i))
            .map(Room::from))
    }

    /// A room's kept messages, newest first, before `seq` `before`.
    async fn history(
        &self,
        ctx: &Context<'_>,
        room: String,
        before: Option<u64>,
        #[graphql(default = 50)] limit: u64,
    ) -> Result<Vec<Message>, Error> {
        let hub = &services(ctx).hub;
        caller(ctx)?.authorize(hub, &room, Right::History)?;
        if limit == 0 || limit > 500 {
            return Err(gql_error(HubError::bad_request(
                "`limit` must be between 1 and 500",
            )));
        }
        let (messages, _) = hub
            .history(&room, before, limit as usize)
            .map_err(gql_error)?;
        Ok(messages.iter().filter_map(|d| Message::of(d)).collect())
    }

    /// Who is in a room (every node of a cluster), null when it does not exist.
    async fn presence(
        &self,
        ctx: &Context<'_>,
        room: String,
    ) -> Result<Option<Vec<String>>, Error> {
        let hub = &services(ctx).hub;
        caller(ctx)?.authorize(hub, &room, Right::Presence)?;
        hub.presence_everywhere(&room).await.map_err(gql_error)
    }

    /// This node's figures (as `GET /api/stats`, without the cluster's).
    async fn stats(&self, ctx: &Context<'_>) -> Json<Value> {
        let hub = &services(ctx).hub;
        let st = hub.stats();
        Json(serde_json::json!({
            "node": hub.node(),
            "connections": st.connections_json(),
            "users_online": hub.users_online().len(),
            "rooms": hub.rooms().len(),
            "messages_in": st.messages_in_total(),
            "messages_out": st.messages_out_total(),
        }))
    }
}

/// Mutations.
#[derive(Debug, Default)]
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Publishes to a room as the caller; answered once the message is durable.
    async fn publish(
        &self,
        ctx: &Context<'_>,
        room: String,
        event: String,
        data: Option<Json<Value>>,
    ) -> Result<Published, Error> {
        let hub = &services(ctx).hub;
        let caller = caller(ctx)?;
        check_event(&event)?;
        caller.authorize(hub, &room, Right::Publish)?;
        let data = data.map(|j| j.0).unwrap_or(Value::Null);
        let emitted = as_caller(hub.to_room(&room), caller).publish(&event, Payload::json(&data));
        settled(emitted).await
    }

    /// Sends to a user's connections (on any node) as the caller.
    async fn send(
        &self,
        ctx: &Context<'_>,
        to: String,
        event: String,
        data: Option<Json<Value>>,
    ) -> Result<Published, Error> {
        let hub = &services(ctx).hub;
        let caller = caller(ctx)?;
        check_event(&event)?;
        let data = data.map(|j| j.0).unwrap_or(Value::Null);
        let emitted = as_caller(hub.to_user(&to), caller)
            .counted()
            .publish(&event, Payload::json(&data))
            .and_then(|out| out.require_online(&to));
        settled(emitted).await
    }

    /// Makes a notification for a user (or everyone, `to: null`). A server capability:
    /// only callers whose credentials grant `broadcast` may.
    async fn notify(
        &self,
        ctx: &Context<'_>,
        to: Option<String>,
        #[graphql(default_with = "\"notification\".to_string()")] event: String,
        data: Option<Json<Value>>,
    ) -> Result<Notified, Error> {
        let s = services(ctx);
        check_event(&event)?;
        if caller(ctx)?.grants.as_ref().is_some_and(|g| !g.broadcast) {
            return Err(gql_error(HubError::new(
                ErrorCode::Forbidden,
                "notifying needs the `broadcast` claim",
            )));
        }
        let Some(n) = &s.notifications else {
            return Err(gql_error(HubError::new(
                ErrorCode::Unavailable,
                "notifications are not served here",
            )));
        };
        let to = match to {
            Some(u) if u.is_empty() => {
                return Err(gql_error(HubError::bad_request("`to` must not be empty")))
            }
            Some(u) => Recipient::User(u.into()),
            None => Recipient::Everyone,
        };
        let data = data.map(|j| j.0).unwrap_or(Value::Null);
        let made = n
            .notify(to, &event, RawJson::from_value(&data))
            .map_err(gql_error)?;
        let (id, delivered) = (made.id, made.delivered);
        if let Some(c) = made.commit {
            c.await.map_err(gql_error)?;
        }
        Ok(Notified {
            id,
            delivered: delivered as u64,
        })
    }
}

/// What an emit did, once it is durable (its acknowledgement, DESIGN.md "Durability").
async fn settled(emitted: Result<crate::hub::Emitted, HubError>) -> Result<Published, Error> {
    let out = emitted
        .map_err(gql_error)?
        .committed()
        .await
        .map_err(gql_error)?;
    Ok(Published {
        delivered: out.delivered as u64,
        seq: out.seq,
    })
}

/// An emit sent by `caller`: from its user, by its connection.
fn as_caller<'h>(em: crate::hub::Emitter<'h>, caller: &Caller) -> crate::hub::Emitter<'h> {
    let em = match &caller.user {
        Some(u) => em.from(u.clone()),
        None => em,
    };
    match &caller.conn {
        Some(c) => em.sent_by(c.id()),
        // Over HTTP: still a client's message, never the server's.
        None => em.from_client(),
    }
}

fn check_event(event: &str) -> Result<(), Error> {
    if event.is_empty() || event.len() > crate::protocol::v1::MAX_NAME_LEN {
        return Err(gql_error(HubError::bad_request(
            "`event` is 1 to 200 bytes",
        )));
    }
    Ok(())
}

/// Subscriptions: declared for validation and introspection; their results come from the
/// hub ([`super::plan`]).
#[derive(Debug, Default)]
pub struct SubscriptionRoot;

fn never<T: Send + 'static>() -> impl Stream<Item = T> {
    futures_util::stream::pending()
}

#[Subscription]
impl SubscriptionRoot {
    /// A room's messages, from now on (the subscriber joins the room).
    async fn messages(&self, room: String) -> impl Stream<Item = Message> {
        let _ = room;
        never()
    }

    /// The subscriber's direct messages and pushes.
    async fn direct(&self) -> impl Stream<Item = Message> {
        never()
    }

    /// The subscriber's notifications.
    async fn notifications(&self) -> impl Stream<Item = Notification> {
        never()
    }

    /// Who joins and leaves a room (the subscriber joins the room).
    async fn presence(&self, room: String) -> impl Stream<Item = PresenceEvent> {
        let _ = room;
        never()
    }
}
