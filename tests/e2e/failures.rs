//! Failures that are not a plugin's: of the host's storage while dispatching, of a destination
//! that is down for a while, of the settings. Nothing is dropped, nothing waits longer than it
//! must, and operators see what is stuck.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use switchboard_tests::{
    Fake, Server, ServerSetup, echo_manifest, eventually, free_port, install, test_plugin,
    text_message,
};

/// A text message with id `id` from `sender`.
fn message_from(sender: &str, id: &str) -> String {
    text_message(id).replace("5511987650001", sender)
}

/// Make the plugins' key-value reads fail under the running server, as a storage error would
/// (`broken`), or work again.
fn break_kv(dir: &Path, broken: bool) {
    let conn = rusqlite::Connection::open(dir.join("data/switchboard.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(if broken {
        "ALTER TABLE kv RENAME TO kv_away"
    } else {
        "ALTER TABLE kv_away RENAME TO kv"
    })
    .unwrap();
}

/// `notifications list ARGS --json`, parsed.
async fn notifications(server: &Server, args: &[&str]) -> Vec<Value> {
    let mut args = [&["notifications", "list", "--json"], args].concat();
    args.extend(["--config", "switchboard.toml"]);
    let (ok, out) = server.cli_in(&server.dir, &args).await;
    assert!(ok, "{out}");
    match serde_json::from_str(&out) {
        Ok(Value::Array(rows)) => rows,
        _ => panic!("not a JSON array:\n{out}"),
    }
}

