//! Plugins cannot hurt the host: output and sleeps in `init` and `handle`, wall time, floods of
//! log lines, key-value writes and error text, quarantine of a version that keeps failing, and
//! the `stop` and `reply_to` permissions.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use switchboard_tests::{
    Fake, ServerSetup, echo_manifest, eventually, install, test_plugin, text_message,
};

const WAIT: Duration = Duration::from_secs(20);

fn message(id: usize) -> String {
    text_message(&format!("ABEG-budget-{id}"))
}

/// The test plugin's manifest in `mode`, forwarding to `sink` when it echoes, plus `extra`.
fn manifest(mode: &str, extra: &str) -> String {
    format!(
        "[config]\nmode = \"{mode}\"\ndestination = \"sink\"\n{extra}\n\
         [permissions]\ndestinations = [\"sink\"]\n"
    )
}

/// Install the test plugin (build a) as `name`.
fn put(plugins: &Path, name: &str, manifest: &str) {
    install(plugins, name, &test_plugin("misbehave.wasm"), manifest);
}

fn setup(dir: &Path, sink: &Fake) -> ServerSetup {
    let mut setup = ServerSetup::new(dir);
    setup.example_plugins = false;
    setup.destinations = vec![("sink".into(), sink.url())];
    std::fs::create_dir_all(setup.plugins_dir()).unwrap();
    setup
}

fn loaded<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["loaded"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// How many forwards the sink got for message `id`.
fn echoes(sink: &Fake, id: usize) -> usize {
    let id = format!("ABEG-budget-{id}");
    sink.received()
        .iter()
        .filter(|r| r.json()["id"] == id.as_str())
        .count()
}

#[tokio::test]
async fn a_plugin_that_prints_or_sleeps_in_init_leaves_the_server_able_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    put(&plugins, "10-print", &manifest("print", "init = \"print\""));
    put(&plugins, "20-sleep", &manifest("echo", "init = \"sleep\""));
    // Starting at all is the first check: these crashed `serve` before.
    let mut server = setup.start().await;

    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || echoes(&sink, 1) == 1).await,
        "the printing plugin serves:\n{}",
        server.log()
    );
    let log = server.log();
    for expected in [
        "init stdout line 0",
        "init stderr line",
        "handle stdout line 0",
        "stream=\"stdout\"",
    ] {
        assert!(log.contains(expected), "{expected:?} in the log:\n{log}");
    }
    let status = server.get_json("/plugins").await;
    let error = status["errors"]["20-sleep"].as_str().unwrap_or_default();
    assert!(
        error.contains("init used more than 1000 ms of wall time"),
        "the sleeping init fails on wall time: {status}"
    );

    // Reloading works, and a fixed manifest brings the plugin in.
    std::fs::write(plugins.join("20-sleep.toml"), manifest("echo", "")).unwrap();
    assert!(
        eventually(WAIT, || server
            .log()
            .contains("plugin loaded plugin=\"20-sleep\""))
        .await,
        "{}",
        server.log()
    );
    assert_eq!(server.post(&message(2)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || echoes(&sink, 2) == 2).await,
        "{}",
        server.log()
    );
    assert!(server.terminate(), "clean exit on SIGTERM");
}

#[tokio::test]
async fn run_plugin_survives_a_printing_and_a_sleeping_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("text.json");
    std::fs::write(&payload, message(1)).unwrap();
    let run = |mode: &str, extra: &str| {
        let toml = dir.path().join(format!("{mode}.toml"));
        std::fs::write(&toml, manifest(mode, extra)).unwrap();
        let out =
            std::process::Command::new(switchboard_tests::target_dir().join("release/switchboard"))
                .args(["run-plugin"])
                .arg(test_plugin("misbehave.wasm"))
                .arg("--payload")
                .arg(&payload)
                .arg("--manifest")
                .arg(&toml)
                .output()
                .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    switchboard_tests::build();

    let (ok, out) = run("print", "init = \"print\"");
    assert!(ok, "{out}");
    assert!(
        out.contains(r#""action":"forward""#) && out.contains("handle stdout line 0"),
        "{out}"
    );

    let started = Instant::now();
    let (ok, out) = run("sleep", "[limits]\nwall_timeout_ms = 300");
    assert!(ok, "{out}");
    assert!(
        out.contains("used more than 300 ms of wall time") && !out.contains("CPU time"),
        "the error names wall time: {out}"
    );
    assert!(out.contains(r#""actions":[]"#), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60), "not an hour");
}

#[tokio::test]
async fn a_sleeping_plugin_is_cut_at_its_wall_time_and_stops_being_called_once_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    put(
        &plugins,
        "10-sleep",
        &manifest("sleep", "[limits]\nwall_timeout_ms = 300"),
    );
    install(
        &plugins,
        "90-echo",
        &test_plugin("misbehave.wasm"),
        &echo_manifest("1"),
    );
    let server = setup.start().await;

    for id in 0..2 {
        assert_eq!(server.post(&message(id)).await.0, StatusCode::OK);
        assert!(
            eventually(WAIT, || echoes(&sink, id) == 1).await,
            "the next plugin and the next webhook go on:\n{}",
            server.log()
        );
    }
    let log = server.log();
    assert!(
        log.contains(
            "call used more than 300 ms of wall time, waiting included ([limits] wall_timeout_ms)"
        ),
        "{log}"
    );
    assert!(
        !log.contains("ms of CPU time"),
        "not called CPU time:\n{log}"
    );

    std::fs::remove_file(plugins.join("10-sleep.wasm")).unwrap();
    assert!(
        eventually(WAIT, || server.log().contains("plugin unloaded")).await,
        "{}",
        server.log()
    );
    let cut_before = server.log().matches("of wall time").count();
    assert_eq!(server.post(&message(2)).await.0, StatusCode::OK);
    assert!(eventually(WAIT, || echoes(&sink, 2) == 1).await);
    assert_eq!(
        server.log().matches("of wall time").count(),
        cut_before,
        "a deleted plugin is not called"
    );
}

#[tokio::test]
async fn sigterm_stops_a_server_whose_plugin_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink);
    // A wall-time limit far longer than the test: only the shutdown can end the call.
    put(
        &setup.plugins_dir(),
        "10-sleep",
        &manifest("sleep", "[limits]\nwall_timeout_ms = 600000"),
    );
    let mut server = setup.start().await;
    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    assert!(
        server.terminate(),
        "the server exits cleanly within 30 s:\n{}",
        server.log()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        server.log().contains("ending the plugin calls in progress"),
        "{}",
        server.log()
    );
}

