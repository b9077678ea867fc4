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
    let metrics = server.get_text("/metrics").await;
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
    let status: Value = server.get_json("/plugins").await;
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
    let examples = std::fs::read_dir(switchboard_tests::build())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("wasm".as_ref()))
        .count();
    assert_eq!(compiled, examples, "one compiled file per example plugin");
    setup.example_plugins = false; // the files are already in place
    let server: Server = setup.start().await;
    let log = server.log();
    let second_run = &log[log.rfind("stopped").unwrap()..];
    assert_eq!(
        second_run.matches("cached=true").count(),
        examples,
        "{second_run}"
    );
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

/// The README's "Writing a plugin" steps, run as written: `new-plugin` prints the steps, each is
/// checked to be in the README word for word and then run as printed, from the native tests to
/// the running server answering a webhook with the new plugin.
#[tokio::test]
async fn the_readme_plugin_steps_work_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let coreapp = Fake::coreapp().await;
    let mut setup = ServerSetup::echo(dir.path(), &sink);
    setup.coreapp = Some(coreapp.url());
    let server = setup.start().await;
    let readme = std::fs::read_to_string(switchboard_tests::root().join("README.md")).unwrap();

    let create = "switchboard new-plugin greeter";
    assert!(readme.contains(create), "the README starts with `{create}`");
    let (ok, out) = server.cli_in(dir.path(), &["new-plugin", "greeter"]).await;
    assert!(ok, "{out}");
    let steps: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("  ")).collect();
    assert_eq!(steps.len(), 5, "new-plugin prints five steps:\n{out}");
    // One build folder across runs (the README's relative paths stay literal): the crate's
    // target/ is a link to it. The workspace's own is locked by the `cargo test` running this.
    let shared_target = switchboard_tests::target_dir().join("scaffold");
    std::fs::create_dir_all(&shared_target).unwrap();
    std::os::unix::fs::symlink(&shared_target, dir.path().join("greeter/target")).unwrap();

    let mut cwd = dir.path().to_path_buf();
    let mut outputs = Vec::new();
    for step in steps {
        assert!(
            readme.contains(step),
            "the README shows `{step}` as new-plugin prints it"
        );
        let words: Vec<&str> = step.split_whitespace().collect();
        match words[0] {
            "cd" => cwd = cwd.join(words[1]),
            "cargo" => {
                let run = std::process::Command::new(
                    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
                )
                .current_dir(&cwd)
                .env_remove("CARGO_TARGET_DIR")
                .args(&words[1..])
                .output()
                .unwrap();
                assert!(
                    run.status.success(),
                    "`{step}` failed:\n{}",
                    String::from_utf8_lossy(&run.stderr)
                );
            }
            "switchboard" => {
                let (ok, out) = server.cli_in(&cwd, &words[1..]).await;
                assert!(ok, "`{step}` failed:\n{out}");
                outputs.push(out);
            }
            other => panic!("unexpected step {other}: {step}"),
        }
    }
    let (tried, installed) = (&outputs[0], &outputs[1]);
    assert!(
        tried.contains(r#""action":"reply""#) && tried.contains("Hello!"),
        "run-plugin shows the reply:\n{tried}"
    );
    assert!(installed.contains("installed greeter"), "{installed}");

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

fn loaded_names(status: &Value) -> Vec<String> {
    status["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Poll `/plugins` until `check` holds (at most `WAIT`); returns the last status.
async fn plugins_until(server: &Server, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = server.get_json("/plugins").await;
        if check(&status) || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error_of(status: &Value, name: &str) -> String {
    status["errors"][name]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A `.wasm` and its `.toml` load as a pair: never a `.wasm` without its manifest (which would
/// run with no permissions), never a manifest that does not parse, and an old version keeps
/// serving until its new pair is whole.
#[tokio::test]
async fn plugins_load_only_with_a_manifest_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    let server = setup.start().await;
    let wasm = test_plugin("misbehave.wasm");

    // Copied by hand, the .wasm first: it waits for its manifest, and does not run meanwhile.
    std::fs::copy(&wasm, plugins.join("late.wasm")).unwrap();
    let status = plugins_until(&server, |s| error_of(s, "late").contains("has no manifest")).await;
    assert!(
        error_of(&status, "late").contains("has no manifest"),
        "{status}\n{}",
        server.log()
    );
    assert_eq!(loaded_names(&status), ["echo"], "{status}");
    // Half of the manifest: it does not parse, so still nothing.
    let manifest = echo_manifest("late");
    let half = &manifest[..manifest.find("destinations").unwrap() + 20];
    std::fs::write(plugins.join("late.toml"), half).unwrap();
    let status = plugins_until(&server, |s| {
        error_of(s, "late").contains("invalid manifest")
    })
    .await;
    assert!(
        error_of(&status, "late").contains("invalid manifest"),
        "{status}"
    );
    assert_eq!(loaded_names(&status), ["echo"], "{status}");
    // The whole manifest: loaded, with the permissions it grants.
    std::fs::write(plugins.join("late.toml"), &manifest).unwrap();
    let status = plugins_until(&server, |s| loaded_names(s).len() == 2).await;
    assert_eq!(loaded_names(&status), ["echo", "late"], "{status}");
    assert!(status["errors"].get("late").is_none(), "{status}");
    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || bodies(&sink).iter().any(|b| b["config"] == "late")).await,
        "it serves with its permissions:\n{}",
        server.log()
    );

    // A garbage manifest beside a serving plugin: the error is shown, the old version (with its
    // old manifest) keeps serving.
    let good = std::fs::read_to_string(plugins.join("echo.toml")).unwrap();
    std::fs::write(
        plugins.join("echo.toml"),
        "[permissions\ndestinations = [\"si",
    )
    .unwrap();
    let status = plugins_until(&server, |s| {
        error_of(s, "echo").contains("invalid manifest")
    })
    .await;
    assert!(
        error_of(&status, "echo").contains("invalid manifest"),
        "{status}"
    );
    assert!(
        server.log().contains("plugin failed to load; version"),
        "{}",
        server.log()
    );
    let before = sink.received().len();
    assert_eq!(server.post(&message(2)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || bodies(&sink)[before..]
            .iter()
            .any(|b| b["id"] == "ABEG-test-2" && b["config"] == "1"))
        .await,
        "the old version keeps serving:\n{}",
        server.log()
    );
    // Put back as it was: the version serving is right again, and the error goes.
    std::fs::write(plugins.join("echo.toml"), good).unwrap();
    let status = plugins_until(&server, |s| s["errors"].get("echo").is_none()).await;
    assert!(status["errors"].get("echo").is_none(), "{status}");

    // Both copied by hand at once: loaded once, as a pair.
    std::fs::copy(&wasm, plugins.join("pair.wasm")).unwrap();
    std::fs::write(plugins.join("pair.toml"), echo_manifest("pair")).unwrap();
    let status = plugins_until(&server, |s| loaded_names(s).len() == 3).await;
    assert_eq!(loaded_names(&status), ["echo", "late", "pair"], "{status}");
    let log = server.log();
    let loads = log
        .lines()
        .filter(|l| l.contains("plugin=\"pair\"") && l.contains("load"))
        .count();
    assert_eq!(loads, 1, "one load, no failure:\n{log}");
}

/// `plugins install` checks the plugin and its manifest as the server would, installs nothing
/// when either is wrong, and puts a good pair into the folder of a running server at once.
#[tokio::test]
async fn plugins_install_checks_then_installs_the_pair() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    let server = setup.start().await;
    let wasm = test_plugin("misbehave.wasm");
    let wasm = wasm.to_str().unwrap();
    let write = |file: &str, text: &[u8]| {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let garbage = write("garbage.toml", b"[config\nmode = ");
    let init_fails = write("init.toml", b"[config]\nmode = \"init-error\"\n");
    let not_wasm = write("junk.wasm", b"\0asm this is not a component");
    let good = write("good.toml", echo_manifest("installed").as_bytes());
    let files = || -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(&plugins)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        f.sort();
        f
    };

    for (args, expected) in [
        (vec![wasm, garbage.as_str()], "invalid manifest"),
        (vec![wasm, init_fails.as_str()], "deliberate init failure"),
        (vec![not_wasm.as_str(), good.as_str()], "does not load"),
        (vec![wasm], "no manifest"),
    ] {
        let mut command = vec!["plugins", "install"];
        command.extend(args);
        command.extend(["--name", "new"]);
        let (ok, out) = server.cli(&command).await;
        assert!(!ok, "{command:?} is refused:\n{out}");
        assert!(
            out.contains(expected),
            "{command:?} says {expected:?}:\n{out}"
        );
        assert_eq!(files(), ["echo.toml", "echo.wasm"], "nothing installed");
    }

    let (ok, out) = server
        .cli(&["plugins", "install", wasm, &good, "--name", "new"])
        .await;
    assert!(ok, "{out}");
    assert!(out.contains("installed new"), "{out}");
    assert_eq!(
        files(),
        ["echo.toml", "echo.wasm", "new.toml", "new.wasm"],
        "the pair, and no staging files left"
    );
    let status = plugins_until(&server, |s| loaded_names(s).len() == 2).await;
    assert_eq!(loaded_names(&status), ["echo", "new"], "{status}");
    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || bodies(&sink)
            .iter()
            .any(|b| b["config"] == "installed"))
        .await,
        "{}",
        server.log()
    );
    let (ok, out) = server.cli(&["plugins", "list"]).await;
    assert!(ok, "{out}");
    let version = status["loaded"][1]["version"].as_str().unwrap();
    assert!(out.contains(&format!("new\t{version}\tcomplete")), "{out}");
}

