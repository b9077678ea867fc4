//! Durable delivery: nothing lost between the Coreapp and the destinations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_tests::{Fake, ServerSetup, eventually, text_message};

fn message(id: usize) -> String {
    text_message(&format!("ABEG-durable-{id}"))
}

#[tokio::test]
async fn a_crash_and_a_destination_outage_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The destination is down (503) for the first part of the test.
    let sink = Fake::with(|_| (StatusCode::SERVICE_UNAVAILABLE, "down".into())).await;
    let mut setup = ServerSetup::echo(dir.path(), &sink);
    // Fewer rows in memory than the outage's backlog: the rest waits in the database and is
    // loaded, in order, as the queue drains.
    setup.delivery_extra = "max_in_memory = 40\n".into();
    let mut server = setup.start().await;

    // A bounded stream of webhooks; the server is killed with SIGKILL halfway. Like the Coreapp,
    // the client retries a webhook until it gets 200.
    const TOTAL: usize = 200;
    let mut acknowledged = BTreeSet::new();
    for id in 0..TOTAL {
        if id == TOTAL / 2 {
            server.restart().await; // SIGKILL, then start again on the same data
        }
        for _attempt in 0..100 {
            let ok = tokio::time::timeout(Duration::from_secs(5), server.post(&message(id))).await;
            if matches!(ok, Ok((StatusCode::OK, _))) {
                acknowledged.insert(format!("ABEG-durable-{id}"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(acknowledged.len(), TOTAL);
    assert!(
        !sink.received().is_empty(),
        "deliveries were attempted during the outage"
    );

    // The destination comes back.
    sink.respond(|_| (StatusCode::OK, "{}".into()));
    let delivered = || {
        sink.received()
            .iter()
            .filter(|r| r.json().get("id").is_some())
            .map(|r| {
                (
                    r.json()["id"].as_str().unwrap().to_string(),
                    r.header("webhook-id").unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let all_in = eventually(Duration::from_secs(60), || {
        delivered()
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
            .is_superset(&acknowledged)
    })
    .await;
    assert!(
        all_in,
        "every acknowledged webhook reaches the destination after the outage:\n{}",
        server.log()
    );
    // Attempts of one notification all carry the same webhook-id, and different notifications
    // different ones, so the receiver can deduplicate.
    let mut ids_by_webhook: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, webhook_id) in delivered() {
        ids_by_webhook.entry(webhook_id).or_default().insert(id);
    }
    assert_eq!(ids_by_webhook.len(), TOTAL);
    assert!(ids_by_webhook.values().all(|ids| ids.len() == 1));
    assert!(
        server.metric("deliveries_retried_total").await > 0
            || server.log().contains("will be retried")
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::with(|_| (StatusCode::BAD_REQUEST, r#"{"error":"bad payload"}"#.into())).await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    let server = setup.start().await;
    assert_eq!(server.post(&message(1)).await.0, StatusCode::OK);

    // A 400 is not retried: the delivery is dead at once, with the response kept.
    let (mut ok, mut listing) = (false, String::new());
    for _ in 0..200 {
        (ok, listing) = server.cli(&["deliveries", "list", "--dead"]).await;
        if listing.contains("bad payload") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "{listing}");
    assert!(listing.contains("400 Bad Request"), "{listing}");
    assert_eq!(sink.received().len(), 1, "a 4xx is not retried");
    // A table with a header, times a person reads, and one line per row.
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].starts_with("ID  ") && lines[0].contains("CREATED"),
        "{listing}"
    );
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[1].contains("Z (") && lines[1].contains("s ago)"),
        "{listing}"
    );
    // And JSON for scripts, with stable names and times both ways.
    let (ok, json) = server
        .cli(&["deliveries", "list", "--dead", "--json"])
        .await;
    assert!(ok, "{json}");
    let rows: serde_json::Value = serde_json::from_str(&json).expect("a JSON array");
    let row = &rows.as_array().expect("an array")[0];
    assert_eq!(
        (&row["state"], &row["kind"], &row["target"]),
        (&"dead".into(), &"forward".into(), &"sink".into())
    );
    assert_eq!(row["attempts"], 1);
    assert!(
        row["next_attempt_at"].is_null(),
        "a dead letter has no next attempt: {row}"
    );
    assert!(row["last_error"].as_str().unwrap().contains("bad payload"));
    let created_ms = row["created_at_ms"].as_i64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now_ms - 120_000..=now_ms).contains(&created_ms), "{row}");
    let created = row["created_at"].as_str().unwrap();
    assert!(
        created.len() == 20 && created.ends_with('Z') && &created[10..11] == "T",
        "{created}"
    );
    let id = row["id"].to_string();

    sink.respond(|_| (StatusCode::OK, "{}".into()));
    let (ok, out) = server.cli(&["deliveries", "retry", &id]).await;
    assert!(ok && out.contains("1 deliveries queued again"), "{out}");
    assert!(
        eventually(Duration::from_secs(20), || sink.received().len() == 2).await,
        "{}",
        server.log()
    );
    assert!(
        server
            .cli(&["deliveries", "list", "--dead"])
            .await
            .1
            .contains("no dead deliveries")
    );
    let (ok, out) = server.cli(&["deliveries", "retry", "12345"]).await;
    assert!(
        !ok && out.contains("no dead delivery with id 12345"),
        "{out}"
    );
}

#[tokio::test]
async fn forwards_are_signed_with_standard_webhooks_headers() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let mut setup = ServerSetup::echo(dir.path(), &sink);
    setup.destinations.clear(); // declared below, with its secret
    setup.extra = format!(
        "[destinations.sink]\nurl = \"{}\"\nsecret_env = \"SINK_SECRET\"\n",
        sink.url()
    );
    setup.env = vec![(
        "SINK_SECRET".into(),
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
    )];
    let server = setup.start().await;
    assert_eq!(server.post(&message(7)).await.0, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(20), || sink.received().len() == 1).await,
        "{}",
        server.log()
    );

    let r = &sink.received()[0];
    let (id, ts) = (
        r.header("webhook-id").unwrap(),
        r.header("webhook-timestamp").unwrap(),
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    assert_eq!(r.header("webhook-signature"), Some(expected.as_str()));
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = ServerSetup::echo(dir.path(), &sink);
    let mut server = setup.start().await;
    for id in 0..20 {
        assert_eq!(server.post(&message(id)).await.0, StatusCode::OK);
    }
    assert!(
        server.terminate(),
        "exit status 0 after SIGTERM:\n{}",
        server.log()
    );
    // What was accepted before the signal is delivered by now, or on the next start.
    let server = setup.start().await;
    assert!(
        eventually(Duration::from_secs(20), || sink.received().len() >= 20).await,
        "{}",
        server.log()
    );
}
