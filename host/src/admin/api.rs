//! The console's JSON API. Store reads block, so each runs in `spawn_blocking`; every list is
//! one bounded page.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Admin;
use super::rates::Sample;
use crate::plugins::quarantine::State as Breaker;
use crate::store::{
    DeadFilter, DeliveryQuery, NotificationQuery, NotificationSummary, Store, now_millis,
};

/// Who made a change: the `X-Operator` header (or `admin`) and the client's address.
#[derive(Clone)]
pub struct Operator(pub String);

/// The window of the destinations' success rates.
const HEALTH_WINDOW_MS: i64 = 3600 * 1000;

pub fn routes() -> Router<Arc<Admin>> {
    Router::new()
        .route("/admin/api/overview", get(overview))
        .route("/admin/api/notifications", get(notifications))
        .route("/admin/api/notifications/{inbox_id}", get(timeline))
        .route("/admin/api/deliveries", get(deliveries))
        .route("/admin/api/dead-letters", get(dead_letters))
        .route("/admin/api/dead-letters/retry", post(retry_dead))
        .route("/admin/api/audit", get(audit))
        .route("/admin/api/plugins", get(plugins))
        .route("/admin/api/destinations", get(destinations))
        .route("/admin/api/ingress", get(ingress))
}

/// A JSON error: `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn failed(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "console request failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
}

/// Run a blocking store read off the async threads.
async fn read<T: Serialize + Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
) -> Response {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => failed(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read did not finish"),
    }
}

fn bad_query(e: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, &e.body_text())
}

async fn overview(State(admin): State<Arc<Admin>>) -> Response {
    let now = now_millis();
    let m = &admin.metrics;
    let current = Sample::of(m, now);
    let rates = admin.rates.per_minute(current);
    let plugins = plugin_list(&admin);
    let retention_ms = admin.config.storage.retention.as_millis() as i64;
    let read_only = admin.settings.read_only;
    let totals = json!({
        "webhooks_received": current.received,
        "webhooks_rejected": m.webhooks_rejected.load(Ordering::Relaxed),
        "webhooks_unauthorized": m.webhooks_unauthorized.load(Ordering::Relaxed),
        "notifications_accepted": current.accepted,
        "notifications_duplicate": m.notifications_duplicate.load(Ordering::Relaxed),
        "notifications_dispatched": current.dispatched,
        "deliveries_ok": current.delivered,
        "deliveries_retried": current.retried,
        "deliveries_dead": current.dead,
        "plugin_calls": m.plugin_calls.load(Ordering::Relaxed),
        "plugin_failures": current.plugin_failures,
    });
    read(&admin.store, move |store| {
        let backlog = store.backlog()?;
        let destinations = store.destination_health(now - HEALTH_WINDOW_MS)?;
        let history_since = store.history_since()?;
        Ok(json!({
            "now": now,
            "read_only": read_only,
            "retention_ms": retention_ms,
            "history_since": history_since,
            "totals": totals,
            "backlog": {
                "inbox": backlog.inbox,
                "inbox_oldest_age_ms": backlog.inbox_oldest.map(|at| (now - at).max(0)),
                "dead_letters": backlog.dead,
                "outbox": backlog.outbox.iter().map(|(d, n, oldest)| json!({
                    "destination": d, "pending": n, "oldest_age_ms": (now - oldest).max(0),
                })).collect::<Vec<_>>(),
            },
            "rates": rates,
            "destinations": destinations.into_iter().map(|d| destination_json(d, now)).collect::<Vec<_>>(),
            "plugins": plugins,
        }))
    })
    .await
}

fn destination_json(d: crate::store::DestinationHealth, now: i64) -> Value {
    let finished = d.delivered + d.dead;
    json!({
        "destination": d.destination,
        "delivered": d.delivered,
        "dead": d.dead,
        "success_rate": (finished > 0).then(|| d.delivered as f64 / finished as f64),
        "pending": d.pending,
        "retrying": d.retrying,
        "oldest_pending_age_ms": d.oldest_pending_at.map(|at| (now - at).max(0)),
        "window_ms": HEALTH_WINDOW_MS,
    })
}

async fn notifications(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<NotificationQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    read(&admin.store, move |store| {
        store.search_notifications(&query)
    })
    .await
}

