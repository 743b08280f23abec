//! The two connections to Redis a node keeps: one that publishes (a queue drained by one
//! task, so a node's messages leave in the order they were given, many to a round trip) and
//! one that listens (a subscriber task that reconnects with backoff and subscribes again).
//! Commands that want an answer (`PUBSUB NUMSUB`, the heartbeat keys) go through a
//! [`ConnectionManager`].
//!
//! The listener of the classic flavour is a RESP2 pub/sub connection. The sharded flavour's
//! (Redis 7 `SSUBSCRIBE`) is a RESP3 connection whose messages arrive as pushes: it also
//! subscribes and unsubscribes the rooms' channels as rooms come and go
//! ([`Link::shard_subscribe`]).
//!
//! Nothing waits on Redis in the hub's path: [`Link::publish`] queues or fails at once
//! (`unavailable`) when the listener is down or the queue is full, so an outage costs the
//! cluster's deliveries, never the local ones, and nothing piles up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::error::{ErrorCode, HubError};

/// Messages queued for Redis at most; more is refused (`unavailable`).
const QUEUE: usize = 16_384;
/// PUBLISH commands sent in one round trip at most.
const BATCH: usize = 256;
/// The longest pause between two attempts to reach Redis again.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long connecting or one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A message that arrived on a subscribed channel (borrowed from the connection's buffer:
/// whatever is kept is copied by whoever keeps it).
#[derive(Debug)]
pub(super) struct Incoming<'a> {
    /// The channel it was published on.
    pub(super) channel: &'a str,
    /// Its bytes.
    pub(super) payload: &'a [u8],
}

/// What is called once a queued message was published (or could not be).
pub(super) type Sent = Box<dyn FnOnce(Result<(), HubError>) + Send>;

/// What is called with a script's answer (or why it did not run).
pub(super) type Reply = Box<dyn FnOnce(Result<redis::Value, HubError>) + Send>;

/// Work waiting for the publisher, done in the order it was queued.
enum Outgoing {
    /// `PUBLISH channel payload` (`SPUBLISH` when the first member is `true`).
    Publish(bool, String, Bytes, Option<Sent>),
    /// A command that wants its answer (the cluster's numbering script).
    Eval(redis::Cmd, Reply),
}

/// What the listener subscribes to on every (re)connection.
#[derive(Clone, Debug, Default)]
pub(super) struct Subscriptions {
    /// Channels (`SUBSCRIBE`).
    pub(super) channels: Vec<String>,
    /// Patterns (`PSUBSCRIBE`).
    pub(super) patterns: Vec<String>,
    /// Shard channels (`SSUBSCRIBE`); with any, the listener is the sharded one.
    pub(super) shard_channels: Vec<String>,
}

/// A change of the shard channels the listener is subscribed to.
enum ShardChange {
    Subscribe(String),
    Unsubscribe(String),
}

/// The shard channels that come and go (rooms' channels), each with how many reasons this
/// node has to hear it, and where changes go while the sharded listener is connected.
#[derive(Default)]
struct ShardRooms {
    wanted: std::collections::HashMap<String, usize>,
    /// The listener's own shard channels: never unsubscribed for a room that goes.
    fixed: std::collections::HashSet<String>,
    changes: Option<mpsc::UnboundedSender<ShardChange>>,
}