/// What the sink received with a JSON `id`, as `(id, count)` in order of arrival.
fn counted(sink: &Fake) -> Vec<(String, u64)> {
    sink.received()
        .iter()
        .map(|r| r.json())
        .filter(|b| b.get("count").is_some())
        .map(|b| {
            (
                b["id"].as_str().unwrap().into(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn host_failures_run_the_notification_again_and_park_it_after_repeated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.destinations = vec![("sink".into(), sink.url())];
    // Messages are counted per sender in the key-value store; statuses are forwarded without it.
    std::fs::create_dir_all(setup.plugins_dir()).unwrap();
    let wasm = test_plugin("misbehave.wasm");
    install(
        &setup.plugins_dir(),
        "count",
        &wasm,
        "[config]\nmode = \"count\"\ndestination = \"sink\"\n[permissions]\ndestinations = [\"sink\"]\n\
         [subscribe]\nkinds = [\"message\"]\n",
    );
    install(
        &setup.plugins_dir(),
        "echo",
        &wasm,
        &format!("{}[subscribe]\nkinds = [\"status\"]\n", echo_manifest("1")),
    );
    setup.extra =
        "[dispatch]\nmax_attempts = 8\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\n".into();
    let mut server = setup.start().await;
    let wait = Duration::from_secs(20);

    assert_eq!(
        server.post(&message_from("111", "m1")).await.0,
        StatusCode::OK
    );
    assert!(
        eventually(wait, || counted(&sink).len() == 1).await,
        "{}",
        server.log()
    );

    // Storage fails under dispatch: the notification waits, and so does the next one of the
    // same customer; other work goes on.
    break_kv(dir.path(), true);
    for id in ["m2", "m3"] {
        assert_eq!(
            server.post(&message_from("111", id)).await.0,
            StatusCode::OK
        );
    }
    let status = r#"{"statuses":[{"id":"gBEG-status-1","recipient_id":"222","status":"sent","timestamp":"1"}]}"#;
    assert_eq!(server.post(status).await.0, StatusCode::OK);
    assert!(
        eventually(wait, || sink
            .received()
            .iter()
            .any(|r| r.json()["id"] == "gBEG-status-1"))
        .await,
        "{}",
        server.log()
    );
    let deadline = Instant::now() + wait;
    let waiting = loop {
        let rows = notifications(&server, &[]).await;
        if rows.len() == 2 && rows[0]["attempts"].as_i64() >= Some(2) {
            break rows;
        }
        assert!(Instant::now() < deadline, "{rows:?}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(waiting[0]["notification_id"], "m2");
    assert_eq!(waiting[0]["state"], "waiting");
    assert!(
        waiting[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("key-value read failed"),
        "{waiting:?}"
    );
    assert_eq!(
        (&waiting[1]["notification_id"], &waiting[1]["attempts"]),
        (&Value::from("m3"), &Value::from(0)),
        "m3 waits behind m2 without running"
    );
    let (ok, table) = server.cli(&["notifications", "list"]).await;
    assert!(
        ok && table.starts_with("ID") && table.contains("waits for an earlier"),
        "{table}"
    );
    assert_eq!(
        counted(&sink).len(),
        1,
        "nothing taken from the failed runs"
    );

    // Storage is back: both run again by themselves, once each and in order.
    break_kv(dir.path(), false);
    assert!(
        eventually(wait, || counted(&sink).len() == 3).await,
        "{}",
        server.log()
    );
    let in_order = [("m1".to_string(), 1), ("m2".into(), 2), ("m3".into(), 3)];
    assert_eq!(counted(&sink), in_order);
    assert!(notifications(&server, &[]).await.is_empty());

    // Failing again and again, a notification is parked: listed, counted, kept across a
    // restart, and run again on `notifications retry`.
    break_kv(dir.path(), true);
    assert_eq!(
        server.post(&message_from("111", "m4")).await.0,
        StatusCode::OK
    );
    let deadline = Instant::now() + wait;
    let parked = loop {
        let rows = notifications(&server, &["--parked"]).await;
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(parked[0]["notification_id"], "m4");
    assert!(parked[0]["next_attempt_at"].is_null(), "{parked:?}");
    assert_eq!(
        (&parked[0]["state"], &parked[0]["attempts"]),
        (&Value::from("parked"), &Value::from(8))
    );
    let mut gauge = 0;
    for _ in 0..100 {
        gauge = server.metric("notifications_parked").await;
        if gauge == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauge, 1);
    server.restart().await;
    assert_eq!(notifications(&server, &["--parked"]).await.len(), 1);
    break_kv(dir.path(), false);
    let id = parked[0]["id"].to_string();
    let (ok, out) = server.cli(&["notifications", "retry", &id]).await;
    assert!(ok && out.contains("1 notifications queued"), "{out}");
    assert!(
        eventually(wait, || counted(&sink).len() == 4).await,
        "{}",
        server.log()
    );
    assert_eq!(counted(&sink)[3], ("m4".to_string(), 4));
    let (ok, out) = server.cli(&["notifications", "list", "--parked"]).await;
    assert!(ok && out.contains("no parked notifications"), "{out}");
    let (ok, out) = server.cli(&["notifications", "retry", "999999"]).await;
    assert!(
        !ok && out.contains("no parked notification with id 999999"),
        "{out}"
    );
}

#[tokio::test]
async fn a_destination_back_from_an_outage_gets_its_backlog_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::with(|_| (StatusCode::SERVICE_UNAVAILABLE, "down".into())).await;
    ServerSetup::echo(dir.path(), &sink); // the plugin; the configuration is written here
    let port = free_port();
    std::fs::write(
        dir.path().join("switchboard.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[delivery]\ninitial_backoff = \"500ms\"\n\
             max_backoff = \"1m\"\ntimeout = \"2s\"\n[destinations.sink]\nurl = \"{}\"\n",
            sink.url()
        ),
    )
    .unwrap();
    let server = Server::start(
        dir.path(),
        format!("127.0.0.1:{port}").parse().unwrap(),
        &[],
    )
    .await;

    // Ten customers' forwards fail until each has failed six times: their next retries are
    // 8 to 16 s away (500 ms doubled five times, with jitter).
    let ids: Vec<String> = (0..10).map(|i| format!("outage-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let body = message_from(&format!("3330{i}"), id);
        assert_eq!(server.post(&body).await.0, StatusCode::OK);
    }
    let attempts = |sink: &Fake| {
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        for r in sink.received() {
            *by_id
                .entry(r.json()["id"].as_str().unwrap().into())
                .or_default() += 1;
        }
        by_id
    };
    assert!(
        eventually(Duration::from_secs(60), || {
            let a = attempts(&sink);
            ids.iter().all(|id| a.get(id).is_some_and(|n| *n >= 6))
        })
        .await,
        "{:?}\n{}",
        attempts(&sink),
        server.log()
    );

    // It answers again, and a fresh forward gets through: the backlog follows within seconds,
    // not each row at the end of its own backoff.
    sink.respond(|_| (StatusCode::OK, "{}".into()));
    let before = sink.received().len();
    assert_eq!(
        server.post(&message_from("44400", "fresh")).await.0,
        StatusCode::OK
    );
    let delivered = || {
        sink.received()[before..]
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(5), || ids
            .iter()
            .all(|id| delivered().contains(id)))
        .await,
        "after the recovery only {:?} arrived within 5 s\n{}",
        delivered(),
        server.log()
    );
}

#[tokio::test]
async fn a_manifest_granting_an_unknown_destination_is_reported_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    install(
        &setup.plugins_dir(),
        "echo",
        &test_plugin("misbehave.wasm"),
        &echo_manifest("1").replace("[\"sink\"]", "[\"sink\", \"crm\"]"),
    );
    let server = setup.start().await;
    let plugins: Value = server.get_json("/plugins").await;
    let warning = plugins["warnings"]["echo"].as_str().unwrap_or_default();
    assert!(
        warning.contains("\"crm\"") && !warning.contains("sink"),
        "{plugins}"
    );
    assert!(
        server.log().contains("with no [destinations.NAME]"),
        "{}",
        server.log()
    );
    assert_eq!(
        plugins["loaded"].as_array().unwrap().len(),
        1,
        "it still serves"
    );
}
