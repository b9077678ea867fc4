//! The plugin runtime: limits, isolation, permissions, hot reload, the compiled-code cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use switchboard_tests::{
    Fake, Server, ServerSetup, echo_manifest, eventually, install, test_plugin, text_message,
};

const WAIT: Duration = Duration::from_secs(20);

/// A text message with its own id.
fn message(id: usize) -> String {
    text_message(&format!("ABEG-test-{id}"))
}

fn bodies(fake: &Fake) -> Vec<Value> {
    fake.received().iter().map(|r| r.json()).collect()
}

#[tokio::test]
async fn each_bad_plugin_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, secret, coreapp) = (
        Fake::start().await,
        Fake::start().await,
        Fake::coreapp().await,
    );
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.coreapp = Some(coreapp.url());
    setup.destinations = vec![("sink".into(), sink.url()), ("secret".into(), secret.url())];
    let plugins = setup.plugins_dir();
    std::fs::create_dir_all(&plugins).unwrap();
    let wasm = test_plugin("misbehave.wasm");
    let bad = [
        ("10-loop", "loop", "[limits]\ntimeout_ms = 50\n"),
        ("11-alloc", "alloc", "[limits]\nmemory_mb = 16\n"),
        ("12-trap", "trap", ""),
        ("13-panic", "panic", ""),
        ("14-error", "error", ""),
        ("15-oversized", "oversized", "[permissions]\nreply = true\n"),
        ("16-many", "many", ""),
        (
            "17-forbidden",
            "forbidden",
            "[permissions]\ndestinations = [\"sink\"]\n",
        ),
    ];
    for (name, mode, extra) in bad {
        install(
            &plugins,
            name,
            &wasm,
            &format!("[config]\nmode = \"{mode}\"\ndestination = \"secret\"\n{extra}"),
        );
    }
    install(
        &plugins,
        "05-init-error",
        &wasm,
        "[config]\nmode = \"init-error\"\n",
    );
    install(&plugins, "90-echo", &wasm, &echo_manifest("1"));
    let server = setup.start().await;

    for id in 0..2 {
        let (status, _) = server.post(&message(id)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "webhook {id} is accepted whatever the plugins do"
        );
        assert!(
            eventually(WAIT, || sink.received().len() == id + 1).await,
            "the last plugin still runs for webhook {id}:\n{}",
            server.log()
        );
    }
    let log = server.log();
    for expected in [
        "used more than 50 ms of CPU time",
        "the memory limit is 16 MiB",
        "panicked",
        "deliberate error",
        "actions returned, the limit is 32",
        "bytes of actions returned, the limit is 256 KiB",
        "forward to \"secret\" is not granted",
        "replies and mark-read are not granted",
        "deliberate init failure",
    ] {
        assert!(
            log.contains(expected),
            "the log names the failure {expected:?}:\n{log}"
        );
    }
    assert_eq!(
        server.metric("plugin_failures_total").await,
        2 * 7,
        "seven bad plugins fail on each of two webhooks"
    );
    assert_eq!(server.metric("actions_refused_total").await, 2 * 2);
    assert!(
        secret.received().is_empty(),
        "a forbidden forward is never carried out"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        coreapp.received().is_empty(),
        "a forbidden or oversized reply is never sent"
    );
    assert_eq!(
        server.metric("plugins_loaded").await,
        9,
        "the plugin that fails init is not loaded"
    );

    // Operators see which plugin fails, and why one did not load.
    let metrics = switchboard_tests::http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for bad in [
        "10-loop",
        "11-alloc",
        "12-trap",
        "13-panic",
        "14-error",
        "15-oversized",
        "16-many",
    ] {
        let line = format!("switchboard_plugin_call_failures_total{{plugin=\"{bad}\"}} 2");
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("switchboard_plugin_call_failures_total{plugin=\"90-echo\"}"),
        "the good plugin has no failures"
    );
    let status: Value = switchboard_tests::http()
        .get(server.url("/plugins"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = status["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.first(),
        Some(&"10-loop"),
        "chain order is file-name order: {names:?}"
    );
    assert_eq!(names.last(), Some(&"90-echo"));
    assert_eq!(
        status["loaded"][0]["api_version"], "0.1.0",
        "the SDK stamps the contract version"
    );
    assert!(
        status["errors"]["05-init-error"]
            .as_str()
            .unwrap()
            .contains("deliberate init failure"),
        "{status}"
    );
}

#[tokio::test]
async fn hot_reload_swaps_versions_under_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    let server = Arc::new(setup.start().await);

    // A client posting distinct messages until told to stop (bounded: at most 5000).
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (server, stop) = (server.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for id in 0..5000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                statuses.push(server.post(&message(id)).await.0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    let saw = |f: &dyn Fn(&Value) -> bool| bodies(&sink).iter().any(f);

    assert!(
        eventually(WAIT, || sink.received().len() >= 20).await,
        "{}",
        server.log()
    );
    // Replace the code: build b takes over.
    install(
        &plugins,
        "echo",
        &test_plugin("misbehave-b.wasm"),
        &echo_manifest("1"),
    );
    assert!(
        eventually(WAIT, || saw(&|b| b["build"] == "b")).await,
        "build b never served:\n{}",
        server.log()
    );
    // A corrupt file: logged, and build b keeps serving.
    let before_corrupt = sink.received().len();
    std::fs::write(
        plugins.join(".echo.partial"),
        b"\0asm this is not a component",
    )
    .unwrap();
    std::fs::rename(plugins.join(".echo.partial"), plugins.join("echo.wasm")).unwrap();
    assert!(
        eventually(WAIT, || server
            .log()
            .contains("plugin failed to load; version"))
        .await,
        "{}",
        server.log()
    );
    assert!(eventually(WAIT, || sink.received().len() >= before_corrupt + 20).await);
    assert!(
        bodies(&sink)[before_corrupt..]
            .iter()
            .all(|b| b["build"] == "b"),
        "the old version keeps serving"
    );
    // Fixed: build a again, with a new config.
    install(
        &plugins,
        "echo",
        &test_plugin("misbehave.wasm"),
        &echo_manifest("2"),
    );
    assert!(
        eventually(WAIT, || saw(&|b| b["build"] == "a" && b["config"] == "2")).await,
        "{}",
        server.log()
    );
    // A manifest change alone reloads too.
    std::fs::write(plugins.join("echo.toml"), echo_manifest("3")).unwrap();
    assert!(
        eventually(WAIT, || saw(&|b| b["config"] == "3")).await,
        "{}",
        server.log()
    );

    stop.store(true, Ordering::SeqCst);
    let statuses = poster.await.unwrap();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "every webhook got 200: {statuses:?}"
    );
    let posted = statuses.len();
    assert!(
        eventually(WAIT, || sink.received().len() >= posted).await,
        "{} of {posted} notifications handled",
        sink.received().len()
    );
    // Each notification was handled by exactly one version: all deliveries of an id (a retried
    // delivery arrives twice) carry the same build and config.
    let mut handled: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for b in bodies(&sink) {
        handled
            .entry(b["id"].as_str().unwrap().to_string())
            .or_default()
            .insert(format!("{}/{}", b["build"], b["config"]));
    }
    let expected: std::collections::BTreeSet<String> =
        (0..posted).map(|i| format!("ABEG-test-{i}")).collect();
    let got: std::collections::BTreeSet<String> = handled.keys().cloned().collect();
    assert_eq!(got, expected, "every notification handled, once");
    assert!(
        handled.values().all(|versions| versions.len() == 1),
        "each by exactly one version: {handled:?}"
    );

    // Deleted: unloaded, and the next notifications reach no plugin.
    std::fs::remove_file(plugins.join("echo.wasm")).unwrap();
    assert!(
        eventually(WAIT, || server.log().contains("plugin unloaded")).await,
        "{}",
        server.log()
    );
    assert_eq!(server.post(&message(999_999)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !bodies(&sink).iter().any(|b| b["id"] == "ABEG-test-999999"),
        "an unloaded plugin handles nothing"
    );
}

#[tokio::test]
async fn a_restart_reuses_compiled_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = ServerSetup::new(dir.path());
    let mut server = setup.start().await;
    assert!(server.log().contains("cached=false"), "{}", server.log());
    assert!(server.terminate(), "clean exit on SIGTERM");
    let compiled = std::fs::read_dir(dir.path().join("data/compiled"))
        .unwrap()
        .count();
    assert_eq!(compiled, 3, "one compiled file per example plugin");
    setup.example_plugins = false; // the files are already in place
    let server: Server = setup.start().await;
    let log = server.log();
    let second_run = &log[log.rfind("stopped").unwrap()..];
    assert_eq!(second_run.matches("cached=true").count(), 3, "{second_run}");
}

#[tokio::test]
async fn plugin_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    // The same test plugin, counting instead of echoing.
    let manifest = echo_manifest("1").replace("mode = \"echo\"", "mode = \"count\"");
    install(
        &setup.plugins_dir(),
        "echo",
        &test_plugin("misbehave.wasm"),
        &manifest,
    );
    let mut server = setup.start().await;
    for id in 0..3 {
        server.post(&message(id)).await;
    }
    assert!(
        eventually(WAIT, || sink.received().len() == 3).await,
        "{}",
        server.log()
    );
    assert!(server.terminate());
    let server = setup.start().await;
    server.post(&message(3)).await;
    assert!(
        eventually(WAIT, || sink.received().len() == 4).await,
        "{}",
        server.log()
    );
    let counts: Vec<u64> = bodies(&sink)
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        vec![1, 2, 3, 4],
        "the count lives in the key-value store, across restarts"
    );
}