/// The node's connections to Redis.
pub(super) struct Link {
    client: redis::Client,
    out: mpsc::Sender<Outgoing>,
    shard_rooms: Mutex<ShardRooms>,
    commands: ConnectionManager,
    listening: AtomicBool,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("listening", &self.listening.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Opens the link to `url` (connections are made lazily and kept up by the tasks).
    /// `subscriptions` are made on every (re)connection (with the shard channels of
    /// [`Self::shard_subscribe`]), and what arrives goes to `on_message`; `on_listening`
    /// hears `true` each time the subscriptions are in place and `false` each time they are
    /// lost.
    pub(super) fn open(
        url: &str,
        subscriptions: Subscriptions,
        on_message: impl Fn(Incoming<'_>) + Send + Sync + 'static,
        on_listening: impl Fn(bool) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, HubError> {
        let client = redis::Client::open(url)
            .map_err(|e| HubError::bad_request(format!("redis_url `{url}`: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(MAX_BACKOFF);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| HubError::bad_request(format!("redis_url `{url}`: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let link = Arc::new(Self {
            client,
            out: tx,
            shard_rooms: Mutex::new(ShardRooms {
                fixed: subscriptions.shard_channels.iter().cloned().collect(),
                ..ShardRooms::default()
            }),
            commands,
            listening: AtomicBool::new(false),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        tokio::spawn(publisher(Arc::downgrade(&link), link.commands.clone(), rx));
        tokio::spawn(listener(
            Arc::downgrade(&link),
            subscriptions,
            Arc::new(on_message),
            Box::new(on_listening),
        ));
        Ok(link)
    }

    /// Keeps shard channel `channel` subscribed from now on (and after every reconnection),
    /// until [`Self::shard_unsubscribe`] was called as often.
    pub(super) fn shard_subscribe(&self, channel: String) {
        let mut rooms = lock(&self.shard_rooms);
        let n = rooms.wanted.entry(channel.clone()).or_insert(0);
        *n += 1;
        if *n == 1 && !rooms.fixed.contains(&channel) {
            if let Some(tx) = &rooms.changes {
                let _ = tx.send(ShardChange::Subscribe(channel));
            }
        }
    }

    /// Drops one reason to listen to shard channel `channel`; the last one unsubscribes.
    pub(super) fn shard_unsubscribe(&self, channel: &str) {
        let mut rooms = lock(&self.shard_rooms);
        let Some(n) = rooms.wanted.get_mut(channel) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        rooms.wanted.remove(channel);
        if !rooms.fixed.contains(channel) {
            if let Some(tx) = &rooms.changes {
                let _ = tx.send(ShardChange::Unsubscribe(channel.to_string()));
            }
        }
    }

    /// Queues `payload` for shard channel `channel` (`SPUBLISH`), as [`Self::publish`].
    pub(super) fn spublish(
        &self,
        channel: String,
        payload: Bytes,
        sent: Option<Sent>,
    ) -> Result<(), HubError> {
        self.queue_live(Outgoing::Publish(true, channel, payload, sent))
    }

    /// Queues `payload` for `channel`; `sent` hears whether Redis took it. `unavailable`
    /// when Redis is not reachable now or the queue is full: nothing was queued.
    pub(super) fn publish(
        &self,
        channel: String,
        payload: Bytes,
        sent: Option<Sent>,
    ) -> Result<(), HubError> {
        self.queue_live(Outgoing::Publish(false, channel, payload, sent))
    }

    /// Queues `out` while the listener is subscribed; `unavailable` otherwise.
    fn queue_live(&self, out: Outgoing) -> Result<(), HubError> {
        if !self.listening.load(Ordering::Acquire) {
            return Err(self.down());
        }
        self.queue(out)
    }

    /// Queues `cmd` behind everything queued so far (so a script that publishes keeps this
    /// node's order); `reply` gets its answer. Refused at once like [`Self::publish`].
    pub(super) fn eval(&self, cmd: redis::Cmd, reply: Reply) -> Result<(), HubError> {
        self.queue_live(Outgoing::Eval(cmd, reply))
    }

    fn queue(&self, out: Outgoing) -> Result<(), HubError> {
        self.out.try_send(out).map_err(|_| {
            HubError::new(
                ErrorCode::Unavailable,
                "the cluster is not keeping up (Redis queue full)",
            )
        })
    }

    /// Runs one command that wants an answer, with a timeout.
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, HubError> {
        if !self.listening.load(Ordering::Acquire) {
            return Err(self.down());
        }
        let mut c = self.commands.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.failed_with(e.to_string())),
            Err(_) => Err(self.failed_with("Redis did not answer in time".into())),
        }
    }

    /// Runs a pipeline whose answers are not needed.
    pub(super) async fn run(&self, pipe: &redis::Pipeline) -> Result<(), HubError> {
        let mut c = self.commands.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut c)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failed_with(e.to_string())),
            Err(_) => Err(self.failed_with("Redis did not answer in time".into())),
        }
    }

    /// `Ok` while the listener is subscribed; why not otherwise.
    pub(super) fn health(&self) -> Result<(), HubError> {
        if self.listening.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(self.down())
        }
    }

    /// Messages that could not be published (counted by the publisher).
    pub(super) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn down(&self) -> HubError {
        let why = lock(&self.last_error)
            .clone()
            .unwrap_or_else(|| "not connected yet".into());
        HubError::new(
            ErrorCode::Unavailable,
            format!("Redis is unreachable: {why}"),
        )
    }

    fn failed_with(&self, why: String) -> HubError {
        *lock(&self.last_error) = Some(why.clone());
        HubError::new(ErrorCode::Unavailable, format!("Redis: {why}"))
    }
}

/// Drains the queue: whatever is waiting goes in one pipeline (PUBLISH commands, and
/// scripts whose answers are handed back). A pipeline of publishes only that fails is tried
/// once more after a pause (the connection manager connects again meanwhile); one with a
/// script is not (the script may have run: numbering a message twice is worse than
/// answering `unavailable`). Then its senders hear the error.
async fn publisher(
    link: std::sync::Weak<Link>,
    mut commands: ConnectionManager,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        // A script that fails answers its own sender only; the batch's others went through.
        pipe.ignore_errors();
        let mut waiting = Vec::new();
        let mut replies = Vec::new();
        for out in batch.drain(..) {
            match out {
                Outgoing::Publish(sharded, channel, payload, sent) => {
                    let cmd = if sharded { "SPUBLISH" } else { "PUBLISH" };
                    pipe.cmd(cmd).arg(channel).arg(&payload[..]).ignore();
                    waiting.extend(sent);
                }
                Outgoing::Eval(cmd, reply) => {
                    pipe.add_command(cmd);
                    replies.push(reply);
                }
            }
        }
        let attempts = if replies.is_empty() { 2 } else { 1 };
        let mut outcome = Err(String::new());
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let sent = tokio::time::timeout(
                COMMAND_TIMEOUT,
                pipe.query_async::<Vec<redis::Value>>(&mut commands),
            )
            .await;
            outcome = match sent {
                Ok(Ok(values)) => Ok(values),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("Redis did not answer in time".into()),
            };
            if outcome.is_ok() {
                break;
            }
        }
        let Some(link) = link.upgrade() else { return };
        match outcome {
            Ok(values) => {
                waiting.into_iter().for_each(|s| s(Ok(())));
                let mut values = values.into_iter();
                for reply in replies {
                    reply(match values.next() {
                        Some(redis::Value::ServerError(e)) => Err(HubError::new(
                            ErrorCode::Unavailable,
                            format!("Redis: {e:?}"),
                        )),
                        Some(v) => Ok(v),
                        None => Err(HubError::new(
                            ErrorCode::Unavailable,
                            "Redis gave no answer",
                        )),
                    });
                }
            }
            Err(error) => {
                let n = pipe.len() as u64;
                link.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(commands = n, error, "could not publish to Redis");
                let e = link.failed_with(error);
                waiting.into_iter().for_each(|s| s(Err(e.clone())));
                replies.into_iter().for_each(|r| r(Err(e.clone())));
            }
        }
    }
}

