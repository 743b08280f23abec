//! Connecting and speaking each wire protocol: v1 (Hubbub's `/ws`), Socket.IO over
//! WebSocket, GraphQL over WebSocket (`graphql-transport-ws` on `/graphql`), and raw (a
//! server that relays whatever it receives).
//!
//! Frames are built as strings and read in place: the generator looks for the few fields it
//! needs (`"t":`, `"seq":`) in the received bytes instead of parsing JSON, so its cost per
//! delivered frame stays small next to the server's.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use futures_util::SinkExt;
use yawc::{Frame, OpCode, Options, WebSocket};

/// A client WebSocket as the generator holds it.
pub(crate) type Ws = WebSocket<yawc::MaybeTlsStream<tokio::net::TcpStream>>;

/// The wire protocol the generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Proto {
    /// Hubbub protocol v1 on `/ws`.
    V1,
    /// A server that broadcasts (or echoes) whatever it receives (Node `ws`, `/ws/echo`).
    Raw,
    /// Socket.IO over WebSocket: events `join` {room}, `publish` {room, event, data} and
    /// `send` {to, event, data}.
    Sio,
    /// GraphQL over WebSocket (`graphql-transport-ws`): a join is a `messages(room)`
    /// subscription, a publish the `publish` mutation.
    Gql,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) proto: Proto,
    /// Connections are spread over 127.0.0.1 .. 127.0.0.N as source addresses, so more
    /// than one address's ephemeral ports are available.
    pub(crate) source_ips: u8,
    /// Offer permessage-deflate.
    pub(crate) deflate: bool,
}

/// A connected client and what the server told it about itself.
pub(crate) struct Client {
    pub(crate) ws: Ws,
    /// The user id the server gave this connection (v1 `welcome.user`; `anon-<sid>` for
    /// Socket.IO), empty for raw servers.
    pub(crate) user: String,
}

impl Target {
    fn source(&self, index: usize) -> Option<IpAddr> {
        (self.source_ips > 1).then(|| {
            let last = 1 + (index % usize::from(self.source_ips)) as u8;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
        })
    }

    /// Opens connection number `index` and completes the protocol's greeting.
    pub(crate) async fn connect(&self, index: usize) -> Result<Client, String> {
        let parsed = self.url.parse().map_err(|e| format!("{e}"))?;
        let mut builder = WebSocket::connect(parsed).with_options(
            if self.deflate {
                Options::default().with_low_latency_compression()
            } else {
                Options::default().without_compression()
            }
            .with_read_buffer_capacity(64 * 1024)
            .with_max_payload_read(16 << 20),
        );
        if let Some(ip) = self.source(index) {
            builder = builder.with_local_address(ip);
        }
        if self.proto == Proto::Gql {
            builder = builder.with_request(
                yawc::HttpRequestBuilder::new()
                    .header("Sec-WebSocket-Protocol", "graphql-transport-ws"),
            );
        }
        let mut ws = builder.await.map_err(|e| e.to_string())?;
        let user = match self.proto {
            Proto::Raw => String::new(),
            Proto::Gql => {
                let user = format!("g{index}");
                let init = format!(r#"{{"type":"connection_init","payload":{{"user":"{user}"}}}}"#);
                ws.send(Frame::text(init))
                    .await
                    .map_err(|e| e.to_string())?;
                let ack = ws.next_frame().await.map_err(|e| e.to_string())?;
                if find(ack.payload(), b"connection_ack").is_none() {
                    return Err("no connection_ack".into());
                }
                user
            }
            Proto::V1 => {
                let welcome = ws.next_frame().await.map_err(|e| e.to_string())?;
                string_field(welcome.payload(), b"\"user\":\"")
                    .ok_or("no welcome with a user")?
                    .to_string()
            }
            Proto::Sio => {
                let open = ws.next_frame().await.map_err(|e| e.to_string())?;
                if !open.payload().starts_with(b"0") {
                    return Err("no Engine.IO open packet".into());
                }
                ws.send(Frame::text("40"))
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    let f = ws.next_frame().await.map_err(|e| e.to_string())?;
                    let p = f.payload();
                    if p.starts_with(b"40") {
                        let sid = string_field(p, b"\"sid\":\"").ok_or("no sid")?;
                        break format!("anon-{sid}");
                    }
                    if p.starts_with(b"44") {
                        return Err("connect_error".into());
                    }
                }
            }
        };
        Ok(Client { ws, user })
    }