/// `data/compiled/` keeps the compiled code of the versions loaded, and nothing else: after a
/// start, a new version, and a plugin deleted.
#[tokio::test]
async fn compiled_code_is_kept_only_for_loaded_versions() {
    use sha2::Digest;
    let hash = |path: &std::path::Path| -> String {
        sha2::Sha256::digest(std::fs::read(path).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    let plugins = setup.plugins_dir();
    let compiled = dir.path().join("data/compiled");
    std::fs::create_dir_all(&compiled).unwrap();
    std::fs::write(compiled.join(format!("{}.cwasm", "0".repeat(64))), b"old").unwrap();
    let cached = || -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(&compiled)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        f.sort();
        f
    };
    let server = setup.start().await;
    let a = format!("{}.cwasm", hash(&test_plugin("misbehave.wasm")));
    assert_eq!(
        cached(),
        std::slice::from_ref(&a),
        "at start, only the version loaded"
    );

    install(
        &plugins,
        "echo",
        &test_plugin("misbehave-b.wasm"),
        &echo_manifest("1"),
    );
    let b = format!("{}.cwasm", hash(&test_plugin("misbehave-b.wasm")));
    assert!(
        eventually(WAIT, || cached() == [b.clone()]).await,
        "after a new version, only it: {:?}\n{}",
        cached(),
        server.log()
    );

    std::fs::remove_file(plugins.join("echo.wasm")).unwrap();
    assert!(
        eventually(WAIT, || cached().is_empty()).await,
        "after the plugin is deleted, nothing: {:?}\n{}",
        cached(),
        server.log()
    );
}
