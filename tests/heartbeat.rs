//! Heartbeats: the server pings every interval; a connection whose pong does not come
//! within the timeout is terminated and counted. Short intervals keep the test quick.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_reaped_and_a_live_one_is_kept() {
    let s = TestServer::with(&[
        ("heartbeat_interval", "300ms"),
        ("heartbeat_timeout", "200ms"),
    ])
    .await;
    // The live client reads continuously, so its WebSocket library answers every ping.
    let live = s.user("live").await;
    let mut live_ws = live.ws;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            tokio::select! {
                _ = &mut stop_rx => return (pings, live_ws),
                m = live_ws.next() => match m {
                    Some(Ok(common::WsMessage::Ping(_))) => pings += 1,
                    Some(Ok(_)) => {}
                    other => panic!("live connection ended: {other:?}"),
                },
            }
        }
    });
    // The dead client completes the handshake and then never reads again: no pongs.
    let dead = s.user("dead").await;
    s.wait_connections(2).await;
    // Within a few intervals the dead one is gone and counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.hub().stats().reaped_total() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nobody was reaped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.wait_connections(1).await;
    assert_eq!(s.hub().users_online(), vec!["live".to_string()]);
    // Keep going for a few more intervals: the live one stays.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.hub().stats().reaped_total(), 1);
    stop_tx.send(()).unwrap();
    let (pings, ws) = reader.await.unwrap();
    assert!(pings >= 3, "the live client saw {pings} pings");
    let mut live = common::Client::from_ws(ws);
    assert_eq!(live.request(json!({"op":"ping"})).await["op"], "pong");
    // The dead one finds its connection dropped without a close handshake.
    let mut dead = dead;
    dead.expect_dropped().await;
    let (_, m) = s.get("/metrics").await;
    assert!(m
        .as_str()
        .unwrap()
        .contains("hubbub_heartbeat_reaped_total 1"));
}
