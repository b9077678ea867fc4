//! Typed sends of 0.2.0 plugins: every kind out through both APIs, validation and the window
//! before anything is queued, WhatsApp's error codes, pacing, and a chain mixing contracts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_sdk::send::{Contact, MediaSource, Row, Section, Send, TemplateParameter};
use switchboard_tests::{
    Fake, Received, Server, ServerSetup, build, cloud_fixture, coreapp, eventually, fixture,
    install, test_plugin, text_message,
};

use crate::ingress::sign;

const WAIT: Duration = Duration::from_secs(20);
/// The sender of the On-Premises text fixture.
const ANA: &str = "5511987650001";
/// The sender of the Cloud text fixture, and the business number it came in on.
const KERRY: &str = "16315551181";
const CLOUD_NUMBER: &str = "106540352242922";
const NAMESPACE: &str = "ns-shop";

/// A server with both APIs faked, `[whatsapp]` carrying `whatsapp_extra`, and no plugins yet.
struct World {
    _dir: tempfile::TempDir,
    coreapp: Fake,
    graph: Fake,
    setup: ServerSetup,
}

async fn world(coreapp: Fake, whatsapp_extra: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let graph = Fake::start().await;
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.extra = format!(
        r#"
[whatsapp]
base_url = "{}"
username = "admin"
password = "secret"
namespace = "{NAMESPACE}"
{whatsapp_extra}

[whatsapp.cloud]
base_url = "{}/v21.0"
token_env = "CLOUD_TOKEN"

[[server.endpoints]]
name = "cloud"
path = "/cloud"
kind = "cloud"
app_secret_env = "APP_SECRET"
"#,
        coreapp.url(),
        graph.url()
    );
    setup.env = vec![
        ("CLOUD_TOKEN".into(), "EAAG-token".into()),
        ("APP_SECRET".into(), "app-secret".into()),
    ];
    std::fs::create_dir_all(setup.plugins_dir()).unwrap();
    World {
        _dir: dir,
        coreapp,
        graph,
        setup,
    }
}

/// Install `misbehave-v2` as `name`, sending `sends` (to the notification's sender when their
/// `to` is empty) for the notification kinds `kinds`; `extra` goes at the end of the manifest.
fn install_sender(world: &World, name: &str, sends: &[Send], kinds: &str, extra: &str) {
    install_sender_to(world, name, sends, kinds, "sender", extra)
}

/// [`install_sender`], with `[permissions] reply_to` set to `reply_to`.
fn install_sender_to(
    world: &World,
    name: &str,
    sends: &[Send],
    kinds: &str,
    reply_to: &str,
    extra: &str,
) {
    let sends: Vec<Value> = sends
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap();
            if v["to"] == "" {
                v.as_object_mut().unwrap().remove("to");
            }
            v
        })
        .collect();
    let manifest = format!(
        "[config]\nmode = \"send\"\ntyping = true\nsends_json = '''{}'''\n\
         [permissions]\nreply = true\nreply_to = \"{reply_to}\"\n[subscribe]\nkinds = [{kinds}]\n{extra}\n",
        Value::Array(sends)
    );
    install(
        &world.setup.plugins_dir(),
        name,
        &test_plugin("misbehave-v2.wasm"),
        &manifest,
    );
}

fn messages_posted(coreapp: &Fake) -> Vec<Value> {
    coreapp
        .received_on("/v1/messages")
        .iter()
        .filter(|r| r.method == Method::POST)
        .map(Received::json)
        .collect()
}

