//! The operator console: a JSON API under `/admin/api/` and a page at `/admin/` whose assets
//! are compiled into the binary. Off unless `[admin]` is configured. Every API request bears
//! the token of `token_env`; with `read_only`, every change is refused.

mod api;
mod rates;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AdminConfig, Config};
use crate::ingress::ClientAddr;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::store::Store;

pub use rates::Rates;

/// What the console's handlers share.
pub struct Admin {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub rates: Arc<Rates>,
    settings: AdminConfig,
    /// SHA-256 of the token: requests are compared digest to digest, in constant time.
    token: [u8; 32],
}

impl Admin {
    /// The console of `config`, if it has an `[admin]` section; fails when its token is not set.
    pub fn new(
        config: Arc<Config>,
        store: Store,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
    ) -> anyhow::Result<Option<Arc<Admin>>> {
        let Some(settings) = config.admin.clone() else {
            return Ok(None);
        };
        let token = std::env::var(&settings.token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .with_context(|| {
                format!(
                    "[admin] token_env names {}, which is not set (or empty): set it to the token the console's users will give",
                    settings.token_env
                )
            })?;
        let rates = Arc::new(Rates::default());
        Ok(Some(Arc::new(Admin {
            config,
            store,
            rates,
            metrics,
            registry,
            token: Sha256::digest(token.as_bytes()).into(),
            settings,
        })))
    }

    /// Where the console listens apart from the webhooks, if it does.
    pub fn listen(&self) -> Option<SocketAddr> {
        self.settings.listen
    }

    /// Sample the counters for the rates chart, until the task is dropped.
    pub async fn sample(self: Arc<Self>) {
        let mut tick = tokio::time::interval(rates::EVERY);
        loop {
            tick.tick().await;
            self.rates.sample(&self.metrics);
        }
    }

    fn authorized(&self, req: &Request) -> bool {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(digest.ct_eq(&self.token))
    }
}

/// The console's routes: `/admin/` and its assets, `/admin/api/...`.
pub fn router(admin: Arc<Admin>) -> Router {
    let api = api::routes().layer(axum::middleware::from_fn_with_state(admin.clone(), guard));
    Router::new()
        .route(
            "/admin",
            get(|| async { axum::response::Redirect::permanent("/admin/") }),
        )
        .route("/admin/", get(|| asset(INDEX, "text/html; charset=utf-8")))
        .route(
            "/admin/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/admin/style.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route(
            "/admin/api/openapi.json",
            get(|| asset(OPENAPI, "application/json")),
        )
        .merge(api)
        .with_state(admin)
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");
/// The API's description, checked against the running server by the tests.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Middleware of the API: the token, then read-only.
async fn guard(State(admin): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0.0.ip().to_string());
    if !admin.authorized(&req) {
        let ip = client.unwrap_or_default();
        tracing::warn!(client = ip, path = %req.uri().path(), "console request refused: no or wrong token");
        return api::error(
            StatusCode::UNAUTHORIZED,
            "a token is needed: send Authorization: Bearer TOKEN (the value of [admin] token_env)",
        );
    }
    if admin.settings.read_only && req.method() != Method::GET && req.method() != Method::HEAD {
        return api::error(
            StatusCode::FORBIDDEN,
            "the console is read-only ([admin] read_only = true): changes are refused",
        );
    }
    let who = req
        .headers()
        .get("x-operator")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "admin".into());
    let mut req = req;
    req.extensions_mut().insert(api::Operator(match client {
        Some(ip) => format!("{who} ({ip})"),
        None => who,
    }));
    next.run(req).await
}