async fn timeline(State(admin): State<Arc<Admin>>, Path(inbox_id): Path<i64>) -> Response {
    let errors = admin.metrics.plugin_errors();
    let store = admin.store.clone();
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Value>> {
        let Some(item) = store.notification(inbox_id)? else {
            return Ok(None);
        };
        let deliveries = store.deliveries_of(inbox_id)?;
        let dispatched = store.dispatched_yet(inbox_id)?;
        let n = &item.notification;
        let plugin_errors: Vec<_> = errors
            .into_iter()
            .filter(|e| e.notification == n.id && e.at >= item.received_at)
            .collect();
        let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
        Ok(Some(json!({
            "notification": NotificationSummary::of(&item),
            "dedup_key": item.dedup_key,
            "item": parse(&n.item_json),
            "contact": n.contact_json.as_deref().map(parse),
            "received": { "at": item.received_at, "endpoint": n.source },
            "dispatched": dispatched,
            "plugin_errors": plugin_errors,
            "deliveries": deliveries,
        })))
    })
    .await;
    match found {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "no such notification: it may be older than the retention",
        ),
        Ok(Err(e)) => failed(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read did not finish"),
    }
}

async fn deliveries(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    if let Some(s) = &query.state
        && !["pending", "delivered", "dead"].contains(&s.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "state is one of pending, delivered, dead",
        );
    }
    read(&admin.store, move |store| store.find_deliveries(&query)).await
}

async fn dead_letters(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Response {
    let Query(mut query) = match query {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    query.state = Some("dead".into());
    read(&admin.store, move |store| store.find_deliveries(&query)).await
}

/// A retry by filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    #[serde(default)]
    filter: DeadFilter,
    /// Only count (the default): `false` to retry.
    #[serde(default = "yes")]
    dry_run: bool,
    /// At most this many, up to `[admin] max_retry`.
    limit: Option<usize>,
}

fn yes() -> bool {
    true
}

async fn retry_dead(
    State(admin): State<Arc<Admin>>,
    Extension(Operator(who)): Extension<Operator>,
    body: Result<Json<RetryRequest>, JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let max = admin.settings.max_retry;
    let limit = req.limit.unwrap_or(max).clamp(1, max);
    match admin
        .store
        .retry_dead_matching(req.filter.clone(), req.dry_run, limit, who.clone())
        .await
    {
        Ok(report) => {
            if !req.dry_run {
                tracing::info!(who, filter = ?req.filter, retried = report.retried, matched = report.matched, "dead letters retried from the console");
            }
            Json(json!({
                "dry_run": req.dry_run,
                "limit": limit,
                "matched": report.matched,
                "retried": report.retried,
                "ids": report.ids,
            }))
            .into_response()
        }
        Err(e) => failed(e),
    }
}

async fn audit(State(admin): State<Arc<Admin>>) -> Response {
    read(&admin.store, |store| store.audit_log(100)).await
}

/// The chain in order, each plugin with its counts, breaker and latest errors; and the load
/// errors of plugins that did not load.
fn plugin_list(admin: &Admin) -> Value {
    let mut all = crate::ingress::plugins_json(&admin.registry);
    let errors = admin.metrics.plugin_errors();
    let now = now_millis();
    if let Some(loaded) = all.get_mut("loaded").and_then(Value::as_array_mut) {
        for p in loaded {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let recent: Vec<_> = errors
                .iter()
                .rev()
                .filter(|e| e.plugin == name)
                .take(5)
                .cloned()
                .collect();
            let quarantined = p["health"]["state"] == json!(Breaker::Quarantined);
            let failing_now = p["health"]["consecutive_failures"].as_u64().unwrap_or(0) > 0
                || recent.first().is_some_and(|e| now - e.at < 5 * 60 * 1000);
            p["status"] = json!(if quarantined {
                "quarantined"
            } else if failing_now {
                "failing"
            } else {
                "ok"
            });
            p["recent_errors"] = json!(recent);
        }
    }
    all
}

async fn plugins(State(admin): State<Arc<Admin>>) -> Response {
    Json(plugin_list(&admin)).into_response()
}

async fn destinations(State(admin): State<Arc<Admin>>) -> Response {
    let now = now_millis();
    read(&admin.store, move |store| {
        let health = store.destination_health(now - HEALTH_WINDOW_MS)?;
        Ok(health
            .into_iter()
            .map(|d| destination_json(d, now))
            .collect::<Vec<_>>())
    })
    .await
}

async fn ingress(State(admin): State<Arc<Admin>>) -> Response {
    let m = &admin.metrics;
    let mut by_endpoint: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((endpoint, status), n) in m.ingress_counts() {
        by_endpoint
            .entry(endpoint)
            .or_default()
            .insert(status.to_string(), n);
    }
    let endpoints: Vec<_> = by_endpoint
        .into_iter()
        .map(|(endpoint, statuses)| json!({ "endpoint": endpoint, "statuses": statuses }))
        .collect();
    Json(json!({
        "endpoints": endpoints,
        "notifications_accepted": m.notifications_accepted.load(Ordering::Relaxed),
        "notifications_duplicate": m.notifications_duplicate.load(Ordering::Relaxed),
    }))
    .into_response()
}