async fn post_cloud(server: &Server, body: &str) {
    let status = switchboard_tests::http()
        .post(server.url("/cloud"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign("app-secret", body))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
}

/// A send of every kind, to the notification's sender.
fn every_kind() -> Vec<Send> {
    vec![
        Send::text("", "Open 9-18 https://shop.example/hours")
            .preview_url(true)
            .reply_to("wamid.Q1")
            .build(),
        Send::template("", "order_update", "pt_BR")
            .body([
                TemplateParameter::text("5531"),
                TemplateParameter::currency("R$ 12,50", "BRL", 12_500),
            ])
            .build(),
        Send::buttons("", "Confirm your 14:00 slot?")
            .button("confirm_yes", "Yes")
            .button("confirm_no", "No")
            .build(),
        Send::list("", "Pick a store", "Stores")
            .section(
                Section::new("São Paulo")
                    .row(Row::new("sp_paulista", "Paulista Ave").description("Open late")),
            )
            .build(),
        Send::cta_url(
            "",
            "Track your order",
            "Track",
            "https://shop.example/t/5531",
        )
        .build(),
        Send::flow("", "Book a visit", "1234567890", "Book")
            .navigate("WELCOME", Some(json!({ "store": "sp" })))
            .build(),
        Send::image("", MediaSource::link("https://shop.example/p.jpg"))
            .caption("New in")
            .build(),
        Send::video("", MediaSource::id("1166846181421424")).build(),
        Send::audio("", MediaSource::id("2166846181421425")).build(),
        Send::document("", MediaSource::link("https://shop.example/r.pdf"))
            .filename("receipt.pdf")
            .build(),
        Send::sticker("", MediaSource::id("3166846181421426")).build(),
        Send::location("", -23.5613, -46.6565)
            .name("Paulista store")
            .address("Av. Paulista, 1000")
            .build(),
        Send::contacts("")
            .contact(Contact::new("Shop support").phone("+55 11 5555-0100"))
            .build(),
        Send::reaction("", "wamid.Q1", "👍").build(),
        Send::raw(
            "",
            json!({ "type": "text", "text": { "body": "raw hello" } }),
        )
        .build(),
    ]
}

fn addressed(send: &Send, to: &str) -> Send {
    let mut v = serde_json::to_value(send).unwrap();
    v["to"] = to.into();
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn every_send_kind_reaches_both_apis_in_their_shapes_through_a_plugin() {
    let world = world(Fake::coreapp().await, "").await;
    install_sender(&world, "sender", &every_kind(), "\"message\"", "");
    let server = world.setup.start().await;
    let kinds = every_kind().len();

    // On-Premises: a text message in, every kind out, then the mark-read.
    let (status, _) = server.post(&fixture("e1-text.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        eventually(WAIT, || messages_posted(&world.coreapp).len() == kinds).await,
        "{}",
        server.log()
    );
    let posted = messages_posted(&world.coreapp);
    for (send, body) in every_kind().iter().zip(&posted) {
        let expected = addressed(send, ANA).to_onprem(Some(NAMESPACE)).unwrap();
        assert_eq!(body, &expected);
    }
    // The reference's shapes, written out: the template takes the configured namespace.
    assert_eq!(
        posted[1],
        json!({"recipient_type":"individual","to":ANA,"type":"template","template":{
            "namespace":NAMESPACE,"name":"order_update","language":{"policy":"deterministic","code":"pt_BR"},
            "components":[{"type":"body","parameters":[{"type":"text","text":"5531"},
                {"type":"currency","currency":{"fallback_value":"R$ 12,50","code":"BRL","amount_1000":12500}}]}]}})
    );
    assert_eq!(
        posted[2],
        json!({"recipient_type":"individual","to":ANA,"type":"interactive",
            "interactive":{"type":"button","body":{"text":"Confirm your 14:00 slot?"},
            "action":{"buttons":[{"type":"reply","reply":{"id":"confirm_yes","title":"Yes"}},
                                 {"type":"reply","reply":{"id":"confirm_no","title":"No"}}]}}})
    );
    assert!(
        eventually(WAIT, || world
            .coreapp
            .received_on("/v1/messages/ABEGVRGYdlABAgo-sKq3Yc7rN2Tz")
            .len()
            == 1)
        .await,
        "the mark-read"
    );

    // Cloud: the same sends from the business number the message came in on, and the
    // mark-read with the typing indicator.
    post_cloud(&server, &cloud_fixture("text.json")).await;
    let path = format!("/v21.0/{CLOUD_NUMBER}/messages");
    assert!(
        eventually(WAIT, || world.graph.received_on(&path).len() == kinds + 1).await,
        "{}",
        server.log()
    );
    let calls: Vec<Value> = world
        .graph
        .received_on(&path)
        .iter()
        .map(Received::json)
        .collect();
    for (send, body) in every_kind().iter().zip(&calls) {
        assert_eq!(body, &addressed(send, KERRY).to_cloud());
    }
    assert_eq!(
        calls[0],
        json!({"messaging_product":"whatsapp","recipient_type":"individual","to":KERRY,"type":"text",
            "text":{"preview_url":true,"body":"Open 9-18 https://shop.example/hours"},
            "context":{"message_id":"wamid.Q1"}})
    );
    let read = &calls[kinds];
    assert_eq!(read["status"], "read");
    assert_eq!(read["typing_indicator"], json!({ "type": "text" }));
}

#[tokio::test]
async fn a_chain_mixes_0_1_0_and_0_2_0_plugins_and_an_invalid_send_is_refused_with_its_reason() {
    let sink = Fake::start().await;
    let mut world = world(Fake::coreapp().await, "").await;
    world.setup.destinations = vec![("sink".into(), sink.url())];
    install(
        &world.setup.plugins_dir(),
        "10-old",
        &test_plugin("misbehave.wasm"),
        &switchboard_tests::echo_manifest("old"),
    );
    let four_buttons = (0..4).fold(Send::buttons("", "Too many?"), |d, i| {
        d.button(format!("b{i}"), format!("B{i}"))
    });
    install_sender(
        &world,
        "20-new",
        &[
            four_buttons.build(),
            Send::text("", "Hello from 0.2.0").build(),
        ],
        "\"message\"",
        "",
    );
    let server = world.setup.start().await;
    let plugins = server.get_json("/plugins").await;
    let versions: Vec<&str> = plugins["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["api_version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.1.0", "0.2.0"]);

    server.post(&text_message("wamid.MIX1")).await;
    assert!(
        eventually(WAIT, || sink.received().len() == 1).await,
        "{}",
        server.log()
    );
    assert_eq!(sink.received()[0].json()["config"], "old");
    assert!(eventually(WAIT, || messages_posted(&world.coreapp).len() == 1).await);
    assert!(eventually(WAIT, || server.log().contains("send refused")).await);
    // Give a wrongly queued send the time to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posted = messages_posted(&world.coreapp);
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0]["text"]["body"], "Hello from 0.2.0");
    let log = server.log();
    assert!(
        log.contains("invalid: the buttons message has 4 buttons: WhatsApp allows at most 3"),
        "{log}"
    );
    assert_eq!(server.metric("sends_refused_total").await, 1);
}

/// A status of the On-Premises API for `recipient`, with status id `id`.
fn status_for(recipient: &str, id: &str) -> String {
    fixture("e16-status-sent-pricing.json")
        .replace(ANA, recipient)
        .replace("gBEGVRGYdlABAgmNq1sK2dPz8Xw", id)
}

#[tokio::test]
async fn a_closed_window_refuses_a_free_form_send_or_sends_a_fallback_template() {
    const BRUNO: &str = "5511987650077";
    let world = world(Fake::coreapp().await, "").await;
    let text = [Send::text("", "Your order shipped").build()];
    install_sender(
        &world,
        "a-fallback",
        &text,
        "\"status\"",
        "[sends.window_fallback]\nname = \"order_shipped\"\nlanguage = \"en_US\"\nbody = [\"5531\"]\n",
    );
    install_sender(&world, "b-plain", &text, "\"status\"", "");
    // Its send's own fallback wins over its manifest's.
    let own = [Send::text("", "Your order shipped")
        .or_template(Send::template("", "shipping_update", "en_US"))
        .build()];
    install_sender(
        &world,
        "c-own",
        &own,
        "\"status\"",
        "[sends.window_fallback]\nname = \"order_shipped\"\nlanguage = \"en_US\"\n",
    );
    let server = world.setup.start().await;

    // Bruno never wrote: his window is closed.
    server.post(&status_for(BRUNO, "gBEG.status.1")).await;
    assert!(
        eventually(WAIT, || messages_posted(&world.coreapp).len() == 2).await,
        "{}",
        server.log()
    );
    assert!(eventually(WAIT, || server.log().contains("window-closed")).await);
    let posted = messages_posted(&world.coreapp);
    let template = |name: &str| {
        posted
            .iter()
            .find(|b| b["template"]["name"] == name)
            .cloned()
    };
    assert_eq!(
        template("order_shipped"),
        Some(
            json!({"recipient_type":"individual","to":BRUNO,"type":"template","template":{
            "namespace":NAMESPACE,"name":"order_shipped","language":{"policy":"deterministic","code":"en_US"},
            "components":[{"type":"body","parameters":[{"type":"text","text":"5531"}]}]}})
        ),
        "{posted:?}"
    );
    assert_eq!(
        template("shipping_update"),
        Some(
            json!({"recipient_type":"individual","to":BRUNO,"type":"template","template":{
            "namespace":NAMESPACE,"name":"shipping_update","language":{"policy":"deterministic","code":"en_US"}}})
        ),
        "{posted:?}"
    );
    assert_eq!(server.metric("sends_refused_total").await, 1);
    assert_eq!(server.metric("sends_fell_back_total").await, 2);

    // Once he writes, the window is open and the plugins' texts go out as they are.
    server
        .post(&text_message("wamid.BRUNO1").replace(ANA, BRUNO))
        .await;
    server.post(&status_for(BRUNO, "gBEG.status.2")).await;
    assert!(
        eventually(WAIT, || messages_posted(&world.coreapp).len() == 5).await,
        "{}",
        server.log()
    );
    let posted = messages_posted(&world.coreapp);
    assert!(
        posted[2..]
            .iter()
            .all(|b| b["type"] == "text" && b["to"] == BRUNO),
        "{posted:?}"
    );
    assert_eq!(server.metric("sends_refused_total").await, 1);
}

#[tokio::test]
async fn error_codes_back_off_one_recipient_while_others_are_served_or_dead_letter() {
    const PAIR_LIMITED: &str = "5511987650011";
    const SERVED: &str = "5511987650022";
    const GONE: &str = "5511987650033";
    let pair_errors = Arc::new(AtomicUsize::new(0));
    let seen = pair_errors.clone();
    let fake = Fake::with(move |r| {
        if r.method == Method::POST && r.path == "/v1/messages" {
            let to = r.json()["to"].as_str().unwrap_or_default().to_string();
            if to == PAIR_LIMITED && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return (
                    StatusCode::BAD_REQUEST,
                    r#"{"errors":[{"code":131056,"title":"(Business Account, Consumer Account) pair rate limit hit"}]}"#.into(),
                );
            }
            if to == GONE {
                return (
                    StatusCode::BAD_REQUEST,
                    r#"{"errors":[{"code":131026,"title":"Message undeliverable"}]}"#.into(),
                );
            }
        }
        coreapp(r)
    })
    .await;
    let world = world(fake, "").await;
    install_sender(
        &world,
        "sender",
        &[Send::text("", "We got your message").build()],
        "\"message\"",
        "",
    );
    let server = world.setup.start().await;

    server
        .post(&text_message("wamid.P1").replace(ANA, PAIR_LIMITED))
        .await;
    assert!(eventually(WAIT, || pair_errors.load(Ordering::SeqCst) == 1).await);
    server
        .post(&text_message("wamid.S1").replace(ANA, SERVED))
        .await;
    server
        .post(&text_message("wamid.G1").replace(ANA, GONE))
        .await;
    assert!(
        eventually(WAIT, || pair_errors.load(Ordering::SeqCst) == 2).await,
        "the backed-off recipient is sent to again: {}",
        server.log()
    );
    let to: Vec<String> = messages_posted(&world.coreapp)
        .iter()
        .map(|b| b["to"].as_str().unwrap().to_string())
        .collect();
    let served = to.iter().position(|t| t == SERVED).expect("served");
    let retried = to.iter().rposition(|t| t == PAIR_LIMITED).unwrap();
    assert!(
        served < retried,
        "the other recipient is served while the first one is backed off: {to:?}"
    );

    // The undeliverable one is dead-lettered at once, with WhatsApp's code and title.
    let (ok, dead) = server
        .cli(&["deliveries", "list", "--dead", "--json"])
        .await;
    assert!(ok, "{dead}");
    let dead: Value = serde_json::from_str(&dead).unwrap();
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("131026") && error.contains("Message undeliverable"),
        "{error}"
    );
    assert_eq!(dead[0]["attempts"], 1);
}

