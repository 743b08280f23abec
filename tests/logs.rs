//! The binary's logs: plain text without colour codes when the output is not a terminal
//! (a file, a pipe, a log collector), and one JSON object a line with `log_format = "json"`.

mod common;

use common::Process;

#[tokio::test]
async fn piped_text_logs_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path(), &["--store", "memory"]).await;
    let line = server.wait_log("listening on").await;
    assert!(line.contains(" INFO "), "{line}");
    let log = server.log();
    assert!(
        log.iter().all(|l| !l.contains('\u{1b}')),
        "ANSI escapes in a piped log: {log:?}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::start(dir.path(), &["--store", "memory", "--log-format", "json"]).await;
    server.wait_log("listening on").await;
    let log = server.log();
    assert!(!log.is_empty());
    for line in &log {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{v}"
        );
    }
    assert!(log
        .iter()
        .any(|l| l.contains("listening on http://127.0.0.1:")));
}