    /// Opens `n` connections, keeping `concurrency` handshakes in flight (a sliding window,
    /// so one slow handshake does not hold up the others). Returns the clients and the
    /// handshake latencies in microseconds.
    pub(crate) async fn connect_many(
        &self,
        n: usize,
        concurrency: usize,
    ) -> (Vec<Client>, crate::stats::Histogram) {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for index in 0..n {
            let permit = sem.clone().acquire_owned().await.expect("semaphore");
            let target = self.clone();
            let tx = tx.clone();
            tokio::task::spawn_local(async move {
                let started = Instant::now();
                let res = target.connect(index).await;
                drop(permit);
                let _ = tx.send((res, started.elapsed()));
            });
        }
        drop(tx);
        let mut out = Vec::with_capacity(n);
        let mut hist = crate::stats::Histogram::new();
        let mut failures = 0;
        while let Some((res, took)) = rx.recv().await {
            match res {
                Ok(c) => {
                    hist.record(took.as_micros() as u64);
                    out.push(c)
                }
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("connect failed: {e}");
                    }
                }
            }
        }
        if failures > 0 {
            eprintln!("{failures} of {n} connections failed");
        }
        (out, hist)
    }

    /// A `join` request for `room`, replaying after `since` when given; `id` asks for an ack.
    pub(crate) fn join(&self, room: &str, since: Option<u64>, id: u64) -> String {
        let since = since.map_or(String::new(), |s| format!(r#","since":{s}"#));
        match self.proto {
            Proto::V1 => format!(r#"{{"op":"join","id":{id},"room":"{room}"{since}}}"#),
            Proto::Sio => format!(r#"42{id}["join",{{"room":"{room}"{since}}}]"#),
            Proto::Gql => format!(
                r#"{{"type":"subscribe","id":"{id}","payload":{{"query":"subscription {{ messages(room: \"{room}\") {{ data }} }}"}}}}"#
            ),
            Proto::Raw => String::new(),
        }
    }

    /// A `leave` request for `room` (empty for protocols without one).
    pub(crate) fn leave(&self, room: &str) -> String {
        match self.proto {
            Proto::V1 => format!(r#"{{"op":"leave","room":"{room}"}}"#),
            Proto::Sio => format!(r#"42["leave",{{"room":"{room}"}}]"#),
            Proto::Gql | Proto::Raw => String::new(),
        }
    }

    /// A message for `room` carrying its send time `t` (µs), a sequence number and padding;
    /// `id` asks for an ack (which carries the room's `seq` in a history room).
    pub(crate) fn publish(&self, room: &str, t: u64, s: u64, pad: &str, id: Option<u64>) -> String {
        let data = format!(r#"{{"t":{t},"s":{s},"p":"{pad}"}}"#);
        match (self.proto, id) {
            (Proto::V1, None) => {
                format!(r#"{{"op":"publish","room":"{room}","event":"m","data":{data}}}"#)
            }
            (Proto::V1, Some(id)) => {
                format!(r#"{{"op":"publish","id":{id},"room":"{room}","event":"m","data":{data}}}"#)
            }
            (Proto::Sio, None) => {
                format!(r#"42["publish",{{"room":"{room}","event":"m","data":{data}}}]"#)
            }
            (Proto::Sio, Some(id)) => {
                format!(r#"42{id}["publish",{{"room":"{room}","event":"m","data":{data}}}]"#)
            }
            (Proto::Gql, id) => format!(
                r#"{{"type":"subscribe","id":"p{}","payload":{{"query":"mutation ($d: JSON) {{ publish(room: \"{room}\", event: \"m\", data: $d) {{ seq }} }}","variables":{{"d":{data}}}}}}}"#,
                id.unwrap_or(s)
            ),
            (Proto::Raw, _) => data,
        }
    }

    /// A message addressed back to its sender `user` (the echo scenario).
    pub(crate) fn echo(&self, user: &str, t: u64, pad: &str) -> String {
        let data = format!(r#"{{"t":{t},"p":"{pad}"}}"#);
        match self.proto {
            Proto::V1 => format!(r#"{{"op":"send","to":"{user}","event":"e","data":{data}}}"#),
            Proto::Sio => format!(r#"42["send",{{"to":"{user}","event":"e","data":{data}}}]"#),
            Proto::Gql => format!(
                r#"{{"type":"subscribe","id":"e{t}","payload":{{"query":"mutation ($d: JSON) {{ send(to: \"{user}\", event: \"e\", data: $d) {{ delivered }} }}","variables":{{"d":{data}}}}}}}"#
            ),
            Proto::Raw => data,
        }
    }
}

/// Answers an Engine.IO ping (`2`) with a pong; true when `frame` was one.
pub(crate) async fn answer_ping(ws: &mut Ws, frame: &Frame) -> bool {
    if frame.opcode() == OpCode::Text && frame.payload().as_ref() == b"2" {
        let _ = ws.send(Frame::text("3")).await;
        return true;
    }
    false
}

/// The unsigned integer after `key` in `payload` (e.g. `"t":` or `"seq":`).
pub(crate) fn number_field(payload: &[u8], key: &[u8]) -> Option<u64> {
    let pos = find(payload, key)?;
    let mut v: u64 = 0;
    let mut any = false;
    for &b in &payload[pos + key.len()..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        any = true;
    }
    any.then_some(v)
}

/// The string after `key` (which ends with the opening quote), up to the closing quote.
pub(crate) fn string_field<'a>(payload: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let start = find(payload, key)? + key.len();
    let len = payload[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&payload[start..start + len]).ok()
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Microseconds since `start`.
pub(crate) fn micros(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// CPU used by the generator and by the server between `start` and `finish`, as a share of
/// one core.
pub(crate) struct CpuMeter {
    server_pid: Option<u32>,
    t0: Instant,
    gen0: Option<f64>,
    server0: Option<f64>,
}

impl CpuMeter {
    pub(crate) fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            t0: Instant::now(),
            gen0: crate::stats::cpu_seconds(None),
            server0: server_pid.and_then(|p| crate::stats::cpu_seconds(Some(p))),
        }
    }

    /// (generator %, server %, seconds elapsed).
    pub(crate) fn finish(&self) -> (f64, f64, f64) {
        let secs = self.t0.elapsed().as_secs_f64();
        let share = |now: Option<f64>, then: Option<f64>| {
            now.zip(then)
                .map_or(f64::NAN, |(a, b)| (a - b) / secs * 100.0)
        };
        (
            share(crate::stats::cpu_seconds(None), self.gen0),
            share(
                self.server_pid
                    .and_then(|p| crate::stats::cpu_seconds(Some(p))),
                self.server0,
            ),
            secs,
        )
    }
}

/// Sleeps until `deadline` or returns at once when it has passed.
pub(crate) async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline.into()).await;
}

/// The close code in a close frame's payload, if any.
pub(crate) fn close_code(frame: &Frame) -> Option<u16> {
    let p = frame.payload();
    (frame.opcode() == OpCode::Close && p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
}

/// A short pause used between phases.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_place() {
        let p = br#"{"op":"message","room":"r","data":{"t":123,"s":4},"seq":77,"user":"anon-x1"}"#;
        assert_eq!(number_field(p, b"\"t\":"), Some(123));
        assert_eq!(number_field(p, b"\"seq\":"), Some(77));
        assert_eq!(number_field(p, b"\"nope\":"), None);
        assert_eq!(string_field(p, b"\"user\":\""), Some("anon-x1"));
        assert_eq!(
            string_field(br#"{"user":"unterminated"#, b"\"user\":\""),
            None
        );
    }

    #[test]
    fn frames_follow_each_protocol() {
        let t = |proto| Target {
            url: String::new(),
            proto,
            source_ips: 1,
            deflate: false,
        };
        assert_eq!(
            t(Proto::V1).join("r", Some(5), 1),
            r#"{"op":"join","id":1,"room":"r","since":5}"#
        );
        assert_eq!(
            t(Proto::Sio).join("r", None, 3),
            r#"423["join",{"room":"r"}]"#
        );
        assert_eq!(
            t(Proto::Sio).echo("anon-a", 9, ""),
            r#"42["send",{"to":"anon-a","event":"e","data":{"t":9,"p":""}}]"#
        );
        assert_eq!(
            t(Proto::Raw).publish("r", 1, 2, "x", None),
            r#"{"t":1,"s":2,"p":"x"}"#
        );
        for frame in [
            t(Proto::Gql).join("r", None, 4),
            t(Proto::Gql).publish("r", 1, 2, "x", None),
            t(Proto::Gql).echo("g1", 9, ""),
        ] {
            let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(v["type"], "subscribe", "{frame}");
            assert!(v["payload"]["query"].is_string(), "{frame}");
        }
    }
}