#[tokio::test]
async fn a_burst_of_sends_from_one_number_is_paced_at_its_configured_rate() {
    const RATE: f64 = 5.0;
    const SENDS: usize = 6;
    let world = world(
        Fake::coreapp().await,
        &format!("[whatsapp.rates]\nonprem = {RATE}"),
    )
    .await;
    // Each to another recipient: their lanes would go out at once if not paced.
    let sends: Vec<Send> = (0..SENDS)
        .map(|i| Send::text(format!("55119876501{i:02}"), "Flash sale today").build())
        .collect();
    install_sender_to(&world, "burst", &sends, "\"message\"", "any", "");
    let server = world.setup.start().await;
    let started = Instant::now();
    server.post(&text_message("wamid.BURST1")).await;
    assert!(
        eventually(WAIT, || messages_posted(&world.coreapp).len() == SENDS).await,
        "{}",
        server.log()
    );
    let took = started.elapsed();
    let least = Duration::from_secs_f64((SENDS - 1) as f64 / RATE);
    assert!(
        took >= least,
        "{SENDS} sends at {RATE}/s took {took:?}, less than {least:?}"
    );
}

#[tokio::test]
async fn menu_bot_answers_a_greeting_with_its_list_and_routes_the_choice() {
    let (sales, support) = (Fake::start().await, Fake::start().await);
    let mut world = world(Fake::coreapp().await, "").await;
    world.setup.destinations = vec![
        ("sales".into(), sales.url()),
        ("support".into(), support.url()),
    ];
    let plugins = build();
    install(
        &world.setup.plugins_dir(),
        "menu-bot",
        &plugins.join("menu-bot.wasm"),
        &std::fs::read_to_string(plugins.join("menu-bot.toml")).unwrap(),
    );
    let server = world.setup.start().await;

    let greeting = text_message("wamid.HELLO1").replace("Hi, is the store open on Sunday?", "hi");
    assert!(greeting.contains("\"hi\""), "the fixture's text changed");
    server.post(&greeting).await;
    assert!(
        eventually(WAIT, || messages_posted(&world.coreapp).len() == 1).await,
        "{}",
        server.log()
    );
    let menu = &messages_posted(&world.coreapp)[0];
    assert_eq!(menu["to"], ANA);
    assert_eq!(menu["interactive"]["type"], "list");
    let rows = &menu["interactive"]["action"]["sections"][0]["rows"];
    assert_eq!(rows[1]["id"], "support");

    let choice = fixture("message-interactive-list-reply.json").replace("slot_sat_10", "support");
    server.post(&choice).await;
    assert!(
        eventually(WAIT, || support.received().len() == 1).await,
        "{}",
        server.log()
    );
    let routed = support.received()[0].json();
    assert_eq!(routed["customer"], ANA);
    assert_eq!(routed["choice"], "support");
    assert!(sales.received().is_empty());
    assert!(eventually(WAIT, || messages_posted(&world.coreapp).len() == 2).await);
    let confirm = &messages_posted(&world.coreapp)[1];
    assert_eq!(confirm["type"], "text");
    assert_eq!(
        confirm["context"]["message_id"],
        "ABEGVRGYdlABAgo-sL8pRz6hB9Qg"
    );
}