/// Reads `VmHWM` (peak resident memory, KiB) of a process.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let meta = e.metadata().unwrap();
                    if meta.is_dir() {
                        folder_bytes(&e.path())
                    } else {
                        meta.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn floods_of_log_lines_key_value_writes_and_error_text_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    put(&plugins, "10-log-flood", &manifest("log-flood", ""));
    put(&plugins, "11-newline", &manifest("newline-log", ""));
    put(&plugins, "12-kv-flood", &manifest("kv-flood", ""));
    put(&plugins, "13-huge-error", &manifest("huge-error", ""));
    install(
        &plugins,
        "90-echo",
        &test_plugin("misbehave.wasm"),
        &echo_manifest("1"),
    );
    let mut server = setup.start().await;
    // Fewer webhooks than it takes to quarantine the failing plugins: each one is called.
    let posts = 4;
    for id in 0..posts {
        assert_eq!(server.post(&message(id)).await.0, StatusCode::OK);
        assert!(
            eventually(WAIT, || echoes(&sink, id) == 3).await,
            "log-flood, newline and echo forward message {id}:\n{}",
            server.log()
        );
    }
    let log = server.log();
    let flood_lines = log.matches("flood line").count();
    assert!(
        (1..=posts * 20).contains(&flood_lines),
        "at most 20 lines a call ([limits] log_max_lines_per_call), got {flood_lines}"
    );
    assert!(log.contains("plugin log lines dropped"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00Z  INFO switchboard: forged")),
        "a newline in a plugin's message cannot forge a host log line:\n{log}"
    );
    assert!(log.contains("first\\n2026-01-01T00:00:00Z"), "{log}");
    assert!(
        log.contains("more than 100 key-value writes in one call ([limits] kv_max_keys_per_call)"),
        "{log}"
    );
    assert!(
        log.contains("EEEE... ("),
        "the huge error is cut:\n{}",
        &log[..log.len().min(4000)]
    );
    assert!(
        log.len() < 1 << 20,
        "the log stays small: {} bytes after {posts} webhooks",
        log.len()
    );
    let status = server.get_json("/plugins").await;
    let dropped = loaded(&status, "10-log-flood").unwrap()["stats"]["log_lines_dropped"]
        .as_u64()
        .unwrap();
    assert!(dropped as usize >= posts * 19_000, "{status}");
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "switchboard_plugin_log_lines_dropped_total{{plugin=\"10-log-flood\"}} {dropped}"
        )),
        "{metrics}"
    );
    eprintln!(
        "after {posts} webhooks through flooding plugins: peak RSS {} KiB, data folder {} bytes",
        peak_rss_kib(server.pid()),
        folder_bytes(&dir.path().join("data"))
    );
    assert!(server.terminate());
}

#[tokio::test]
async fn a_plugins_key_value_store_is_capped_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink);
    // 50 keys a call: two calls fit in 120 keys, the third does not.
    put(
        &setup.plugins_dir(),
        "10-fill",
        &manifest("kv-fill", "[limits]\nkv_max_keys = 120"),
    );
    let server = setup.start().await;
    for id in 0..2 {
        assert_eq!(server.post(&message(id)).await.0, StatusCode::OK);
        assert!(
            eventually(WAIT, || echoes(&sink, id) == 1).await,
            "{}",
            server.log()
        );
    }
    assert_eq!(server.post(&message(2)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || server.log().contains(
            "the key-value store would hold more than 120 keys ([limits] kv_max_keys)"
        ))
        .await,
        "{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echoes(&sink, 2), 0, "the call over the quota failed");
    let status = server.get_json("/plugins").await;
    assert!(
        loaded(&status, "10-fill").unwrap()["health"]["last_error"]
            .as_str()
            .unwrap()
            .contains("kv_max_keys"),
        "{status}"
    );
}

