//! A webhook in, replies and forwards out.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_tests::{Fake, Received, Server, ServerSetup, by_path, eventually, fixture};

const WAIT: Duration = Duration::from_secs(20);

struct World {
    _dir: tempfile::TempDir,
    server: Server,
    coreapp: Fake,
    sales: Fake,
    support: Fake,
    crm: Fake,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let coreapp = Fake::coreapp().await;
    let (sales, support, crm) = (
        Fake::start().await,
        Fake::start().await,
        Fake::start().await,
    );
    let mut setup = ServerSetup::new(dir.path());
    setup.coreapp = Some(coreapp.url());
    setup.destinations = vec![
        ("sales".into(), format!("{}/hook", sales.url())),
        ("support".into(), format!("{}/hook", support.url())),
        ("crm".into(), format!("{}/hook", crm.url())),
    ];
    let server = setup.start().await;
    World {
        _dir: dir,
        server,
        coreapp,
        sales,
        support,
        crm,
    }
}

fn message_sends(coreapp: &Fake) -> Vec<Received> {
    coreapp
        .received()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path == "/v1/messages")
        .collect()
}

fn mark_reads(coreapp: &Fake) -> Vec<Received> {
    coreapp
        .received()
        .into_iter()
        .filter(|r| r.method == Method::PUT && r.path.starts_with("/v1/messages/"))
        .collect()
}

/// Wait a little longer, so that a duplicate that was going to arrive has arrived.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_text_message_gets_one_reply_one_mark_read_and_one_forward() {
    let w = world().await;
    let body = fixture("e1-text.json");
    assert_eq!(
        w.server.post(&body).await,
        (StatusCode::OK, "{}".to_string())
    );

    assert!(
        eventually(WAIT, || message_sends(&w.coreapp).len() == 1
            && mark_reads(&w.coreapp).len() == 1
            && w.support.received().len() == 1)
        .await,
        "coreapp got {:?}, support got {:?}\n{}",
        by_path(&w.coreapp.received()),
        by_path(&w.support.received()),
        w.server.log()
    );
    settle().await;

    let sends = message_sends(&w.coreapp);
    assert_eq!(sends.len(), 1, "exactly one reply");
    assert_eq!(
        sends[0].header("authorization"),
        Some("Bearer tok-1"),
        "the reply uses the login token"
    );
    assert_eq!(
        sends[0].json(),
        json!({
            "recipient_type": "individual",
            "to": "5511987650001",
            "type": "text",
            "preview_url": false,
            "text": { "body": "Thanks for your message! We will get back to you shortly." }
        })
    );
    let reads = mark_reads(&w.coreapp);
    assert_eq!(reads.len(), 1, "exactly one mark-read");
    assert_eq!(reads[0].path, "/v1/messages/ABEGVRGYdlABAgo-sKq3Yc7rN2Tz");
    assert_eq!(reads[0].json(), json!({ "status": "read" }));
    assert_eq!(
        w.coreapp.received_on("/v1/users/login").len(),
        1,
        "one login serves every call"
    );

    // keyword-router: "Hi, is the store open on Sunday?" matches no keyword: default `support`.
    let forwards = w.support.received();
    assert_eq!(forwards.len(), 1, "exactly one forward");
    assert!(w.sales.received().is_empty() && w.crm.received().is_empty());
    let fwd = forwards[0].json();
    let original: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(fwd["kind"], "message");
    assert_eq!(
        fwd["item"], original["messages"][0],
        "the forwarded item is the message as received"
    );
    assert_eq!(
        fwd["contact"], original["contacts"][0],
        "the sender's contact travels with it"
    );
    assert!(
        forwards[0]
            .header("webhook-id")
            .is_some_and(|id| id.starts_with("msg_"))
    );
}

#[tokio::test]
async fn keywords_route_to_their_destination_and_only_text_gets_a_reply() {
    let w = world().await;
    // The caption "Broken screen" contains the keyword "broken".
    assert_eq!(
        w.server.post(&fixture("e2-image.json")).await.0,
        StatusCode::OK
    );
    let order = fixture("e1-text.json")
        .replace("Hi, is the store open on Sunday?", "I want to ORDER two")
        .replace("ABEGVRGYdlABAgo-sKq3Yc7rN2Tz", "ABEGVRGYdlABAgo-order-1");
    assert_eq!(w.server.post(&order).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || w.support.received().len() == 1
            && w.sales.received().len() == 1)
        .await,
        "{}",
        w.server.log()
    );
    assert_eq!(
        w.support.received()[0].json()["item"]["image"]["caption"],
        "Broken screen"
    );
    assert_eq!(
        w.sales.received()[0].json()["item"]["text"]["body"],
        "I want to ORDER two"
    );
    assert!(eventually(WAIT, || mark_reads(&w.coreapp).len() == 1).await);
    settle().await;
    // Only the text message is read and answered; the image is not.
    assert_eq!(
        mark_reads(&w.coreapp)[0].path,
        "/v1/messages/ABEGVRGYdlABAgo-order-1"
    );
    assert_eq!(message_sends(&w.coreapp).len(), 1);
}