/// What the listener hands messages to.
type OnMessage = Arc<dyn Fn(Incoming<'_>) + Send + Sync>;

/// Completes when a listening connection is lost.
type Lost = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Keeps one subscriber connection up: connect, subscribe, hand every message on; when the
/// connection ends, wait (100 ms, doubling up to 2 s) and start again.
async fn listener(
    link: std::sync::Weak<Link>,
    subscriptions: Subscriptions,
    on_message: OnMessage,
    on_listening: Box<dyn Fn(bool) + Send + Sync>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut was_up = true;
    loop {
        let Some(l) = link.upgrade() else { return };
        let client = l.client.clone();
        drop(l);
        let subscribed = if subscriptions.shard_channels.is_empty() {
            subscribe(&client, &subscriptions, on_message.clone()).await
        } else {
            subscribe_sharded(&link, &client, &subscriptions, on_message.clone()).await
        };
        match subscribed {
            Ok(lost) => {
                let Some(l) = link.upgrade() else { return };
                l.listening.store(true, Ordering::Release);
                *lock(&l.last_error) = None;
                drop(l);
                tracing::info!("connected to Redis; subscribed");
                backoff = Duration::from_millis(100);
                was_up = true;
                on_listening(true);
                lost.await;
                let Some(l) = link.upgrade() else { return };
                l.listening.store(false, Ordering::Release);
                lock(&l.shard_rooms).changes = None;
                *lock(&l.last_error) = Some("the connection to Redis was lost".into());
                on_listening(false);
                tracing::warn!(
                    "lost the connection to Redis; cluster deliveries fail until it is back"
                );
            }
            Err(e) => {
                if was_up {
                    tracing::warn!(error = %e, "cannot reach Redis; trying again");
                    was_up = false;
                }
                if let Some(l) = link.upgrade() {
                    *lock(&l.last_error) = Some(e.to_string());
                }
            }
        }
        // Full jitter keeps a cluster's nodes from coming back in step.
        let pause = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "Redis did not answer in time"))
}

