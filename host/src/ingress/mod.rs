//! Ingress: the HTTP endpoints WhatsApp POSTs webhooks to. A request is authenticated and
//! checked, its body split into notifications and stored durably before the 200 goes out;
//! anything else makes the sender retry. Nothing of a refused request is stored.

mod auth;
pub mod connections;
mod error;
pub mod health;
pub mod input;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{ConnectInfo, Query, RawPathParams, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use switchboard_sdk::split::{self, SplitError};
use switchboard_sdk::{Kind, Notification};

pub use auth::Endpoint;
pub use error::WhatsAppError;

use crate::config::{Config, EndpointKind};
use crate::dispatch;
use crate::metrics::{Metrics, Series, Value};
use crate::plugins::Registry;
use crate::store::{NewInboxItem, Store};

/// What the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub inbox: dispatch::Inbox,
    pub health: health::Health,
    pub membership: Arc<crate::cluster::Membership>,
}

/// The endpoints of the configuration: the default one of `webhook_path` (unless empty) and
/// those of `[[server.endpoints]]`.
pub fn endpoints(config: &Config) -> anyhow::Result<Vec<Arc<Endpoint>>> {
    let mut out = Vec::new();
    if !config.server.webhook_path.is_empty() {
        out.push(Arc::new(Endpoint::open(&config.server.webhook_path)));
    }
    for c in &config.server.endpoints {
        out.push(Arc::new(Endpoint::from_config(c)?));
    }
    for e in &out {
        if !e.is_guarded() {
            tracing::warn!(
                endpoint = e.name,
                path = e.path,
                "endpoint accepts unauthenticated webhooks: keep it on a private network, or set token_env or allow_ips"
            );
        }
    }
    Ok(out)
}

/// The HTTP routes: the webhook endpoints, `/health` (`/live`, `/ready`) and `/metrics`.
pub fn router(state: Arc<AppState>, endpoints: Vec<Arc<Endpoint>>) -> Router {
    let mut router = Router::new()
        .route("/health", get(health::ready))
        .route("/health/ready", get(health::ready))
        .route("/health/live", get(health::live))
        .route("/metrics", get(metrics))
        .route("/plugins", get(plugins))
        .route("/cluster", get(cluster));
    for endpoint in endpoints {
        let on_post = {
            let endpoint = endpoint.clone();
            move |state: AppRef,
                  client: ConnectInfo<ClientAddr>,
                  params: Result<RawPathParams, RawPathParamsRejection>,
                  uri: Uri,
                  headers: HeaderMap,
                  body: Body| {
                webhook(state, endpoint, client, params, uri, headers, body)
            }
        };
        let mut route = post(on_post);
        if endpoint.kind == EndpointKind::Cloud {
            let endpoint = endpoint.clone();
            route = route.get(
                move |state: AppRef, client: ConnectInfo<ClientAddr>, uri: Uri| {
                    verify(state, endpoint, client, uri)
                },
            );
        }
        router = router.route(&endpoint.path, route);
    }
    router.with_state(state)
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let snapshot = app.registry.snapshot();
    let mut extra = vec![
        Series::gauge("plugins_loaded", "Plugins serving")
            .value(vec![], Value::Int(snapshot.plugins.len() as u64)),
        Series::gauge(
            "plugin_load_errors",
            "Plugins whose newest version failed to load",
        )
        .value(vec![], Value::Int(app.registry.errors().len() as u64)),
    ];
    extra.extend(health::gauges(&app).await);
    extra.extend(snapshot.render_metrics());
    extra.push(Series::gauge("host_info", "This host's id").value(
        vec![("host", app.membership.host().id.clone())],
        Value::Int(1),
    ));
    extra.push(
        Series::gauge("partitions_held", "Partitions whose lease this host holds")
            .value(vec![], Value::Int(app.membership.held().owned.len() as u64)),
    );
    let body = app.metrics.render(extra);
    ([("content-type", "text/plain; version=0.0.4")], body)
}