#[tokio::test]
async fn a_failed_status_is_joined_to_the_plugins_send_and_listed_with_its_error() {
    let sink = Fake::start().await;
    let mut world = world(Fake::coreapp().await, "").await;
    world.setup.destinations = vec![("sink".into(), sink.url())];
    world.setup.extra += "[admin]\ntoken_env = \"SWITCHBOARD_ADMIN_TOKEN\"\n";
    world.setup.env.push((
        "SWITCHBOARD_ADMIN_TOKEN".into(),
        crate::console::TOKEN.into(),
    ));
    install_sender(
        &world,
        "10-sender",
        &[Send::text("", "Your order shipped").build()],
        "\"message\"",
        "",
    );
    install(
        &world.setup.plugins_dir(),
        "20-watch",
        &test_plugin("misbehave-v2.wasm"),
        "[config]\nmode = \"sent-by\"\ndestination = \"sink\"\n\
         [permissions]\ndestinations = [\"sink\"]\n[subscribe]\nkinds = [\"status\"]\n",
    );
    let server = world.setup.start().await;

    server.post(&text_message("wamid.ORDER1")).await;
    // The fake Coreapp gives every message this id.
    let wa_id = "gBEGkYiEB1VXAglK1ZEqA1YKPrU";
    let listed = sends_until(&server, |rows| rows[0]["whatsapp_id"] == wa_id).await;
    assert_eq!(listed[0]["plugin"], "10-sender");
    assert_eq!(listed[0]["notification_id"], "wamid.ORDER1");
    assert_eq!(listed[0]["status"], Value::Null);
    let delivery_id = listed[0]["delivery_id"].clone();

    let failed = fixture("e19-status-failed.json")
        .replace("gBEGVRGYdlABAgkLp0vD6hSs3Ue", wa_id)
        .replace("5511987650003", ANA)
        .replace("\"code\": 470", "\"code\": 131026")
        .replace(
            "Failed to send message because you are outside the support window for freeform messages to this user. Please use a valid HSM notification or reconsider.",
            "Message undeliverable",
        );
    assert!(failed.contains("131026"), "the fixture changed");
    server.post(&failed).await;
    assert!(
        eventually(WAIT, || sink.received().len() == 1).await,
        "{}",
        server.log()
    );
    let seen = sink.received()[0].json();
    assert_eq!(seen["status"], "failed");
    assert_eq!(
        seen["sent_by"],
        json!({ "plugin": "10-sender", "notification_id": "wamid.ORDER1", "delivery_id": delivery_id })
    );
    assert_eq!(seen["window_open"], true, "Ana wrote just now");

    let listed = sends_until(&server, |rows| rows[0]["status"] == "failed").await;
    assert_eq!(listed[0]["error"], "131026 Message undeliverable");
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // The console's timeline of the notification shows the send with its WhatsApp message.
    let inbox_id = crate::console::find(&server, "wamid.ORDER1").await;
    let timeline = crate::console::get_ok(&server, &format!("notifications/{inbox_id}")).await;
    let send = &timeline["deliveries"][0];
    assert_eq!(send["plugin"], "10-sender", "{timeline}");
    assert_eq!(send["id"], delivery_id);
    assert_eq!(
        send["sent"],
        json!({ "message_id": wa_id, "status": "failed", "error": "131026 Message undeliverable",
                "status_at": send["sent"]["status_at"] })
    );
    assert!(send["sent"]["status_at"].is_i64());
}

/// `deliveries sends --json` once `done` holds for it (within [`WAIT`]).
async fn sends_until(server: &Server, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (ok, out) = server.cli(&["deliveries", "sends", "--json"]).await;
        assert!(ok, "{out}");
        let rows: Value = serde_json::from_str(&out).unwrap();
        if done(&rows) {
            return rows;
        }
        assert!(started.elapsed() < WAIT, "{rows}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