/// The classic listener: a RESP2 pub/sub connection.
async fn subscribe(
    client: &redis::Client,
    subscriptions: &Subscriptions,
    on_message: OnMessage,
) -> Result<Lost, redis::RedisError> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for c in &subscriptions.channels {
            pubsub.subscribe(c).await?;
        }
        for p in &subscriptions.patterns {
            pubsub.psubscribe(p).await?;
        }
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    let (sink, mut stream) = tokio::time::timeout(COMMAND_TIMEOUT, connect)
        .await
        .map_err(|_| timed_out())??;
    Ok(Box::pin(async move {
        while let Some(msg) = stream.next().await {
            on_message(Incoming {
                channel: msg.get_channel_name(),
                payload: msg.get_payload_bytes(),
            });
        }
        drop(sink);
    }))
}

/// Hands the pushes of a RESP3 connection on: messages (their bytes moved, not copied) to
/// the listener's task, the connection's end to whoever waits for it. The connection's own
/// task only queues, so its pings and subscriptions are answered however long delivering
/// takes.
struct Pushes {
    messages: mpsc::UnboundedSender<(Vec<u8>, Vec<u8>)>,
    lost: Arc<tokio::sync::Notify>,
}

impl redis::aio::AsyncPushSender for Pushes {
    fn send(&self, info: redis::PushInfo) -> Result<(), redis::aio::SendError> {
        use redis::{PushKind, Value};
        let mut data = info.data.into_iter();
        let (channel, payload) = match info.kind {
            PushKind::Message | PushKind::SMessage => (data.next(), data.next()),
            PushKind::PMessage => (data.nth(1), data.next()),
            PushKind::Disconnection => {
                self.lost.notify_one();
                return Ok(());
            }
            _ => return Ok(()),
        };
        if let (Some(Value::BulkString(c)), Some(Value::BulkString(p))) = (channel, payload) {
            let _ = self.messages.send((c, p));
        }
        Ok(())
    }
}

/// Hands each message the sharded listener's connection received to `on_message`, in
/// order, until the connection is gone.
async fn hand_on(mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Vec<u8>)>, on_message: OnMessage) {
    while let Some((channel, payload)) = rx.recv().await {
        if let Ok(channel) = std::str::from_utf8(&channel) {
            on_message(Incoming {
                channel,
                payload: &payload,
            });
        }
    }
}

/// Changes taken from the queue per round at most.
const CHANGES_BATCH: usize = 1024;

/// Shard channels subscribed per round of concurrent `SSUBSCRIBE`s.
const SUBSCRIBE_BATCH: usize = 256;