/// The hosts sharing the storage, the partitions each holds and what waits in each, as
/// `cluster status --json` prints them, with this host's id.
async fn cluster(State(app): State<Arc<AppState>>) -> Response {
    let store = app.store.clone();
    match tokio::task::spawn_blocking(move || store.cluster()).await {
        Ok(Ok(cluster)) => {
            let mut body = serde_json::to_value(&cluster).unwrap_or_default();
            body["this_host"] = app.membership.host().id.clone().into();
            Json(body).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the cluster's state");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the cluster's state",
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The plugins serving, in chain order, and the newest load error of each plugin that has one.
async fn plugins(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    axum::Json(plugins_json(&app.registry))
}

/// What `/plugins` answers.
pub fn plugins_json(registry: &Registry) -> serde_json::Value {
    let loaded: Vec<_> = registry
        .snapshot()
        .plugins
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": &*p.name,
                "version": p.version(),
                "api_version": p.api_version,
                "subscribe": p.manifest.subscribe.kinds,
                "health": p.health(),
                "stats": p.stats.counts(),
            })
        })
        .collect();
    serde_json::json!({
        "loaded": loaded,
        "errors": registry.errors(),
        "warnings": registry.warnings(),
    })
}

type AppRef = State<Arc<AppState>>;

/// The client's address, as the listener (plain or TLS) saw it (see `connections`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

