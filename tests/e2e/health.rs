//! Health that means something: readiness and liveness, the backlog gauges, and one login to
//! the Coreapp however many calls its 401s refuse at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::Value;
use switchboard_tests::{
    Fake, Server, ServerSetup, eventually, http, install, test_plugin, text_message,
};

const WAIT: Duration = Duration::from_secs(20);

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let r = http().get(server.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Poll `path` until it answers `status` (bounded by [`WAIT`]); returns its last body.
async fn until_status(server: &Server, path: &str, status: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = get(server, path).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stayed {got} ({body}), not {status}:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics(server: &Server) -> String {
    server.get_text("/metrics").await
}

fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("switchboard_{series} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn readiness_fails_while_the_database_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = ServerSetup::echo(dir.path(), &sink).start().await;
    let (status, body) = get(&server, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");

    // The data folder disappears (an unmounted volume, say).
    let (data, moved) = (dir.path().join("data"), dir.path().join("data-away"));
    std::fs::rename(&data, &moved).unwrap();
    let body = until_status(&server, "/health/ready", 503).await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["storage"]["ok"], false, "{body}");
    let reason = body["checks"]["storage"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("switchboard"),
        "the reason names the file: {body}"
    );
    assert_eq!(get(&server, "/health").await.0, 503, "/health is readiness");
    assert_eq!(
        get(&server, "/health/live").await.0,
        200,
        "alive: a restart would not bring the files back"
    );
    let m = metrics(&server).await;
    assert_eq!(gauge(&m, "storage_ok"), Some(0.0), "{m}");

    std::fs::rename(&moved, &data).unwrap();
    let body = until_status(&server, "/health/ready", 200).await;
    assert_eq!(body["checks"]["storage"]["ok"], true, "{body}");
}

#[tokio::test]
async fn liveness_and_readiness_fail_while_dispatch_is_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.server_extra = "dispatch_stall_timeout = \"1s\"\n".into();
    std::fs::create_dir_all(setup.plugins_dir()).unwrap();
    // A plugin that spins for 4 s of CPU time on every call holds dispatch that long.
    install(
        &setup.plugins_dir(),
        "spin",
        &test_plugin("misbehave.wasm"),
        "[config]\nmode = \"loop\"\n[limits]\ntimeout_ms = 4000\n",
    );
    let server = setup.start().await;
    assert_eq!(get(&server, "/health/live").await.0, 200);

    let (status, _) = server.post(&text_message("wamid.stuck")).await;
    assert_eq!(status, 200);
    let body = until_status(&server, "/health/live", 503).await;
    let reason = body["checks"]["dispatch"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("no progress") && reason.contains("1 notifications wait"),
        "{body}"
    );
    let (status, ready) = get(&server, "/health/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["checks"]["dispatch"]["ok"], false, "{ready}");
    assert_eq!(ready["checks"]["storage"]["ok"], true, "{ready}");

    // The call hits its limit and fails; dispatch goes on and health comes back.
    until_status(&server, "/health/live", 200).await;
    until_status(&server, "/health/ready", 200).await;
}

#[tokio::test]
async fn gauges_count_what_waits_for_a_destination_that_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::with(|_| (StatusCode::SERVICE_UNAVAILABLE, "down".into())).await;
    let mut setup = ServerSetup::echo(dir.path(), &sink);
    setup.delivery_extra = "horizon = \"1h\"\n".into();
    let server = setup.start().await;
    for i in 0..3 {
        let (status, _) = server.post(&text_message(&format!("wamid.down-{i}"))).await;
        assert_eq!(status, 200);
    }
    let deadline = Instant::now() + WAIT;
    let m = loop {
        let m = metrics(&server).await;
        if gauge(&m, "outbox_pending{destination=\"sink\"}") == Some(3.0)
            && gauge(&m, "inbox_backlog") == Some(0.0)
        {
            break m;
        }
        assert!(Instant::now() < deadline, "{m}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        gauge(&m, "outbox_oldest_age_seconds{destination=\"sink\"}").is_some_and(|a| a > 0.0),
        "{m}"
    );
    assert_eq!(gauge(&m, "inbox_oldest_age_seconds"), Some(0.0), "{m}");
    assert_eq!(gauge(&m, "dead_letters"), Some(0.0), "{m}");
    assert_eq!(gauge(&m, "storage_ok"), Some(1.0), "{m}");

    // The destination now refuses them for good: they become dead letters.
    sink.respond(|_| (StatusCode::BAD_REQUEST, "no".into()));
    let deadline = Instant::now() + WAIT;
    loop {
        let m = metrics(&server).await;
        if gauge(&m, "dead_letters") == Some(3.0) {
            assert_eq!(
                gauge(&m, "outbox_pending{destination=\"sink\"}"),
                None,
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{m}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Coreapp that keeps one token per user: each login gives a new token and revokes the
/// previous one. Returns the fake, the count of logins, and a switch that revokes the token.
async fn single_token_coreapp() -> (Fake, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let logins = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(AtomicUsize::new(0));
    let (l, v) = (logins.clone(), valid.clone());
    let fake = Fake::with(move |r| {
        const DENIED: &str = r#"{"errors":[{"code":1005,"title":"Access denied"}]}"#;
        if r.path == "/v1/users/login" {
            let n = l.fetch_add(1, Ordering::SeqCst) + 1;
            v.store(n, Ordering::SeqCst);
            return (
                StatusCode::OK,
                format!(r#"{{"users":[{{"token":"tok-{n}","expires_after":"2030-01-01 00:00:00+00:00"}}]}}"#),
            );
        }
        let token = format!("Bearer tok-{}", v.load(Ordering::SeqCst));
        if r.header("authorization") != Some(token.as_str()) {
            return (StatusCode::UNAUTHORIZED, DENIED.into());
        }
        if r.method == Method::POST && r.path == "/v1/messages" {
            return (StatusCode::OK, r#"{"messages":[{"id":"gBEGk"}]}"#.into());
        }
        (StatusCode::OK, "{}".into())
    })
    .await;
    (fake, logins, valid)
}

#[tokio::test]
async fn concurrent_401s_lead_to_one_login() {
    let dir = tempfile::tempdir().unwrap();
    let (coreapp, logins, valid) = single_token_coreapp().await;
    let mut setup = ServerSetup::new(dir.path());
    setup.coreapp = Some(coreapp.url());
    let server = setup.start().await;
    let from_customer = |i: usize| {
        text_message(&format!("wamid.login-{i}")).replace("5511987650001", &format!("55119{i:08}"))
    };

    // A first reply logs in.
    let (status, _) = server.post(&from_customer(0)).await;
    assert_eq!(status, 200);
    let sends = |coreapp: &Fake| {
        coreapp
            .received()
            .iter()
            .filter(|r| r.method == Method::POST && r.path == "/v1/messages")
            .filter(|r| r.header("authorization").is_some())
            .count()
    };
    assert!(
        eventually(WAIT, || logins.load(Ordering::SeqCst) == 1
            && sends(&coreapp) >= 1)
        .await,
        "{}",
        server.log()
    );

    // The token is revoked; 20 customers write at once: their 20 replies and 20 mark-reads
    // go out together, each in its own lane, and are refused together.
    valid.store(0, Ordering::SeqCst);
    let posts: Vec<_> = (1..=20)
        .map(|i| {
            let (url, body) = (server.url("/webhook"), from_customer(i));
            tokio::spawn(async move {
                http()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.unwrap().unwrap(), 200);
    }
    let delivered = |coreapp: &Fake| {
        let token = format!("Bearer tok-{}", valid.load(Ordering::SeqCst));
        coreapp
            .received()
            .iter()
            .filter(|r| r.path.starts_with("/v1/messages"))
            .filter(|r| r.header("authorization") == Some(token.as_str()))
            .count()
    };
    assert!(
        eventually(WAIT, || delivered(&coreapp) >= 40).await,
        "delivered {} with the newest token, after {} logins:\n{}",
        delivered(&coreapp),
        logins.load(Ordering::SeqCst),
        server.log()
    );
    assert_eq!(
        logins.load(Ordering::SeqCst),
        2,
        "one login at start, one after the revocation"
    );
}