#[tokio::test]
async fn a_failing_version_is_quarantined_and_a_new_version_lifts_it() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    put(&plugins, "10-fail", &manifest("fail-unless-b", ""));
    install(
        &plugins,
        "90-echo",
        &test_plugin("misbehave.wasm"),
        &echo_manifest("1"),
    );
    let server = setup.start().await;
    let posts = 7;
    for id in 0..posts {
        assert_eq!(server.post(&message(id)).await.0, StatusCode::OK);
        assert!(
            eventually(WAIT, || echoes(&sink, id) == 1).await,
            "the rest of the chain goes on:\n{}",
            server.log()
        );
    }
    let status = server.get_json("/plugins").await;
    let health = &loaded(&status, "10-fail").unwrap()["health"];
    assert_eq!(health["state"], "quarantined", "{status}");
    assert_eq!(health["consecutive_failures"], 5, "{status}");
    assert!(
        health["last_error"]
            .as_str()
            .unwrap()
            .contains("build a always fails"),
        "{status}"
    );
    assert!(health["quarantined_until"].as_i64().is_some(), "{status}");
    assert_eq!(
        loaded(&status, "10-fail").unwrap()["stats"]["skipped"],
        posts - 5,
        "{status}"
    );
    assert_eq!(loaded(&status, "90-echo").unwrap()["health"]["state"], "ok");
    assert!(
        server.log().contains("plugin quarantined"),
        "{}",
        server.log()
    );
    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("switchboard_plugin_quarantined{plugin=\"10-fail\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        server.metric("plugin_calls_skipped_total").await,
        (posts - 5) as u64
    );

    // A fixed version: not quarantined, and called again.
    install(
        &plugins,
        "10-fail",
        &test_plugin("misbehave-b.wasm"),
        &manifest("fail-unless-b", ""),
    );
    assert!(
        eventually(WAIT, || server
            .log()
            .contains("plugin reloaded plugin=\"10-fail\""))
        .await,
        "{}",
        server.log()
    );
    let status = server.get_json("/plugins").await;
    assert_eq!(
        loaded(&status, "10-fail").unwrap()["health"]["state"],
        "ok",
        "{status}"
    );
    assert_eq!(server.post(&message(100)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || echoes(&sink, 100) == 2).await,
        "the new version serves:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn stop_and_replies_to_others_need_their_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let coreapp = Fake::coreapp().await;
    let mut setup = setup(dir.path(), &sink);
    setup.coreapp = Some(coreapp.url());
    let plugins = setup.plugins_dir();
    let reply_any = |reply_to: &str| {
        format!(
            "[config]\nmode = \"reply-any\"\ndestination = \"sink\"\n\n\
             [permissions]\ndestinations = [\"sink\"]\nreply = true\n{reply_to}\n"
        )
    };
    put(&plugins, "10-reply-any", &reply_any(""));
    put(&plugins, "20-stop", &manifest("stop", ""));
    install(
        &plugins,
        "90-echo",
        &test_plugin("misbehave.wasm"),
        &echo_manifest("1"),
    );
    let server = setup.start().await;
    let replies_to_other = || {
        coreapp
            .received()
            .iter()
            .filter(|r| r.path == "/v1/messages" && r.json()["to"] == "15550009999")
            .count()
    };

    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || echoes(&sink, 1) == 2).await,
        "a stop that is not granted does not end the chain:\n{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("ending the chain is not granted"), "{log}");
    assert!(
        log.contains(
            "a reply to \"15550009999\", who did not send this notification, is not granted"
        ),
        "{log}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replies_to_other(), 0);

    // Granted: the reply goes out, and the chain ends at the stop.
    std::fs::write(
        plugins.join("10-reply-any.toml"),
        reply_any("reply_to = \"any\""),
    )
    .unwrap();
    std::fs::write(
        plugins.join("20-stop.toml"),
        manifest("stop", "").replace("[permissions]\n", "[permissions]\nstop = true\n"),
    )
    .unwrap();
    assert!(
        eventually(WAIT, || server.log().matches("plugin reloaded").count()
            == 2)
        .await,
        "{}",
        server.log()
    );
    assert_eq!(server.post(&message(2)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || replies_to_other() == 1).await,
        "{}",
        server.log()
    );
    assert!(eventually(WAIT, || echoes(&sink, 2) == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        echoes(&sink, 2),
        1,
        "the plugin after the stop is not called"
    );
}
