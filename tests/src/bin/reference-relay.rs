//! Reference program for the end-to-end benchmark: a minimal hand-written relay that, for each
//! inbound text message, sends the reply, the mark-read and the forward synchronously before
//! answering 200. No storage, no plugins, no retries.
//! Usage: `reference-relay ADDR COREAPP_URL DESTINATION_URL`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

struct Relay {
    http: reqwest::Client,
    coreapp: String,
    destination: String,
    token: String,
}

async fn webhook(State(relay): State<Arc<Relay>>, body: Bytes) -> StatusCode {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for message in body["messages"].as_array().into_iter().flatten() {
        if message["type"] != "text" {
            continue;
        }
        let (from, id) = (
            message["from"].as_str().unwrap_or(""),
            message["id"].as_str().unwrap_or(""),
        );
        let reply = json!({ "recipient_type": "individual", "to": from, "type": "text", "preview_url": false,
            "text": { "body": "Thanks for your message! We will get back to you shortly." } });
        let calls = [
            relay
                .http
                .post(format!("{}/v1/messages", relay.coreapp))
                .bearer_auth(&relay.token)
                .json(&reply),
            relay
                .http
                .put(format!("{}/v1/messages/{id}", relay.coreapp))
                .bearer_auth(&relay.token)
                .json(&json!({ "status": "read" })),
            relay
                .http
                .post(&relay.destination)
                .json(&json!({ "kind": "message", "item": message })),
        ];
        for call in calls {
            match call.send().await {
                Ok(r) if r.status().is_success() => {}
                _ => return StatusCode::BAD_GATEWAY,
            }
        }
    }
    StatusCode::OK
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let (addr, coreapp, destination) = (
        args.next().unwrap(),
        args.next().unwrap(),
        args.next().unwrap(),
    );
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{coreapp}/v1/users/login"))
        .basic_auth("admin", Some("secret"))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = login["users"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let relay = Arc::new(Relay {
        http,
        coreapp,
        destination,
        token,
    });
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(
        listener,
        Router::new()
            .route("/webhook", post(webhook))
            .with_state(relay),
    )
    .await
    .expect("serve");
}
