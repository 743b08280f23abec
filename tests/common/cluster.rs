//! A real `redis-server` per test and `hubbub` nodes that meet through it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Process;

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    pub fn start_on(port: u16) -> Option<Self> {
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => {
                assert!(
                    std::env::var_os("HUBBUB_REQUIRE_ALL").is_none(),
                    "redis-server is required (apt-get install redis-server)"
                );
                eprintln!("skipping: redis-server is not installed");
                return None;
            }
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, port })
    }

    /// Runs a command with `redis-cli` and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (Debian's redis-tools, with redis-server)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` nodes of one cluster, each in its own directory, heartbeats every second.
pub async fn nodes(redis: &Redis, n: usize, extra: &[&str]) -> (Vec<Process>, tempfile::TempDir) {
    nodes_with(redis, n, "memory", extra).await
}

/// Like [`nodes`], with the store `store` (`redis`: the cluster keeps history).
pub async fn nodes_with(
    redis: &Redis,
    n: usize,
    store: &str,
    extra: &[&str],
) -> (Vec<Process>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let mut args = vec![
        "--adapter",
        "redis",
        "--redis-url",
        &url,
        "--store",
        store,
        "--heartbeat-interval",
        "1s",
    ];
    args.extend(extra);
    let mut out = Vec::new();
    for i in 0..n {
        let d = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let p = Process::start(&d, &args).await;
        wait_ready(&p).await;
        out.push(p);
    }
    (out, dir)
}

/// With the sharded flavour (`extra` holds `sharded`), waits until `n` nodes listen on
/// room `room`'s channel of `/`: a node hears a room one Redis round trip after it came
/// there (docs/cluster.md). Nothing to wait for with the classic flavour.
pub async fn room_followed(redis: &Redis, extra: &[&str], room: &str, n: u64) {
    if !extra.contains(&"sharded") {
        return;
    }
    let channel = format!("socket.io#/#{room}#");
    eventually(&format!("{n} nodes on {channel}"), || async {
        let out = redis.cli(&["PUBSUB", "SHARDNUMSUB", &channel]);
        out.lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            == Some(n)
    })
    .await;
}

/// Waits until `/readyz` is 200 (the node is subscribed to Redis).
pub async fn wait_ready(p: &Process) {
    eventually(&format!("node {} ready", p.port), || async {
        p.get("/readyz").await.0 == 200
    })
    .await;
}

/// Polls `check` every 50 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
