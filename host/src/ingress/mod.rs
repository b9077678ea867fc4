//! Ingress: the HTTP endpoint the Coreapp POSTs webhooks to. A body is split into
//! notifications and stored durably before the 200 goes out; anything else makes the Coreapp
//! retry.

mod error;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use switchboard_sdk::split::{self, SplitError};
use switchboard_sdk::{Kind, Notification};

pub use error::WhatsAppError;

use crate::config::Config;
use crate::dispatch;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::store::{NewInboxItem, Store};

/// What the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub dispatch: dispatch::Wake,
}

/// The HTTP routes: the webhook path, `/health` and `/metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.server.max_body_bytes;
    Router::new()
        .route(&state.config.server.webhook_path, post(webhook))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let snapshot = app.registry.snapshot();
    let body = app
        .metrics
        .render(snapshot.plugins.len(), app.registry.errors().len());
    ([("content-type", "text/plain; version=0.0.4")], body)
}

async fn webhook(
    State(app): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    app.metrics.inc(&app.metrics.webhooks_received);
    match accept(&app, body).await {
        Ok(()) => (StatusCode::OK, [("content-type", "application/json")], "{}").into_response(),
        Err(e) => {
            app.metrics.inc(&app.metrics.webhooks_rejected);
            e.into_response()
        }
    }
}

async fn accept(app: &AppState, body: Result<Bytes, BytesRejection>) -> Result<(), WhatsAppError> {
    let body =
        body.map_err(|r| WhatsAppError::new(r.status(), "Request body rejected", r.body_text()))?;
    let notifications = split::split_onprem(&body, "default").map_err(|e| match e {
        SplitError::Syntax(d) => WhatsAppError::bad_request(400, "Malformed JSON", d),
        SplitError::Shape(d) => WhatsAppError::bad_request(1009, "Invalid webhook body", d),
    })?;
    if notifications.is_empty() {
        return Ok(());
    }
    let body_hash = hex::encode(&Sha256::digest(&body)[..16]);
    let items: Vec<NewInboxItem> = notifications
        .iter()
        .enumerate()
        .map(|(i, n)| NewInboxItem {
            dedup_key: dedup_key(n, &body_hash, i),
            notification: serde_json::to_string(n).unwrap_or_default(),
        })
        .collect();
    let total = items.len() as u64;
    let fresh = app.store.ingest(items).await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "cannot store a webhook; answering 503 so the Coreapp retries");
        WhatsAppError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", "storage is unavailable; retry later".into())
    })? as u64;
    app.metrics.add(&app.metrics.notifications_accepted, fresh);
    app.metrics
        .add(&app.metrics.notifications_duplicate, total - fresh);
    if fresh > 0 {
        app.dispatch.wake();
    }
    Ok(())
}

/// The identity under which a notification is deduplicated: the message id; the status id and
/// status; for errors, which have no id, the body they came in and their place in it.
pub fn dedup_key(n: &Notification, body_hash: &str, index: usize) -> String {
    match n.kind {
        Kind::Message => format!("m:{}", n.id),
        Kind::Status => format!("s:{}:{}", n.id, n.status.as_deref().unwrap_or("")),
        Kind::Error => format!("e:{body_hash}:{index}"),
    }
}
