//! The message log of a history room.
//!
//! A room whose `history` setting is above zero numbers its messages (`seq`, from 1) and
//! keeps the latest `history` of them, and with a `history_ttl`, only those younger than it. The log holds the same `Arc<Delivery>` that was fanned
//! out, so a replay reuses the encoded bytes. This in-memory log is the hot tier; a durable
//! store (SQLite, Redis) plugs in behind it by appending what the log appends and loading
//! the tail when the room is first touched.

use std::collections::VecDeque;
use std::sync::Arc;

use super::delivery::Delivery;

/// What a replay request yields.
#[derive(Debug, Default)]
pub struct Replay {
    /// Messages to send, oldest first.
    pub messages: Vec<Arc<Delivery>>,
    /// `since + 1` is no longer kept: the replay starts at the oldest kept message.
    pub gap: bool,
}

/// The kept tail of a room's messages, in `seq` order.
#[derive(Debug, Default)]
pub struct HistoryLog {
    capacity: usize,
    /// Milliseconds a message is kept; 0 for no limit.
    ttl_ms: u64,
    last_seq: u64,
    entries: VecDeque<(u64, Arc<Delivery>)>,
}

impl HistoryLog {
    /// A log keeping at most `capacity` messages, each for at most `ttl_ms` (0: no limit).
    pub fn new(capacity: usize, ttl_ms: u64) -> Self {
        Self {
            capacity,
            ttl_ms,
            last_seq: 0,
            entries: VecDeque::new(),
        }
    }

    /// A log given back by the store: `last_seq` goes on from where it was, and the latest
    /// `capacity` of `entries` (oldest first) are kept.
    pub fn restored(
        capacity: usize,
        ttl_ms: u64,
        last_seq: u64,
        entries: impl IntoIterator<Item = (u64, Arc<Delivery>)>,
    ) -> Self {
        let mut log = Self::new(capacity, ttl_ms);
        for (seq, d) in entries {
            log.last_seq = log.last_seq.max(seq);
            log.append(seq, d);
        }
        log.last_seq = log.last_seq.max(last_seq);
        log
    }

    /// Whether this room keeps history at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The seq of the latest message, 0 before the first.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether no message is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many messages the log keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long a message is kept, in milliseconds (0: no limit).
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Reserves the next seq number.
    pub fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Gives back the seq just reserved, when its message was refused before anyone saw it.
    pub fn unreserve(&mut self, seq: u64) {
        if seq == self.last_seq && self.entries.back().is_none_or(|(s, _)| *s < seq) {
            self.last_seq -= 1;
        }
    }

    /// Appends a message numbered elsewhere (by the cluster): the counter moves to `seq`.
    pub fn record(&mut self, seq: u64, d: Arc<Delivery>) {
        self.last_seq = self.last_seq.max(seq);
        self.append(seq, d);
    }

    /// Keeps at most `capacity` messages, each for at most `ttl_ms`, from now on.
    pub fn resize(&mut self, capacity: usize, ttl_ms: u64) {
        self.capacity = capacity;
        self.ttl_ms = ttl_ms;
        while self.entries.len() > capacity {
            self.entries.pop_front();
        }
    }

    /// Drops the messages older than the log's time limit, as of `now` (ms since the
    /// epoch).
    pub fn expire(&mut self, now: u64) {
        if self.ttl_ms == 0 {
            return;
        }
        let oldest_kept = now.saturating_sub(self.ttl_ms);
        while self
            .entries
            .front()
            .is_some_and(|(_, d)| d.message().is_some_and(|m| m.ts < oldest_kept))
        {
            self.entries.pop_front();
        }
    }

