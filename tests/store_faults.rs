//! A store that cannot write does not stop the server (docs/services.md, "Store faults"): a
//! corrupt file, a read-only file and a full disk each give a clear line in the log, the
//! store's state in `/readyz`, and `unavailable` to whoever needs the store (history rooms,
//! direct messages kept with `dm_history`, notifications, creating rooms), while live
//! delivery goes on; a disk that has room again is written to again. Each runs the real
//! binary on a real file.

mod common;

use std::path::Path;
use std::time::Duration;

use common::Process;
use serde_json::json;

/// Rooms made on first use keep no history here; direct messages are kept (a history room
/// of the store's).
const ARGS: [&str; 6] = [
    "--db",
    "t.db",
    "--default-history",
    "0",
    "--dm-history",
    "10",
];

fn code(v: &serde_json::Value) -> &str {
    v["code"].as_str().unwrap_or_default()
}

/// Whether this process runs as root (file permissions do not stop root).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Everything that needs the store answers `unavailable`; live delivery works.
async fn check_unavailable_but_live(server: &Process, reason: &str) {
    let (st, ready) = server.get("/readyz").await;
    assert_eq!(
        (st, ready["store"]["status"].as_str()),
        (200, Some("unavailable")),
        "{ready}"
    );
    let why = ready["store"]["reason"].as_str().unwrap();
    assert!(why.contains(reason), "{why}");
    let mut ann = server.client("/ws/ann").await;
    let mut bob = server.client("/ws/bob").await;
    // Live: a room without history, a broadcast.
    bob.join("lobby").await;
    let r = ann
        .request(json!({"op":"publish","room":"lobby","event":"e","data":"live"}))
        .await;
    assert_eq!(r["op"], "ack", "{r}");
    assert_eq!(bob.recv_message().await["data"], "live");
    ann.request(json!({"op":"broadcast","event":"b","data":1}))
        .await;
    assert_eq!(bob.recv_message().await["event"], "b");
    // A direct message is kept: unavailable, and nobody received it.
    let r = ann
        .request(json!({"op":"send","to":"bob","event":"dm","data":"x"}))
        .await;
    assert_eq!(code(&r), "unavailable", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("unavailable"),
        "{r}"
    );
    let r = bob
        .request(json!({"op":"join","room":"dm:ann","history":5}))
        .await;
    assert_eq!(code(&r), "unavailable", "{r}");
    assert!(
        bob.backlog.iter().all(|m| m["data"] != "x"),
        "refused before delivery"
    );
    // Without an id the publisher still hears of it.
    ann.send(json!({"op":"send","to":"bob","event":"dm","data":"y"}))
        .await;
    let e = loop {
        let m = ann.recv().await;
        if m["op"] != "message" {
            break m; // (ann's own copy of the broadcast may come first)
        }
    };
    assert_eq!((e["op"].as_str(), code(&e)), (Some("error"), "unavailable"));
    // Notifications and rooms with history need the store.
    let r = ann.request(json!({"op":"notifications"})).await;
    assert_eq!(code(&r), "unavailable");
    let (st, e) = server
        .post("/api/notify", json!({"to":"ann","data":1}))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );
    let (st, e) = server
        .post("/api/rooms", json!({"name":"kept2","history":5}))
        .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );
    let (_, m) = server.get("/api/stats").await;
    assert_eq!(m["store"]["status"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_leaves_history_unavailable_and_live_delivery_working() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..16_384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("t.db"), &garbage).unwrap();
    let server = Process::start(dir.path(), &ARGS).await;
    let line = server.wait_log("until it can write again").await;
    assert!(
        line.contains("t.db") && line.contains("not a database"),
        "{line}"
    );
    check_unavailable_but_live(&server, "not a database").await;
    assert_eq!(
        std::fs::read(dir.path().join("t.db")).unwrap(),
        garbage,
        "a file that is not ours is left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_file_leaves_history_unavailable_and_live_delivery_working() {
    let dir = tempfile::tempdir().unwrap();
    // A healthy run leaves a kept conversation in the file.
    {
        let mut server = Process::start(dir.path(), &ARGS).await;
        let mut ann = server.client("/ws/ann").await;
        let r = ann
            .request(json!({"op":"send","to":"bob","event":"dm","data":"kept"}))
            .await;
        assert_eq!(r["seq"], 1, "{r}");
        assert!(server.stop().success());
    }
    let db = dir.path().join("t.db");
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).unwrap();
    // Root writes whatever the permissions say: run the server as `nobody`, from a copy of
    // the binary it may execute, in a directory it may not write.
    let server = if is_root() {
        let bin = dir.path().join("hubbub");
        std::fs::copy(env!("CARGO_BIN_EXE_hubbub"), &bin).unwrap();
        set_mode(dir.path(), 0o755);
        let cmd = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin.to_str().unwrap(),
        ];
        Process::start_cmd(dir.path(), &cmd, &ARGS).await
    } else {
        set_mode(dir.path(), 0o555);
        Process::start(dir.path(), &ARGS).await
    };
    let line = server.wait_log("until it can write again").await;
    assert!(line.contains("t.db"), "{line}");
    check_unavailable_but_live(&server, "read-only").await;
    set_mode(dir.path(), 0o755);
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A disk with no room left: a small tmpfs when this process may mount one, else a file
/// size limit on the server (`prlimit --fsize`, the same error for the store's writes).
struct FullDisk {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl FullDisk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // HUBBUB_TEST_NO_MOUNT=1 tries the file size limit where mounting would work.
        let mounted = std::env::var_os("HUBBUB_TEST_NO_MOUNT").is_none()
            && std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        Self { dir, mounted }
    }

    /// Leaves no room: fills the tmpfs, or caps the server's file size at what it has.
    fn fill(&self, server: &Process) {
        if self.mounted {
            let mut f = std::fs::File::create(self.dir.path().join("filler")).unwrap();
            let chunk = vec![0u8; 16 * 1024];
            while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        } else {
            let status = std::process::Command::new("prlimit")
                .arg(format!("--pid={}", server.child.id()))
                .arg("--fsize=1:")
                .status()
                .expect("prlimit (util-linux) sets the server's file size limit");
            assert!(status.success());
        }
    }

    /// Gives the room back.
    fn free(&self, server: &Process) {
        if self.mounted {
            std::fs::remove_file(self.dir.path().join("filler")).unwrap();
        } else {
            let status = std::process::Command::new("prlimit")
                .arg(format!("--pid={}", server.child.id()))
                .arg("--fsize=unlimited:")
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_kept_messages_until_there_is_room_again() {
    let disk = FullDisk::new();
    let server = Process::start(disk.dir.path(), &ARGS).await;
    let (st, _) = server
        .post("/api/rooms", json!({"name":"kept","history":1000}))
        .await;
    assert_eq!(st, 201);
    let mut ann = server.client("/ws/ann").await;
    let mut bob = server.client("/ws/bob").await;
    bob.join("kept").await;
    let pad = "p".repeat(2000);
    let r = ann
        .request(json!({"op":"publish","room":"kept","event":"e","data":pad}))
        .await;
    assert_eq!(r["seq"], 1, "{r}");
    disk.fill(&server);
    // Acks stop: the first publishes may still fit in what the log file has; then a
    // commit fails and everything kept is refused.
    let mut refused = None;
    for i in 0..5_000 {
        let r = ann
            .request(json!({"op":"publish","room":"kept","event":"e","data":pad}))
            .await;
        if r["op"] == "error" {
            refused = Some((i, r));
            break;
        }
    }
    let (_, r) = refused.expect("a full disk refuses kept messages");
    assert_eq!(code(&r), "unavailable", "{r}");
    server.wait_log("until it can write again").await;
    let (_, ready) = server.get("/readyz").await;
    assert_eq!(ready["store"]["status"], "unavailable");
    let (st, _) = server.get("/api/rooms/kept/history").await;
    assert_eq!(st, 503);
    // Live delivery goes on meanwhile.
    bob.join("lobby").await;
    ann.request(json!({"op":"publish","room":"lobby","event":"e","data":"live"}))
        .await;
    loop {
        let m = bob.recv_message().await;
        if m["data"] == "live" {
            break;
        }
    }
    // Room again: the writer notices within a second or so and acks come back.
    disk.free(&server);
    server.wait_log("writing again").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let seq = loop {
        let r = ann
            .request(json!({"op":"publish","room":"kept","event":"e","data":"back"}))
            .await;
        if let Some(seq) = r["seq"].as_u64() {
            break seq;
        }
        assert!(tokio::time::Instant::now() < deadline, "still refused: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(seq > 1);
    let (st, page) = server.get("/api/rooms/kept/history?limit=1").await;
    assert_eq!(
        (st, page["messages"][0]["data"].as_str()),
        (200, Some("back"))
    );
}
