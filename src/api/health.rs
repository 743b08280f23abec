//! How the server is doing: `GET /api/stats`, Prometheus `GET /metrics`, and readiness
//! (`/readyz`, which also says whether the store takes writes).

use axum::{
    extract::State,
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

use super::ApiState;
use crate::error::{ApiError, ErrorCode, HubError};

/// The store's state as the API reports it: `ok`, `none` (history in memory only), or why
/// it does not take writes.
fn store_state(s: &ApiState) -> Value {
    match s.hub.store().map(|st| st.health()) {
        None => json!({"status": "none"}),
        Some(Ok(())) => json!({"status": "ok"}),
        Some(Err(e)) => json!({"status": "unavailable", "reason": e.to_string()}),
    }
}

/// The cluster's state: `none` (one node), `ok`, or why Redis cannot be reached.
fn cluster_state(s: &ApiState) -> Option<Value> {
    let a = s.hub.adapter()?;
    Some(match a.health() {
        Ok(()) => json!({"status": "ok"}),
        Err(e) => json!({"status": "unavailable", "reason": e.to_string()}),
    })
}

pub(super) async fn stats(State(s): State<ApiState>) -> Json<Value> {
    let st = s.hub.stats();
    let mut body = json!({
        "node": s.hub.node(),
        "connections": st.connections_json(),
        "users_online": s.hub.users_online().len(),
        "rooms": s.hub.rooms().len(),
        "messages_in": st.messages_in_total(),
        "messages_out": st.messages_out_total(),
        "bytes_out": st.bytes_out_total(),
        "slow_consumer_closes": st.slow_consumer_total(),
        "heartbeat_reaped": st.reaped_total(),
        "store": store_state(&s),
        "cluster_failed": st.cluster_failed_total(),
    });
    if let Some(a) = s.hub.adapter() {
        // The cluster's totals: connections from the nodes' heartbeats, users online asked
        // of every node (a user on two nodes counts once).
        let nodes = a.nodes().await.unwrap_or_default();
        let mut cluster = cluster_state(&s).unwrap_or_default();
        cluster["connections"] = nodes
            .iter()
            .filter_map(|n| n["connections"].as_u64())
            .sum::<u64>()
            .into();
        if let Ok(users) = s.hub.online_everywhere().await {
            cluster["users_online"] = users.len().into();
        }
        body["cluster"] = cluster;
        body["nodes"] = Value::Array(nodes);
    }
    Json(body)
}

/// Prometheus text (0.0.4), or OpenMetrics when the scraper's `Accept` asks for it (as
/// Prometheus itself does).
pub(super) async fn metrics(State(s): State<ApiState>, headers: HeaderMap) -> impl IntoResponse {
    if let Some(store) = s.hub.store() {
        s.hub.stats().sync_store_lost(store.dropped_total());
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.hub.stats().render(),
        )
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.hub.stats().render_prometheus(),
        )
    }
}

/// Ready while not shutting down and, in a cluster, while Redis is reachable. A store that
/// does not take writes is reported, not treated as unready: live delivery (and rooms
/// without history) still works.
pub(super) async fn readyz(State(s): State<ApiState>) -> Response {
    if s.hub.is_shutting_down() {
        return ApiError(HubError::new(ErrorCode::ServerFull, "shutting down")).into_response();
    }
    if let Some(Err(e)) = s.hub.adapter().map(|a| a.health()) {
        return ApiError(e).into_response();
    }
    let mut body = json!({"status": "ready", "store": store_state(&s)});
    if let Some(c) = cluster_state(&s) {
        body["cluster"] = c;
    }
    Json(body).into_response()
}
