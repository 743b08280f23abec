//! Heartbeat: the server pings every connection every 5 s and terminates those that have
//! not answered within 3 s, logging connection counts and the reaped total as it goes.
//!
//! Run `cargo run --example heartbeat`; connect with a client, then freeze it (for example
//! suspend `websocat` with Ctrl-Z) and watch it get reaped.

use std::collections::BTreeMap;
use std::time::Duration;

use hubbub::{server::shutdown_signal, Config, Hubbub};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().init();
    let mut settings = BTreeMap::new();
    settings.insert("heartbeat_interval".to_string(), "5s".to_string());
    settings.insert("heartbeat_timeout".to_string(), "3s".to_string());
    let config = Config::from_values(&settings).expect("valid settings");
    let hubbub = Hubbub::new(config);
    let hub = hubbub.hub().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            println!(
                "connections: {}, reaped so far: {}",
                hub.connection_count(),
                hub.stats().reaped_total()
            );
        }
    });
    let listener = hubbub::server::bind(([127, 0, 0, 1], 3000).into())?;
    hubbub
        .serve(listener, hubbub.router(), shutdown_signal())
        .await
}