#[tokio::test]
async fn statuses_and_errors_reach_the_status_destination() {
    let w = world().await;
    let delivered = fixture("e16-status-sent-pricing.json").replace("\"sent\"", "\"delivered\"");
    assert_eq!(w.server.post(&delivered).await.0, StatusCode::OK);
    assert_eq!(
        w.server
            .post(&fixture("e16-status-sent-pricing.json"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        w.server.post(&fixture("e21-errors.json")).await.0,
        StatusCode::OK
    );
    assert!(
        eventually(WAIT, || w.crm.received().len() == 2).await,
        "{}",
        w.server.log()
    );
    settle().await;
    let got: Vec<Value> = w.crm.received().iter().map(Received::json).collect();
    assert_eq!(got.len(), 2, "`sent` is not forwarded by default: {got:?}");
    let status = got
        .iter()
        .find(|b| b["kind"] == "status")
        .expect("the delivered status");
    let original: Value = serde_json::from_str(&delivered).unwrap();
    assert_eq!(status["item"], original["statuses"][0]);
    let error = got
        .iter()
        .find(|b| b["kind"] == "error")
        .expect("the error");
    assert_eq!(error["item"]["code"], 400);
    assert!(w.coreapp.received().is_empty(), "statuses get no reply");
}

#[tokio::test]
async fn malformed_json_gets_400_and_the_server_keeps_serving() {
    let w = world().await;
    let (status, body) = w.server.post("{\"messages\": [").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(err["errors"][0]["title"], "Malformed JSON");
    assert!(
        err["errors"][0]["details"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );

    let (status, body) = w.server.post(r#"{"messages": {"not": "a list"}}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing to take: {body}");
    let (status, _) = w.server.post(r#"{"messages": [{"id": 5}]}"#).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an item with a field of another type is taken"
    );

    assert_eq!(
        w.server.post(&fixture("e1-text.json")).await.0,
        StatusCode::OK
    );
    assert!(
        eventually(WAIT, || w.support.received().len() == 2).await,
        "{}",
        w.server.log()
    );
    let items: Vec<Value> = w
        .support
        .received()
        .iter()
        .map(|r| r.json()["item"].clone())
        .collect();
    assert!(items.contains(&json!({ "id": 5 })), "{items:?}");
    assert_eq!(w.server.metric("webhooks_rejected_total").await, 2);
}

#[tokio::test]
async fn a_redelivered_webhook_is_acknowledged_but_handled_once() {
    let w = world().await;
    let body = fixture("e1-text.json");
    for _ in 0..3 {
        assert_eq!(w.server.post(&body).await.0, StatusCode::OK);
    }
    assert!(
        eventually(WAIT, || w.support.received().len() == 1).await,
        "{}",
        w.server.log()
    );
    settle().await;
    assert_eq!(w.support.received().len(), 1);
    assert_eq!(message_sends(&w.coreapp).len(), 1);
    assert_eq!(w.server.metric("notifications_duplicate_total").await, 2);
}

#[tokio::test]
async fn unknown_types_and_fields_are_forwarded_untouched() {
    let w = world().await;
    let body = r#"{"contacts":[{"wa_id":"5511987650009","profile":{"name":"Bo"},"future_field":1}],
        "messages":[{"from":"5511987650009","id":"ABEG-unknown-1","timestamp":"1736330400","type":"hologram",
        "hologram":{"frames":[1,2,3],"nested":{"deep":true}},"new_top_level":"kept"}],"brand_new_key":{"a":1}}"#;
    assert_eq!(w.server.post(body).await.0, StatusCode::OK);
    assert!(
        eventually(WAIT, || w.support.received().len() == 1).await,
        "{}",
        w.server.log()
    );
    let fwd = w.support.received()[0].json();
    let original: Value = serde_json::from_str(body).unwrap();
    assert_eq!(fwd["item"], original["messages"][0]);
    assert_eq!(fwd["contact"], original["contacts"][0]);
}