/// How often the sharded listener checks its connection is alive.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Sends one subscription command per channel (RESP3 answers each with one push),
/// `SUBSCRIBE_BATCH` at a time.
async fn subscribe_each(
    conn: &redis::aio::MultiplexedConnection,
    command: &str,
    channels: &[String],
) -> Result<(), redis::RedisError> {
    for batch in channels.chunks(SUBSCRIBE_BATCH) {
        let sent = futures_util::future::try_join_all(batch.iter().map(|c| {
            let mut conn = conn.clone();
            let mut cmd = redis::cmd(command);
            cmd.arg(c);
            async move { cmd.query_async::<redis::Value>(&mut conn).await }
        }));
        tokio::time::timeout(COMMAND_TIMEOUT, sent)
            .await
            .map_err(|_| timed_out())??;
    }
    Ok(())
}

/// The sharded listener: one RESP3 connection with the channels (`SUBSCRIBE`) and the shard
/// channels (`SSUBSCRIBE`, the fixed ones and those of [`Link::shard_subscribe`]), which
/// follows the rooms' channels as they change.
async fn subscribe_sharded(
    link: &std::sync::Weak<Link>,
    client: &redis::Client,
    subscriptions: &Subscriptions,
    on_message: OnMessage,
) -> Result<Lost, redis::RedisError> {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(settings))?;
    let lost = Arc::new(tokio::sync::Notify::new());
    let (messages, queued) = mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_push_sender(Pushes {
            messages,
            lost: lost.clone(),
        });
    // Ends once the connection (and with it the sender) is gone and the queue is drained.
    tokio::spawn(hand_on(queued, on_message));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    subscribe_each(&conn, "SUBSCRIBE", &subscriptions.channels).await?;
    subscribe_each(&conn, "PSUBSCRIBE", &subscriptions.patterns).await?;
    subscribe_each(&conn, "SSUBSCRIBE", &subscriptions.shard_channels).await?;
    // From here on, rooms' channels that come or go are queued as changes; those wanted
    // now are subscribed first.
    let (tx, mut changes) = mpsc::unbounded_channel();
    let rooms: Vec<String> = {
        let l = link
            .upgrade()
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "shutting down")))?;
        let mut rooms = lock(&l.shard_rooms);
        rooms.changes = Some(tx);
        let fixed = &rooms.fixed;
        rooms
            .wanted
            .keys()
            .filter(|c| !fixed.contains(*c))
            .cloned()
            .collect()
    };
    subscribe_each(&conn, "SSUBSCRIBE", &rooms).await?;
    Ok(Box::pin(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(64);
        loop {
            let sent = tokio::select! {
                () = lost.notified() => return,
                n = changes.recv_many(&mut batch, CHANGES_BATCH) => {
                    if n == 0 {
                        return;
                    }
                    apply_changes(&conn, batch.drain(..)).await
                }
                _ = ping.tick() => {
                    let mut c = conn.clone();
                    tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        redis::cmd("PING").query_async::<redis::Value>(&mut c),
                    )
                    .await
                    .map_err(|_| timed_out())
                    .and_then(|r| r.map(drop))
                }
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "the Redis subscriber connection failed");
                return;
            }
        }
    }))
}

/// Applies queued subscription changes: the last change of each channel wins, and the
/// commands go out together.
async fn apply_changes(
    conn: &redis::aio::MultiplexedConnection,
    changes: impl Iterator<Item = ShardChange>,
) -> Result<(), redis::RedisError> {
    let mut last: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for change in changes {
        match change {
            ShardChange::Subscribe(c) => last.insert(c, true),
            ShardChange::Unsubscribe(c) => last.insert(c, false),
        };
    }
    let (subscribe, unsubscribe): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, s)| *s);
    let names = |v: Vec<(String, bool)>| v.into_iter().map(|(c, _)| c).collect::<Vec<_>>();
    subscribe_each(conn, "SSUBSCRIBE", &names(subscribe)).await?;
    subscribe_each(conn, "SUNSUBSCRIBE", &names(unsubscribe)).await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
