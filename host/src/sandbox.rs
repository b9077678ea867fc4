//! `switchboard sandbox`: a local stand-in for everything Switchboard talks to, for demos and
//! first steps. It plays the On-Premises API (login, `POST /v1/messages`, mark-read), the Cloud
//! API (`POST /{phone-number-id}/messages`) and any number of destinations (every other POST),
//! answers each as the real one would, and records what it received: one log line a request,
//! and the last requests as JSON at `GET /sandbox/requests`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::store::now_millis;

/// How many requests `GET /sandbox/requests` keeps (the oldest go first).
const KEEP: usize = 1000;
/// How much of a body the log line shows.
const LOG_BODY_CHARS: usize = 200;

/// One request the sandbox received.
#[derive(Clone, Serialize)]
pub struct Recorded {
    /// Unix milliseconds.
    pub at: i64,
    /// What the sandbox played for it: `onprem`, `cloud` or `destination`.
    pub role: &'static str,
    pub method: String,
    pub path: String,
    /// The body as JSON, or as text when it is not JSON.
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Sandbox {
    recorded: Mutex<VecDeque<Recorded>>,
    next_id: AtomicU64,
}

/// The sandbox's routes.
pub fn router() -> Router {
    Router::new()
        .route("/sandbox/requests", get(requests))
        .fallback(receive)
        .with_state(Arc::new(Sandbox::default()))
}

/// Serve the sandbox on `listen` until Ctrl-C or SIGTERM.
pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        "sandbox: playing the On-Premises API, the Cloud API and destinations; \
         what it receives is logged here and listed at /sandbox/requests"
    );
    axum::serve(listener, router())
        .with_graceful_shutdown(crate::server::shutdown_signal())
        .await?;
    Ok(())
}

async fn requests(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let recorded = sandbox
        .recorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect::<Vec<_>>();
    axum::Json(recorded).into_response()
}

async fn receive(
    State(sandbox): State<Arc<Sandbox>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let id = sandbox.next_id.fetch_add(1, Ordering::Relaxed);
    let (role, status, answer) = match (&method, segments.as_slice()) {
        (&Method::POST, ["v1", "users", "login"]) => (
            "onprem",
            StatusCode::OK,
            serde_json::json!({ "users": [{ "token": "sandbox-token", "expires_after": "2100-01-01 00:00:00+00:00" }] }),
        ),
        (&Method::POST, ["v1", "messages"]) => (
            "onprem",
            StatusCode::OK,
            serde_json::json!({ "messages": [{ "id": format!("gBEGsandbox{id:08}") }] }),
        ),
        (&Method::PUT, ["v1", "messages", _]) => ("onprem", StatusCode::OK, serde_json::json!({})),
        (&Method::POST, [_, "messages"]) => {
            let is_read = serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|b| b["status"] == "read");
            let answer = if is_read {
                serde_json::json!({ "success": true })
            } else {
                serde_json::json!({
                    "messaging_product": "whatsapp",
                    "messages": [{ "id": format!("wamid.sandbox{id:08}") }]
                })
            };
            ("cloud", StatusCode::OK, answer)
        }
        (&Method::POST, _) => ("destination", StatusCode::OK, serde_json::json!({})),
        _ => (
            "none",
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "the sandbox answers POST (and PUT /v1/messages/ID)" }),
        ),
    };
    let text = String::from_utf8_lossy(&body);
    tracing::info!(
        role,
        %method,
        path,
        body = %text.chars().take(LOG_BODY_CHARS).collect::<String>(),
        "sandbox received"
    );
    let recorded = Recorded {
        at: now_millis(),
        role,
        method: method.to_string(),
        path,
        body: serde_json::from_slice(&body).unwrap_or_else(|_| text.into_owned().into()),
    };
    {
        let mut all = sandbox.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() == KEEP {
            all.pop_front();
        }
        all.push_back(recorded);
    }
    (status, axum::Json(answer)).into_response()
}
