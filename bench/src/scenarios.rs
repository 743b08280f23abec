//! The scenarios: each connects, measures, prints a human summary and one `RESULT` line.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use yawc::{Frame, OpCode};

use crate::conn::{
    answer_ping, close_code, find, micros, number_field, sleep_until, Client, CpuMeter, Proto,
    Target, SETTLE,
};
use crate::stats::{rss_kib, Histogram};

/// p50, p99 and p999 of `hist` in milliseconds.
fn quantiles_ms(hist: &Histogram) -> [f64; 3] {
    [0.5, 0.99, 0.999].map(|q| hist.quantile(q) as f64 / 1000.0)
}

/// Holds N idle connections and reports the server's RSS per connection.
pub(crate) async fn idle(
    t: &Target,
    pid: Option<u32>,
    window: usize,
    conns: usize,
    settle: u64,
    burst: Option<(u64, usize)>,
) {
    let before = pid.and_then(rss_kib);
    let start = Instant::now();
    let (clients, _) = t.connect_many(conns, window).await;
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let after = pid.and_then(rss_kib);
    let held = clients.len();
    println!(
        "idle: {held} connections in {:.2}s ({:.0} handshakes/s)",
        took.as_secs_f64(),
        held as f64 / took.as_secs_f64()
    );
    if let (Some(b), Some(a)) = (before, after) {
        let per = (a.saturating_sub(b)) as f64 * 1024.0 / held.max(1) as f64;
        println!(
            "idle: server RSS {b} KiB -> {a} KiB: {per:.0} bytes ({:.2} KiB) per connection",
            per / 1024.0
        );
        match burst {
            None => println!("RESULT idle conns={held} bytes_per_conn={per:.0}"),
            Some((messages, size)) => {
                let after = burst_then_idle(t, pid, window, clients, messages, size, settle).await;
                let after = (after.saturating_sub(b)) as f64 * 1024.0 / held.max(1) as f64;
                println!(
                    "idle: after a burst of {messages} messages of {size} bytes to each: {after:.0} bytes per connection ({:.1} % of idle)",
                    after / per * 100.0
                );
                println!(
                    "RESULT idle conns={held} bytes_per_conn={per:.0} after_burst_per_conn={after:.0} after_burst_pct={:.1}",
                    after / per * 100.0
                );
            }
        }
        return;
    }
    drop(clients);
}

