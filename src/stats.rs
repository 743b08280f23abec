//! Counters and gauges for `/api/stats` and `/metrics`.
//!
//! Every counter is an atomic owned by one [`Stats`] per hub (no global registry, so several
//! servers can live in one process, as tests do). Hot paths add once per delivery or per
//! write batch, never once per byte.

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Which front end a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Raw WebSocket, protocol v1.
    Ws,
    /// Socket.IO.
    SocketIo,
    /// GraphQL over WebSocket (`/graphql`).
    GraphQl,
}

impl Transport {
    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::SocketIo => "socketio",
            Self::GraphQl => "graphql",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Why an upgrade was refused before any WebSocket state existed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// `max_connections` reached.
    ServerFull,
    /// The request was not a valid WebSocket upgrade.
    BadHandshake,
    /// Authentication or authorization failed.
    Unauthorized,
    /// The server is shutting down.
    ShuttingDown,
    /// The client's address is over a limit (`max_connections_per_ip`, handshakes per
    /// second).
    RateLimited,
}

impl RejectReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::ServerFull => "server_full",
            Self::BadHandshake => "bad_handshake",
            Self::Unauthorized => "unauthorized",
            Self::ShuttingDown => "shutting_down",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The hub's counters.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    connections: Family<TransportLabel, Gauge>,
    messages_in: Counter,
    messages_out: Counter,
    bytes_out: Counter,
    slow_consumer_closes: Counter,
    heartbeat_reaped: Counter,
    volatile_dropped: Counter,
    store_dropped: Counter,
    store_lost: Counter,
    cluster_failed: Counter,
    upgrades_rejected: Family<ReasonLabel, Counter>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let connections = Family::<TransportLabel, Gauge>::default();
        let messages_in = Counter::default();
        let messages_out = Counter::default();
        let bytes_out = Counter::default();
        let slow_consumer_closes = Counter::default();
        let heartbeat_reaped = Counter::default();
        let volatile_dropped = Counter::default();
        let store_dropped = Counter::default();
        let store_lost = Counter::default();
        let cluster_failed = Counter::default();
        let upgrades_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "hubbub_connections",
            "Open connections by transport",
            connections.clone(),
        );
        registry.register(
            "hubbub_messages_in",
            "Frames and packets received from clients",
            messages_in.clone(),
        );
        registry.register(
            "hubbub_messages_out",
            "Messages delivered, counted per recipient",
            messages_out.clone(),
        );
        registry.register(
            "hubbub_bytes_out",
            "Payload bytes handed to client sockets",
            bytes_out.clone(),
        );
        registry.register(
            "hubbub_slow_consumer_closes",
            "Connections closed because their outbound queue overflowed",
            slow_consumer_closes.clone(),
        );
        registry.register(
            "hubbub_heartbeat_reaped",
            "Connections terminated for not answering pings",
            heartbeat_reaped.clone(),
        );
        registry.register(
            "hubbub_volatile_dropped",
            "Volatile messages dropped for a full outbound queue",
            volatile_dropped.clone(),
        );
        registry.register(
            "hubbub_store_dropped",
            "Writes to the store dropped because it could not keep up (delivered, not stored)",
            store_dropped.clone(),
        );
        registry.register(
            "hubbub_store_lost",
            "Writes the store took and then could not commit (their callers got unavailable)",
            store_lost.clone(),
        );
        registry.register(
            "hubbub_cluster_failed",
            "Deliveries and requests that could not be sent to the other nodes (their callers got unavailable)",
            cluster_failed.clone(),
        );
        registry.register(
            "hubbub_upgrades_rejected",
            "Upgrades refused before a WebSocket existed, by reason",
            upgrades_rejected.clone(),
        );
        for t in [Transport::Ws, Transport::SocketIo, Transport::GraphQl] {
            let _ = connections.get_or_create(&TransportLabel {
                transport: t.as_str().into(),
            });
        }
        // Every reason shows from the start, at zero, so dashboards see the series.
        for r in [
            RejectReason::ServerFull,
            RejectReason::BadHandshake,
            RejectReason::Unauthorized,
            RejectReason::ShuttingDown,
        ] {
            let _ = upgrades_rejected.get_or_create(&ReasonLabel {
                reason: r.as_str().into(),
            });
        }
        Self {
            registry,
            connections,
            messages_in,
            messages_out,
            bytes_out,
            slow_consumer_closes,
            heartbeat_reaped,
            volatile_dropped,
            store_dropped,
            store_lost,
            cluster_failed,
            upgrades_rejected,
        }
    }

    fn conn_gauge(&self, t: Transport) -> Gauge {
        self.connections
            .get_or_create(&TransportLabel {
                transport: t.as_str().into(),
            })
            .clone()
    }

    pub(crate) fn connection_opened(&self, t: Transport) {
        self.conn_gauge(t).inc();
    }

    pub(crate) fn connection_closed(&self, t: Transport) {
        self.conn_gauge(t).dec();
    }

    /// Open connections of one transport.
    pub fn connections(&self, t: Transport) -> u64 {
        self.conn_gauge(t).get().max(0) as u64
    }

    /// Open connections as `/api/stats` and the dashboard show them:
    /// `{total, ws, socketio, graphql}`.
    pub fn connections_json(&self) -> serde_json::Value {
        let (ws, sio, gql) = (
            self.connections(Transport::Ws),
            self.connections(Transport::SocketIo),
            self.connections(Transport::GraphQl),
        );
        serde_json::json!({"total": ws + sio + gql, "ws": ws, "socketio": sio, "graphql": gql})
    }

    pub(crate) fn message_in(&self) {
        self.messages_in.inc();
    }

    pub(crate) fn messages_out(&self, n: u64) {
        if n > 0 {
            self.messages_out.inc_by(n);
        }
    }

    pub(crate) fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer_closes.inc();
    }

    pub(crate) fn reaped(&self) {
        self.heartbeat_reaped.inc();
    }

    pub(crate) fn volatile_dropped(&self) {
        self.volatile_dropped.inc();
    }

    pub(crate) fn store_dropped(&self) {
        self.store_dropped.inc();
    }

    pub(crate) fn cluster_failed(&self) {
        self.cluster_failed.inc();
    }

    /// Deliveries and requests that could not reach the other nodes.
    pub fn cluster_failed_total(&self) -> u64 {
        self.cluster_failed.get()
    }

    /// Brings `hubbub_store_lost_total` up to the store's own count of lost writes.
    pub fn sync_store_lost(&self, lost: u64) {
        let have = self.store_lost.get();
        if lost > have {
            self.store_lost.inc_by(lost - have);
        }
    }

    /// Counts an upgrade refused before the WebSocket existed.
    pub fn upgrade_rejected(&self, reason: RejectReason) {
        self.upgrades_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().into(),
            })
            .inc();
    }

    /// Total frames and packets received.
    pub fn messages_in_total(&self) -> u64 {
        self.messages_in.get()
    }

    /// Total messages delivered, per recipient.
    pub fn messages_out_total(&self) -> u64 {
        self.messages_out.get()
    }

    /// Total payload bytes written.
    pub fn bytes_out_total(&self) -> u64 {
        self.bytes_out.get()
    }

    /// Connections closed as slow consumers.
    pub fn slow_consumer_total(&self) -> u64 {
        self.slow_consumer_closes.get()
    }

    /// Volatile messages dropped for full queues.
    pub fn volatile_dropped_total(&self) -> u64 {
        self.volatile_dropped.get()
    }

    /// Connections reaped by the heartbeat.
    pub fn reaped_total(&self) -> u64 {
        self.heartbeat_reaped.get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String only fails on a formatter error, which cannot happen.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The metrics in the Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), what
    /// scrapers that do not ask for OpenMetrics, and `curl | grep`, expect.
    pub fn render_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.render())
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: a counter family's `HELP` and `TYPE`
/// lines name its `_total` sample (OpenMetrics names the family without the suffix), and the
/// `# EOF` and `# UNIT` lines go.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_by_their_samples_and_has_no_eof() {
        let s = Stats::new();
        s.message_in();
        let text = s.render_prometheus();
        assert!(
            text.contains("# TYPE hubbub_messages_in_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP hubbub_messages_in_total "), "{text}");
        assert!(text.contains("hubbub_messages_in_total 1\n"), "{text}");
        assert!(text.contains("# TYPE hubbub_connections gauge\n"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