/// A plugin author's path: `new-plugin`, the native tests, a wasm build, `run-plugin`, and the
/// running server picking the plugin up.
#[tokio::test]
async fn a_new_plugin_goes_from_template_to_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let coreapp = Fake::coreapp().await;
    let mut setup = ServerSetup::echo(dir.path(), &sink);
    setup.coreapp = Some(coreapp.url());
    let server = setup.start().await;

    let (ok, out) = server.cli_in(dir.path(), &["new-plugin", "greeter"]).await;
    assert!(ok, "{out}");
    let crate_dir = dir.path().join("greeter");
    // Its own build folder: the workspace's is locked by the `cargo test` running this test.
    let target = switchboard_tests::target_dir().join("scaffold");
    let cargo = |args: &[&str]| {
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &target)
            .args(args)
            .output()
            .unwrap()
    };
    let test = cargo(&["test", "--quiet"]);
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let build = cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let wasm = target.join("wasm32-wasip2/release/greeter.wasm");

    let payload = dir.path().join("text.json");
    std::fs::write(&payload, switchboard_tests::fixture("e1-text.json")).unwrap();
    let (ok, out) = server
        .cli_in(
            dir.path(),
            &[
                "run-plugin",
                wasm.to_str().unwrap(),
                "--payload",
                payload.to_str().unwrap(),
                "--manifest",
                "greeter/greeter.toml",
            ],
        )
        .await;
    assert!(ok, "{out}");
    assert!(
        out.contains(r#""action":"reply""#) && out.contains("Hello!"),
        "{out}"
    );

    // Deployed with its manifest, it answers the next webhook.
    install(
        &setup.plugins_dir(),
        "greeter",
        &wasm,
        &std::fs::read_to_string(crate_dir.join("greeter.toml")).unwrap(),
    );
    assert!(
        eventually(WAIT, || server
            .log()
            .contains("plugin loaded plugin=\"greeter\""))
        .await,
        "{}",
        server.log()
    );
    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || coreapp.received().iter().any(|r| r.path
            == "/v1/messages"
            && r.json()["text"]["body"] == "Hello!"))
        .await,
        "{}",
        server.log()
    );
}