/// Every client joins `bench` and reads; one more publishes `messages` messages of `size`
/// bytes (8 in flight) until each is back; then all leave the room (so they hold what they
/// held before) and idle for `settle` seconds. Returns the server's RSS (KiB) then, with
/// the clients still connected.
async fn burst_then_idle(
    t: &Target,
    pid: Option<u32>,
    window: usize,
    mut clients: Vec<Client>,
    messages: u64,
    size: usize,
    settle: u64,
) -> u64 {
    let Client {
        ws: mut publisher, ..
    } = t
        .connect_many(1, window)
        .await
        .0
        .pop()
        .expect("a publisher");
    if t.proto != Proto::Raw {
        let join = t.join("bench", None, 1);
        for c in &mut clients {
            c.ws.send(Frame::text(join.clone())).await.expect("join");
        }
        publisher.send(Frame::text(join)).await.expect("join");
        tokio::time::sleep(SETTLE).await;
    }
    let received = Rc::new(Cell::new(0u64));
    let done = Rc::new(tokio::sync::Notify::new());
    let leave = t.leave("bench");
    let mut readers = Vec::new();
    for Client { mut ws, .. } in clients {
        let (received, done, leave) = (received.clone(), done.clone(), leave.clone());
        readers.push(tokio::task::spawn_local(async move {
            let mut left = false;
            loop {
                tokio::select! {
                    f = ws.next_frame() => {
                        let Ok(f) = f else { return };
                        if f.opcode() == OpCode::Text && !answer_ping(&mut ws, &f).await {
                            received.set(received.get() + 1);
                        }
                    }
                    _ = done.notified(), if !left => {
                        left = true;
                        if !leave.is_empty() && ws.send(Frame::text(leave.clone())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let pad = "x".repeat(size.saturating_sub(60));
    let (mut sent, mut echoed) = (0u64, 0u64);
    while echoed < messages {
        while sent < messages && sent - echoed < 8 {
            let frame = t.publish("bench", 0, sent, &pad, None);
            publisher.send(Frame::text(frame)).await.expect("send");
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(10), publisher.next_frame()).await {
            Ok(Ok(f)) if number_field(f.payload(), b"\"s\":").is_some() => echoed += 1,
            Ok(Ok(f)) => {
                answer_ping(&mut publisher, &f).await;
            }
            _ => break,
        }
    }
    done.notify_waiters();
    if !leave.is_empty() {
        publisher.send(Frame::text(leave)).await.expect("leave");
    }
    tokio::time::sleep(Duration::from_secs(settle)).await;
    println!("idle: burst delivered {} frames", received.get());
    let rss = pid.and_then(rss_kib).unwrap_or(0);
    for r in readers {
        r.abort();
    }
    drop(publisher);
    rss
}

/// Handshakes per second with `window` in flight.
pub(crate) async fn connect(t: &Target, pid: Option<u32>, window: usize, conns: usize) {
    let cpu = CpuMeter::start(pid);
    let (clients, hist) = t.connect_many(conns, window).await;
    let (gen, server, secs) = cpu.finish();
    let rate = clients.len() as f64 / secs;
    let [p50, p99, _] = quantiles_ms(&hist);
    println!(
        "connect: {} connections in {secs:.2}s: {rate:.0} handshakes/s, latency p50 {p50:.2} ms p99 {p99:.2} ms; generator CPU {gen:.0}%, server CPU {server:.0}%",
        clients.len()
    );
    println!(
        "RESULT connect conns={} handshakes_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2} gen_cpu={gen:.0} server_cpu={server:.0}",
        clients.len()
    );
    drop(clients);
}

/// What the fan-out scenario does.
pub(crate) struct FanoutPlan {
    pub(crate) subs: usize,
    pub(crate) rate: u64,
    pub(crate) window: u64,
    pub(crate) secs: u64,
    pub(crate) size: usize,
    pub(crate) slow_share: f64,
    /// Other nodes of a cluster the subscribers connect to (round robin); none: `t`.
    pub(crate) sub_urls: Vec<String>,
    /// The subscribers' protocol, when it differs from the publisher's.
    pub(crate) sub_proto: Option<Proto>,
    /// Pad with varied words (see [`words`]).
    pub(crate) words: bool,
}

/// About `len` bytes of lowercase words, varied (a fixed pseudo-random sequence), for
/// messages that compress as text does rather than as one repeated letter.
pub(crate) fn words(len: usize) -> String {
    const WORDS: [&str; 24] = [
        "alpha", "bravo", "quiet", "river", "stone", "lamp", "orbit", "maple", "delta", "ember",
        "fjord", "glyph", "harbor", "ivory", "jungle", "karma", "lunar", "mosaic", "nectar",
        "opal", "prism", "quartz", "saffron", "tundra",
    ];
    let mut out = String::with_capacity(len + 16);
    let mut x: u32 = 2_463_534_242;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push_str(WORDS[x as usize % WORDS.len()]);
        out.push(if x.is_multiple_of(7) { '.' } else { ' ' });
    }
    out.truncate(len);
    out
}

struct Totals {
    delivered: u64,
    hist: Histogram,
}

/// N subscribers, one publisher; optionally a share of the subscribers never reads.
pub(crate) async fn fanout(t: &Target, pid: Option<u32>, window: usize, plan: FanoutPlan) {
    let (mut clients, _) = if plan.sub_urls.is_empty() {
        t.connect_many(plan.subs + 1, window).await
    } else {
        // The publisher on `t`, the subscribers spread over the other nodes.
        let mut all = Vec::new();
        let n = plan.sub_urls.len();
        for (i, url) in plan.sub_urls.iter().enumerate() {
            let node = Target {
                url: url.clone(),
                proto: plan.sub_proto.unwrap_or(t.proto),
                ..t.clone()
            };
            let share = plan.subs / n + usize::from(i < plan.subs % n);
            all.extend(node.connect_many(share, window).await.0);
        }
        all.extend(t.connect_many(1, window).await.0);
        (all, crate::stats::Histogram::new())
    };
    let Client {
        ws: mut publisher, ..
    } = clients.pop().expect("a publisher");
    if t.proto != Proto::Raw {
        let sub_target = Target {
            proto: plan.sub_proto.unwrap_or(t.proto),
            ..t.clone()
        };
        let join = sub_target.join("bench", None, 1);
        for ws in clients.iter_mut().map(|c| &mut c.ws) {
            ws.send(Frame::text(join.clone())).await.expect("join");
        }
        publisher
            .send(Frame::text(t.join("bench", None, 1)))
            .await
            .expect("join");
        // Let the joins land before measuring.
        tokio::time::sleep(SETTLE).await;
    }
    let slow_count = ((clients.len() as f64) * plan.slow_share.clamp(0.0, 1.0)).round() as usize;
    let mut slow: Vec<Client> = clients.drain(..slow_count).collect();
    let readers = clients.len();
    let start = Instant::now();
    let totals = Rc::new(RefCell::new(Totals {
        delivered: 0,
        hist: Histogram::new(),
    }));
    let measuring = Rc::new(Cell::new(false));
    for Client { mut ws, .. } in clients {
        let totals = totals.clone();
        let measuring = measuring.clone();
        tokio::task::spawn_local(async move {
            while let Ok(f) = ws.next_frame().await {
                if f.opcode() != OpCode::Text || answer_ping(&mut ws, &f).await {
                    continue;
                }
                if !measuring.get() {
                    continue;
                }
                if let Some(sent) = number_field(f.payload(), b"\"t\":") {
                    let mut tot = totals.borrow_mut();
                    tot.delivered += 1;
                    tot.hist.record(micros(start).saturating_sub(sent));
                }
            }
        });
    }
    // The server's memory, sampled while the slow subscribers fall behind.
    let rss_start = pid.and_then(rss_kib).unwrap_or(0);
    let rss_peak = Rc::new(Cell::new(rss_start));
    if let Some(pid) = pid {
        let rss_peak = rss_peak.clone();
        let measuring = measuring.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                rss_peak.set(rss_peak.get().max(rss_kib(pid).unwrap_or(0)));
                if !measuring.get() && rss_peak.get() > rss_start {
                    break;
                }
            }
        });
    }
    let pad = if plan.words {
        words(plan.size.saturating_sub(60))
    } else {
        "x".repeat(plan.size.saturating_sub(60))
    };
    let cpu = CpuMeter::start(pid);
    measuring.set(true);
    let end = Instant::now() + Duration::from_secs(plan.secs);
    let mut sent = 0u64;
    let mut echoed = 0u64;
    if plan.rate == 0 {
        // Maximal rate: keep `window` messages in flight, clocked by the publisher's own copy.
        while Instant::now() < end {
            while sent - echoed < plan.window {
                let frame = t.publish("bench", micros(start), sent, &pad, None);
                publisher.feed(Frame::text(frame)).await.expect("send");
                sent += 1;
            }
            publisher.flush().await.expect("flush");
            match tokio::time::timeout(Duration::from_secs(5), publisher.next_frame()).await {
                Ok(Ok(f)) if number_field(f.payload(), b"\"t\":").is_some() => echoed += 1,
                Ok(Ok(f)) => {
                    answer_ping(&mut publisher, &f).await;
                }
                _ => {
                    eprintln!("publisher stalled");
                    break;
                }
            }
        }
    } else {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // The publisher's own copies are read and dropped as they come.
        while Instant::now() < end {
            tokio::select! {
                _ = tick.tick() => {
                    let frame = t.publish("bench", micros(start), sent, &pad, None);
                    publisher.send(Frame::text(frame)).await.expect("send");
                    sent += 1;
                }
                f = publisher.next_frame() => match f {
                    Ok(f) => { answer_ping(&mut publisher, &f).await; }
                    Err(_) => {
                        eprintln!("publisher closed");
                        break;
                    }
                }
            }
        }
    }
    let (gen, server, elapsed) = cpu.finish();
    // The rate counts what arrived while publishing; losses count what never arrived.
    let in_window = totals.borrow().delivered;
    // Let in-flight messages land (until nothing more arrives for half a second, at most
    // 10 s), then stop counting: what is still missing then is lost.
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut last_count = u64::MAX;
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = totals.borrow().delivered;
        if now == last_count {
            break;
        }
        last_count = now;
    }
    measuring.set(false);
    let rss_end = pid.and_then(rss_kib).unwrap_or(0);
    let (delivered, [p50, p99, p999]) = {
        let tot = totals.borrow();
        (tot.delivered, quantiles_ms(&tot.hist))
    };
    let expected = sent * readers as u64;
    let lost = expected.saturating_sub(delivered);
    let rate = in_window as f64 / elapsed;
    println!(
        "fanout: {readers} reading subscribers, {sent} messages in {elapsed:.1}s ({:.0} msg/s published)",
        sent as f64 / elapsed
    );
    println!(
        "fanout: {rate:.0} deliveries/s, latency p50 {p50:.2} ms p99 {p99:.2} ms p999 {p999:.2} ms, lost {lost} of {expected}"
    );
    println!("fanout: generator CPU {gen:.0}%, server CPU {server:.0}%");
    let mut extra = String::new();
    if slow_count > 0 {
        let ended = drain_slow(&mut slow).await;
        let peak = rss_peak.get();
        println!(
            "slow: {slow_count} subscribers never read; {ended} were cut off by the server; server RSS {rss_start} KiB at start, peak {peak} KiB, {rss_end} KiB at the end"
        );
        extra = format!(
            " slow={slow_count} slow_cut={ended} rss_growth_kib={}",
            peak.saturating_sub(rss_start)
        );
    }
    println!(
        "RESULT fanout subs={readers} msgs={sent} deliveries_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2} p999_ms={p999:.2} lost={lost} gen_cpu={gen:.0} server_cpu={server:.0}{extra}"
    );
}

/// Reads what the slow subscribers were sent until the server ends their connection (a
/// close frame or end of stream) or 10 s pass; returns how many were ended.
async fn drain_slow(slow: &mut [Client]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ended = 0;
    for c in slow.iter_mut() {
        let result = tokio::time::timeout_at(deadline.into(), async {
            loop {
                match c.ws.next_frame().await {
                    Ok(f) if f.opcode() == OpCode::Close => return close_code(&f),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await;
        if result.is_ok() {
            ended += 1;
        }
    }
    ended
}

/// Closed-loop echo: each connection sends a message addressed to itself and waits for it.
pub(crate) async fn echo(
    t: &Target,
    pid: Option<u32>,
    window: usize,
    conns: usize,
    secs: u64,
    size: usize,
) {
    let (clients, _) = t.connect_many(conns, window).await;
    let n = clients.len();
    let pad: Rc<str> = "x".repeat(size.saturating_sub(40)).into();
    let totals = Rc::new(RefCell::new(Totals {
        delivered: 0,
        hist: Histogram::new(),
    }));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let cpu = CpuMeter::start(pid);
    let mut tasks = Vec::with_capacity(n);
    for Client { mut ws, user } in clients {
        let totals = totals.clone();
        let pad = pad.clone();
        let t = t.clone();
        tasks.push(tokio::task::spawn_local(async move {
            while Instant::now() < end {
                let frame = t.echo(&user, micros(start), &pad);
                if ws.send(Frame::text(frame)).await.is_err() {
                    return;
                }
                loop {
                    let Ok(f) = ws.next_frame().await else { return };
                    if answer_ping(&mut ws, &f).await {
                        continue;
                    }
                    if find(f.payload(), b"\"rate_limited\"").is_some() {
                        // A refused message gets no reply: waiting for one would hang.
                        eprintln!(
                            "echo: the server refused a message (rate_limited): each connection \
                             is over its message rate; use more connections or raise the \
                             server's --rate-messages"
                        );
                        std::process::exit(3);
                    }
                    if let Some(sent) = number_field(f.payload(), b"\"t\":") {
                        let mut tot = totals.borrow_mut();
                        tot.delivered += 1;
                        tot.hist.record(micros(start).saturating_sub(sent));
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let (gen, server, elapsed) = cpu.finish();
    let tot = totals.borrow();
    let rate = tot.delivered as f64 / elapsed;
    let [p50, p99, p999] = quantiles_ms(&tot.hist);
    if std::env::var_os("BENCH_DIST").is_some() {
        for q in [0.8, 0.9, 0.95, 0.97, 0.98, 0.985] {
            println!("echo: p{q} {:.2} ms", tot.hist.quantile(q) as f64 / 1000.0);
        }
    }
    println!(
        "echo: {n} connections, {rate:.0} round trips/s, latency p50 {p50:.2} ms p99 {p99:.2} ms p999 {p999:.2} ms; generator CPU {gen:.0}%, server CPU {server:.0}%"
    );
    println!(
        "RESULT echo conns={n} round_trips_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2} p999_ms={p999:.2} gen_cpu={gen:.0} server_cpu={server:.0}"
    );
}

/// Durable acknowledgements: `conns` publishers each keep `window` publishes with an `id`
/// in flight into one history room (nobody subscribed), for `secs`; every ack's latency is
/// recorded. Run against `--store sqlite` and `--store memory` to see what waiting for the
/// commit costs.
pub(crate) async fn acks(
    t: &Target,
    pid: Option<u32>,
    conns: usize,
    window: u64,
    secs: u64,
    size: usize,
) {
    let (clients, _) = t.connect_many(conns, 50).await;
    let n = clients.len();
    let pad: Rc<str> = "x".repeat(size.saturating_sub(60)).into();
    let totals = Rc::new(RefCell::new(Totals {
        delivered: 0,
        hist: Histogram::new(),
    }));
    let errors = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let cpu = CpuMeter::start(pid);
    let mut tasks = Vec::with_capacity(n);
    for Client { mut ws, .. } in clients {
        let (totals, errors, pad, t) = (totals.clone(), errors.clone(), pad.clone(), t.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut sent_at = std::collections::HashMap::new();
            let mut next_id = 1u64;
            while Instant::now() < end {
                while (sent_at.len() as u64) < window {
                    let now = micros(start);
                    let frame = t.publish("acks", now, next_id, &pad, Some(next_id));
                    if ws.feed(Frame::text(frame)).await.is_err() {
                        return;
                    }
                    sent_at.insert(next_id, now);
                    next_id += 1;
                }
                if ws.flush().await.is_err() {
                    return;
                }
                let Ok(Ok(f)) =
                    tokio::time::timeout(Duration::from_secs(10), ws.next_frame()).await
                else {
                    eprintln!("acks: a publisher stalled");
                    return;
                };
                if answer_ping(&mut ws, &f).await {
                    continue;
                }
                let p = f.payload();
                let id = match t.proto {
                    Proto::Sio if p.starts_with(b"43") => number_field(p, b"43"),
                    _ if p.starts_with(br#"{"op":"ack""#) || p.starts_with(br#"{"op":"error""#) => {
                        number_field(p, b"\"id\":")
                    }
                    _ => None,
                };
                let Some(sent) = id.and_then(|id| sent_at.remove(&id)) else {
                    continue;
                };
                if p.starts_with(br#"{"op":"error""#) || find(p, b"\"ok\":false").is_some() {
                    errors.set(errors.get() + 1);
                    continue;
                }
                let mut tot = totals.borrow_mut();
                tot.delivered += 1;
                tot.hist.record(micros(start).saturating_sub(sent));
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let (gen, server, elapsed) = cpu.finish();
    let tot = totals.borrow();
    let rate = tot.delivered as f64 / elapsed;
    let [p50, p99, p999] = quantiles_ms(&tot.hist);
    let errors = errors.get();
    println!(
        "acks: {n} publishers x {window} in flight, {rate:.0} acked publishes/s, ack latency p50 {p50:.2} ms p99 {p99:.2} ms p999 {p999:.2} ms, {errors} errors; generator CPU {gen:.0}%, server CPU {server:.0}%"
    );
    println!(
        "RESULT acks conns={n} window={window} acks_per_s={rate:.0} p50_ms={p50:.2} p99_ms={p99:.2} p999_ms={p999:.2} errors={errors} gen_cpu={gen:.0} server_cpu={server:.0}"
    );
}

/// What one jitter subscriber saw.
#[derive(Default)]
struct Seen {
    /// The room's seq when the subscriber first joined: it expects every later message.
    base: Option<u64>,
    /// Bit per seq received.
    bits: Vec<u64>,
    duplicates: u64,
    reconnects: u64,
    gaps: u64,
}

impl Seen {
    fn mark(&mut self, seq: u64) {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
        }
        self.bits[word] |= 1 << bit;
    }

    fn has(&self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        self.bits
            .get(word)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    fn highest(&self) -> Option<u64> {
        let (i, w) = self.bits.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        Some(i as u64 * 64 + 63 - u64::from(w.leading_zeros()))
    }

    /// Received messages after `base`, up to `last`, and how many were expected.
    fn share(&self, last: u64) -> (u64, u64) {
        let base = self.base.unwrap_or(last);
        let got = (base + 1..=last).filter(|&s| self.has(s)).count() as u64;
        (got, last.saturating_sub(base))
    }
}

/// Whether `p` is an ack (v1 `ack` op, Socket.IO ACK packet).
fn is_ack(proto: Proto, p: &[u8]) -> bool {
    match proto {
        Proto::Sio => p.starts_with(b"43"),
        _ => p.starts_with(br#"{"op":"ack""#),
    }
}

/// A small xorshift generator: cut-off times differ per subscriber without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Subscribers reconnect every few seconds and resume with `join since`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn jitter(
    t: &Target,
    pid: Option<u32>,
    window: usize,
    subs: usize,
    rate: u64,
    secs: u64,
    period_ms: u64,
    down_ms: u64,
    room: &str,
) {
    if t.proto == Proto::Raw {
        eprintln!("jitter needs a protocol with resume (v1 or sio)");
        std::process::exit(2);
    }
    let room: Rc<str> = room.into();
    // The last seq published, once publishing is over: subscribers then stop cutting and
    // read until they have it.
    let last: Rc<Cell<Option<u64>>> = Rc::new(Cell::new(None));
    let seen: Vec<Rc<RefCell<Seen>>> = (0..subs).map(|_| Rc::default()).collect();
    let cpu = CpuMeter::start(pid);
    let window = Rc::new(tokio::sync::Semaphore::new(window));
    let mut tasks = Vec::new();
    for (index, seen) in seen.iter().enumerate() {
        let (t, room, last, seen, window) = (
            t.clone(),
            room.clone(),
            last.clone(),
            seen.clone(),
            window.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((index as u64 + 1) * 0x1000_0001);
            loop {
                let permit = window.acquire().await.expect("window");
                let client = t.connect(index + 1).await;
                drop(permit);
                let Ok(Client { mut ws, .. }) = client else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let since = seen.borrow().highest().or(seen.borrow().base);
                if ws.send(Frame::text(t.join(&room, since, 1))).await.is_err() {
                    continue;
                }
                let cut = Instant::now()
                    + Duration::from_millis(
                        period_ms / 2 + next_random(&mut rng) % (period_ms / 2 + 1),
                    );
                loop {
                    let done = last
                        .get()
                        .is_some_and(|l| seen.borrow().highest() >= Some(l));
                    if done {
                        return;
                    }
                    let cutting = last.get().is_none();
                    tokio::select! {
                        f = ws.next_frame() => {
                            let Ok(f) = f else { break };
                            if answer_ping(&mut ws, &f).await {
                                continue;
                            }
                            let p = f.payload();
                            let is_ack = is_ack(t.proto, p);
                            let Some(seq) = number_field(p, b"\"seq\":") else { continue };
                            let mut s = seen.borrow_mut();
                            if is_ack {
                                if s.base.is_none() {
                                    s.base = Some(seq);
                                }
                                if p.windows(10).any(|w| w == b"\"gap\":true") {
                                    s.gaps += 1;
                                }
                            } else {
                                s.mark(seq);
                            }
                        }
                        _ = sleep_until(cut), if cutting => {
                            seen.borrow_mut().reconnects += 1;
                            break;
                        }
                    }
                }
                // Dropping the socket cuts the connection without a close handshake; the
                // subscriber stays away for `down_ms` before reconnecting.
                drop(ws);
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
            }
        }));
    }
    // Let everyone join once before publishing.
    tokio::time::sleep(SETTLE).await;
    let Ok(Client {
        ws: mut publisher, ..
    }) = t.connect(0).await
    else {
        eprintln!("publisher could not connect");
        std::process::exit(1);
    };
    let pad = "x".repeat(40);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let (mut sent, mut acked, mut highest) = (0u64, 0u64, 0u64);
    loop {
        let publishing = Instant::now() < end;
        if !publishing && acked == sent {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if publishing => {
                let frame = t.publish(&room, micros(start), sent, &pad, Some(sent + 1));
                publisher.send(Frame::text(frame)).await.expect("publish");
                sent += 1;
            }
            f = publisher.next_frame() => {
                let Ok(f) = f else {
                    eprintln!("publisher closed");
                    break;
                };
                if answer_ping(&mut publisher, &f).await {
                    continue;
                }
                if !is_ack(t.proto, f.payload()) {
                    continue;
                }
                acked += 1;
                let Some(seq) = number_field(f.payload(), b"\"seq\":") else {
                    eprintln!("the publish ack has no seq: `{room}` must be a history room");
                    std::process::exit(2);
                };
                highest = highest.max(seq);
            }
            _ = tokio::time::sleep(Duration::from_secs(5)), if !publishing => {
                eprintln!("{} publish acks missing", sent - acked);
                break;
            }
        }
    }
    last.set(Some(highest));
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await
    .is_ok();
    let (gen, server, _) = cpu.finish();
    let (mut complete, mut min_share, mut sum_share) = (0usize, 1.0f64, 0.0f64);
    let (mut dups, mut gaps, mut reconnects) = (0u64, 0u64, 0u64);
    for s in &seen {
        let s = s.borrow();
        let (got, expected) = s.share(highest);
        let share = if expected == 0 {
            0.0
        } else {
            got as f64 / expected as f64
        };
        complete += usize::from(expected > 0 && got == expected);
        min_share = min_share.min(share);
        sum_share += share;
        dups += s.duplicates;
        gaps += s.gaps;
        reconnects += s.reconnects;
    }
    let mean = sum_share / subs.max(1) as f64 * 100.0;
    let min = min_share * 100.0;
    println!(
        "jitter: {subs} subscribers, {sent} messages ({acked} acked), {reconnects} reconnects; {complete} subscribers got every message; share min {min:.2} % mean {mean:.2} %; {dups} duplicates, {gaps} gaps{}",
        if drained { "" } else { "; some subscribers did not finish in time" }
    );
    println!(
        "RESULT jitter subs={subs} msgs={sent} reconnects={reconnects} complete={complete} min_share={min:.2} mean_share={mean:.2} duplicates={dups} gaps={gaps} gen_cpu={gen:.0} server_cpu={server:.0}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_message_shows_in_the_share() {
        let mut s = Seen {
            base: Some(10),
            ..Seen::default()
        };
        for seq in [11, 12, 14, 15, 15] {
            s.mark(seq);
        }
        assert_eq!(s.share(15), (4, 5));
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.highest(), Some(15));
        s.mark(13);
        assert_eq!(s.share(15), (5, 5));
        assert_eq!(Seen::default().highest(), None);
    }
}