fn query(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// The Cloud API's `hub.mode=subscribe` handshake.
async fn verify(
    State(app): State<Arc<AppState>>,
    endpoint: Arc<Endpoint>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    uri: Uri,
) -> Response {
    let q = query(&uri);
    let get = |k: &str| q.get(k).map(String::as_str);
    let answer = endpoint.check_address(client.ip()).ok().and_then(|()| {
        endpoint.verify_subscription(
            get("hub.mode"),
            get("hub.verify_token"),
            get("hub.challenge"),
        )
    });
    match answer {
        Some(challenge) => {
            (StatusCode::OK, [("content-type", "text/plain")], challenge).into_response()
        }
        None => {
            app.metrics.inc(&app.metrics.webhooks_unauthorized);
            tracing::warn!(endpoint = endpoint.name, client = %client.ip(), "subscription verification refused");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn webhook(
    State(app): State<Arc<AppState>>,
    endpoint: Arc<Endpoint>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Counted and timed here, and the body read in `answer`, rather than in middlewares: as
    // two middlewares they cost about 5 of ingest's 34 us of CPU per webhook (load bench).
    let started = std::time::Instant::now();
    let response = match params {
        Ok(params) => answer(&app, &endpoint, client, &params, &uri, &headers, body).await,
        Err(rejection) => rejection.into_response(),
    };
    let status = response.status().as_u16();
    app.metrics
        .webhook_answered(&endpoint.name, status, started.elapsed());
    response
}

/// The answer to a webhook POST.
async fn answer(
    app: &AppState,
    endpoint: &Endpoint,
    client: SocketAddr,
    params: &RawPathParams,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let body = match connections::read_body(app, client, uri.path(), headers, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    app.metrics.inc(&app.metrics.webhooks_received);
    let path_token = params.iter().find(|(k, _)| *k == "token").map(|(_, v)| v);
    let q = query(uri);
    let query_token = q.get("token").map(String::as_str);
    if let Err(denied) = endpoint.check(client.ip(), path_token, query_token, headers, &body) {
        app.metrics.inc(&app.metrics.webhooks_unauthorized);
        tracing::warn!(endpoint = endpoint.name, client = %client.ip(), reason = ?denied, "webhook refused");
        return denied.status().into_response();
    }
    match accept(app, endpoint, headers, &body).await {
        Ok(()) => (StatusCode::OK, [("content-type", "application/json")], "{}").into_response(),
        Err(e) => {
            app.metrics.inc(&app.metrics.webhooks_rejected);
            if e.status().is_client_error() {
                refused(endpoint, client, &e);
            }
            e.into_response()
        }
    }
}

/// Log a refused webhook once, with the reason it was given (which names what was wrong,
/// never the body's content).
fn refused(endpoint: &Endpoint, client: SocketAddr, e: &WhatsAppError) {
    tracing::warn!(
        endpoint = endpoint.name,
        client = %client.ip(),
        status = e.status().as_u16(),
        reason = e.details(),
        "webhook refused"
    );
}

async fn accept(
    app: &AppState,
    endpoint: &Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), WhatsAppError> {
    input::check(headers, body, app.config.server.max_json_depth)?;
    let split = match endpoint.kind {
        EndpointKind::Onprem => split::split_onprem,
        EndpointKind::Cloud => split::split_cloud,
    };
    let notifications = split(body, &endpoint.name).map_err(|e| match e {
        SplitError::Syntax(d) => WhatsAppError::bad_request(400, "Malformed JSON", d),
        SplitError::Shape(d) => WhatsAppError::bad_request(1009, "Invalid webhook body", d),
    })?;
    if notifications.is_empty() {
        return Ok(());
    }
    let mut body_hash = None;
    let mut items = Vec::with_capacity(notifications.len());
    for (i, n) in notifications.into_iter().enumerate() {
        let body_hash = || {
            body_hash
                .get_or_insert_with(|| hex::encode(&Sha256::digest(body)[..16]))
                .clone()
        };
        items.push(NewInboxItem {
            dedup_key: dedup_key(&n, body_hash, i),
            notification: n,
        });
    }
    let total = items.len() as u64;
    let _storing = app.inbox.storing();
    let fresh = app.store.ingest(items).await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "cannot store a webhook; answering 503 so the sender retries");
        WhatsAppError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", "storage is unavailable; retry later".into())
    })? as u64;
    if fresh > 0 {
        app.inbox.wake();
    }
    app.metrics.add(&app.metrics.notifications_accepted, fresh);
    app.metrics
        .add(&app.metrics.notifications_duplicate, total - fresh);
    Ok(())
}

/// The identity under which a notification is deduplicated: the message id; the status id and
/// status; for errors, and for messages and statuses that came without an id, the body they
/// came in (its hash) and their place in it.
pub fn dedup_key(n: &Notification, body_hash: impl FnOnce() -> String, index: usize) -> String {
    match n.kind {
        Kind::Message if !n.id.is_empty() => format!("m:{}", n.id),
        Kind::Status if !n.id.is_empty() => {
            format!("s:{}:{}", n.id, n.status.as_deref().unwrap_or(""))
        }
        Kind::Message => format!("m#{}:{index}", body_hash()),
        Kind::Status => format!("s#{}:{index}", body_hash()),
        Kind::Error => format!("e:{}:{index}", body_hash()),
    }
}

#[cfg(test)]
mod tests {
    use switchboard_sdk::split::split_onprem;

    use super::*;

    fn keys(body: &[u8]) -> Vec<String> {
        split_onprem(body, "t")
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, n)| dedup_key(n, || hex::encode(&Sha256::digest(body)[..16]), i))
            .collect()
    }

    #[test]
    fn items_without_an_id_are_told_apart_by_body_and_place() {
        let body = br#"{"messages":[{"id":"m1"},{"id":null,"type":"text"},{"type":"text"}],
            "statuses":[{"id":"s1","status":"read"},{"id":{},"status":"read"},{"status":"read"}]}"#;
        let first = keys(body);
        let unique: std::collections::HashSet<_> = first.iter().collect();
        assert_eq!(unique.len(), 6, "{first:?}");
        assert_eq!(
            (first[0].as_str(), first[3].as_str()),
            ("m:m1", "s:s1:read")
        );
        assert_eq!(keys(body), first, "a re-delivered body has the same keys");
        let other = br#"{"messages":[{"id":"m1"},{"id":null,"type":"image"},{"type":"text"}],
            "statuses":[{"id":"s1","status":"read"},{"id":{},"status":"read"},{"status":"read"}]}"#;
        assert_ne!(keys(other)[1], first[1], "another body, another key");
    }
}
