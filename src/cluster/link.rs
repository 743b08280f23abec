//! The two connections to Redis a node keeps: one that publishes (a queue drained by one
//! task, so a node's messages leave in the order they were given, many to a round trip) and
//! one that listens (a subscriber task that reconnects with backoff and subscribes again).
//! Commands that want an answer (`PUBSUB NUMSUB`, the heartbeat keys) go through a
//! [`ConnectionManager`].
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
    /// `PUBLISH channel payload`.
    Publish(String, Bytes, Option<Sent>),
    /// A command that wants its answer (the cluster's numbering script).
    Eval(redis::Cmd, Reply),
}

/// The node's connections to Redis.
pub(super) struct Link {
    client: redis::Client,
    out: mpsc::Sender<Outgoing>,
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
    /// `channels` and `patterns` are subscribed on every (re)connection, and what arrives
    /// goes to `on_message`; `on_listening` hears `true` each time the subscriptions are in
    /// place and `false` each time they are lost.
    pub(super) fn open(
        url: &str,
        channels: Vec<String>,
        patterns: Vec<String>,
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
            commands,
            listening: AtomicBool::new(false),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        tokio::spawn(publisher(Arc::downgrade(&link), link.commands.clone(), rx));
        tokio::spawn(listener(
            Arc::downgrade(&link),
            channels,
            patterns,
            Box::new(on_message),
            Box::new(on_listening),
        ));
        Ok(link)
    }

    /// Queues `payload` for `channel`; `sent` hears whether Redis took it. `unavailable`
    /// when Redis is not reachable now or the queue is full: nothing was queued.
    pub(super) fn publish(
        &self,
        channel: String,
        payload: Bytes,
        sent: Option<Sent>,
    ) -> Result<(), HubError> {
        if !self.listening.load(Ordering::Acquire) {
            return Err(self.down());
        }
        self.queue(Outgoing::Publish(channel, payload, sent))
    }

    /// Queues `cmd` behind everything queued so far (so a script that publishes keeps this
    /// node's order); `reply` gets its answer. Refused at once like [`Self::publish`].
    pub(super) fn eval(&self, cmd: redis::Cmd, reply: Reply) -> Result<(), HubError> {
        if !self.listening.load(Ordering::Acquire) {
            return Err(self.down());
        }
        self.queue(Outgoing::Eval(cmd, reply))
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
                Outgoing::Publish(channel, payload, sent) => {
                    pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
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

/// Keeps one subscriber connection up: connect, subscribe, hand every message on; when the
/// connection ends, wait (100 ms, doubling up to 2 s) and start again.
async fn listener(
    link: std::sync::Weak<Link>,
    channels: Vec<String>,
    patterns: Vec<String>,
    on_message: Box<dyn Fn(Incoming<'_>) + Send + Sync>,
    on_listening: Box<dyn Fn(bool) + Send + Sync>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut was_up = true;
    loop {
        let Some(l) = link.upgrade() else { return };
        let client = l.client.clone();
        drop(l);
        match subscribe(&client, &channels, &patterns).await {
            Ok((sink, mut stream)) => {
                let Some(l) = link.upgrade() else { return };
                l.listening.store(true, Ordering::Release);
                *lock(&l.last_error) = None;
                drop(l);
                tracing::info!("connected to Redis; subscribed");
                backoff = Duration::from_millis(100);
                was_up = true;
                on_listening(true);
                while let Some(msg) = stream.next().await {
                    on_message(Incoming {
                        channel: msg.get_channel_name(),
                        payload: msg.get_payload_bytes(),
                    });
                }
                drop(sink);
                let Some(l) = link.upgrade() else { return };
                l.listening.store(false, Ordering::Release);
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

async fn subscribe(
    client: &redis::Client,
    channels: &[String],
    patterns: &[String],
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), redis::RedisError> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for c in channels {
            pubsub.subscribe(c).await?;
        }
        for p in patterns {
            pubsub.psubscribe(p).await?;
        }
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, connect).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "connecting to Redis timed out",
        ))),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