    /// Appends a message that was given `seq` by [`Self::next_seq`].
    pub fn append(&mut self, seq: u64, d: Arc<Delivery>) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((seq, d));
    }

    fn oldest_seq(&self) -> Option<u64> {
        self.entries.front().map(|(s, _)| *s)
    }

    /// Messages after `since`, oldest first, with `gap` when some were already dropped.
    pub fn since(&self, since: u64) -> Replay {
        let Some(oldest) = self.oldest_seq() else {
            return Replay {
                messages: Vec::new(),
                gap: since < self.last_seq,
            };
        };
        let gap = since.saturating_add(1) < oldest;
        // Seqs need not be consecutive (a batch the disk refused, a jump after a crash).
        let skip = self.entries.partition_point(|(s, _)| *s <= since);
        Replay {
            messages: self
                .entries
                .iter()
                .skip(skip)
                .map(|(_, d)| d.clone())
                .collect(),
            gap,
        }
    }

    /// The `n` latest messages, oldest first.
    pub fn latest(&self, n: usize) -> Replay {
        let skip = self.entries.len().saturating_sub(n);
        Replay {
            messages: self
                .entries
                .iter()
                .skip(skip)
                .map(|(_, d)| d.clone())
                .collect(),
            gap: false,
        }
    }

    /// Up to `limit` messages with seq below `before` (all when `None`), newest first, and
    /// the `before` to ask for the next page (`None` when there is no older message).
    pub fn before(&self, before: Option<u64>, limit: usize) -> (Vec<Arc<Delivery>>, Option<u64>) {
        let before = before.unwrap_or(u64::MAX);
        let page: Vec<(u64, Arc<Delivery>)> = self
            .entries
            .iter()
            .rev()
            .filter(|(s, _)| *s < before)
            .take(limit)
            .cloned()
            .collect();
        let next = match (page.last(), self.oldest_seq()) {
            (Some((s, _)), Some(oldest)) if *s > oldest => Some(*s),
            _ => None,
        };
        (page.into_iter().map(|(_, d)| d).collect(), next)
    }

    /// Drops every kept message (the seq counter goes on).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::delivery::{Body, Message, MessageBody, Payload};

    /// A message of room `r` numbered `seq`, sent at `ts`.
    fn message(seq: u64, ts: u64) -> Arc<Delivery> {
        Delivery::new(Body::Message(Message {
            ns: "/".into(),
            room: Some("r".into()),
            event: "e".into(),
            body: MessageBody::Hub(Payload::json(&seq)),
            from: None,
            to: None,
            seq: Some(seq),
            ts,
            offset: None,
        }))
    }

    fn log_with(capacity: usize, n: u64) -> HistoryLog {
        let mut log = HistoryLog::new(capacity, 0);
        for _ in 0..n {
            let seq = log.next_seq();
            log.append(seq, message(seq, seq * 1000));
        }
        log
    }

    fn seqs(r: &[Arc<Delivery>]) -> Vec<u64> {
        r.iter()
            .map(|d| d.message().unwrap().seq.unwrap())
            .collect()
    }

    #[test]
    fn since_replays_after_the_given_seq() {
        let log = log_with(10, 5);
        let r = log.since(2);
        assert_eq!(seqs(&r.messages), vec![3, 4, 5]);
        assert!(!r.gap);
        assert!(log.since(5).messages.is_empty());
        assert_eq!(seqs(&log.since(0).messages), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn since_older_than_kept_reports_a_gap() {
        let log = log_with(3, 10);
        let r = log.since(2);
        assert!(r.gap);
        assert_eq!(seqs(&r.messages), vec![8, 9, 10]);
        let r = log.since(7);
        assert!(!r.gap);
        assert_eq!(seqs(&r.messages), vec![8, 9, 10]);
    }

    #[test]
    fn old_messages_expire_and_a_since_before_them_is_a_gap() {
        let mut log = log_with(100, 5);
        log.ttl_ms = 2_500;
        log.expire(5_000);
        let r = log.since(1);
        assert_eq!(seqs(&r.messages), vec![3, 4, 5]);
        assert!(r.gap);
        log.expire(60_000);
        assert!(log.is_empty());
        assert!(log.since(4).gap, "seq 5 is gone");
        assert!(!log.since(5).gap);
        assert_eq!(log.last_seq(), 5, "the counter goes on");
    }

    #[test]
    fn since_finds_its_place_across_holes_in_the_seqs() {
        let mut log = HistoryLog::new(100, 0);
        for seq in [3, 4, 9, 12, 13, 14] {
            log.append(seq, message(seq, 0));
        }
        assert_eq!(seqs(&log.since(12).messages), vec![13, 14]);
        assert_eq!(seqs(&log.since(5).messages), vec![9, 12, 13, 14]);
        assert!(log.since(u64::MAX).messages.is_empty());
    }

    #[test]
    fn latest_and_before_page_through() {
        let log = log_with(100, 7);
        assert_eq!(seqs(&log.latest(3).messages), vec![5, 6, 7]);
        assert_eq!(seqs(&log.latest(30).messages).len(), 7);
        let (page, next) = log.before(None, 3);
        assert_eq!((seqs(&page), next), (vec![7, 6, 5], Some(5)));
        let (page, next) = log.before(Some(5), 3);
        assert_eq!((seqs(&page), next), (vec![4, 3, 2], Some(2)));
        let (page, next) = log.before(Some(2), 3);
        assert_eq!((seqs(&page), next), (vec![1], None));
    }
}
