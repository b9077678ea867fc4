//! Delivery: carry out the outbox. Every row is attempted until its receiver accepts it, with
//! exponential backoff up to the configured horizon, then dead-lettered. First attempts and
//! retries have separate budgets, so a backlog of retries never starves fresh traffic; rows of
//! one lane (target and customer) go out one at a time, in order.

mod backoff;
mod request;
pub mod signature;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::{Notify, Semaphore};

pub use request::{Request, WHATSAPP};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{DeliveryOutcome, OutboxRow, Store, now_millis};
use crate::whatsapp::{Response, WhatsApp, read, snippet};

/// Wakes the delivery scheduler when rows are queued.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Tell the scheduler there is work.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Carries out the outbox.
pub struct Delivery {
    store: Store,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    whatsapp: WhatsApp,
    /// Per-target concurrency.
    targets: Mutex<HashMap<String, Arc<Semaphore>>>,
    fresh: Arc<Semaphore>,
    retries: Arc<Semaphore>,
    in_flight: Mutex<HashSet<i64>>,
    wake: Wake,
}

impl Delivery {
    /// Set up delivery for `config`.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        wake: Wake,
    ) -> anyhow::Result<Arc<Delivery>> {
        let http = reqwest::Client::builder()
            .timeout(config.delivery.timeout)
            .pool_max_idle_per_host(config.delivery.concurrency)
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let whatsapp = WhatsApp::new(http.clone(), config.whatsapp.as_ref())?;
        let lanes = config.delivery.concurrency * (config.destinations.len() + 1);
        Ok(Arc::new(Delivery {
            store,
            metrics,
            http,
            whatsapp,
            targets: Mutex::new(HashMap::new()),
            fresh: Arc::new(Semaphore::new(lanes)),
            retries: Arc::new(Semaphore::new(lanes.div_ceil(2))),
            in_flight: Mutex::new(HashSet::new()),
            config,
            wake,
        }))
    }

    /// Run the scheduler until `shutdown` resolves, then wait (bounded) for attempts in flight.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let started = self.schedule().await;
            let wait = if started {
                Duration::from_millis(0)
            } else {
                self.idle_wait()
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.0.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        for _ in 0..100 {
            if self.in_flight.lock().map(|f| f.is_empty()).unwrap_or(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn idle_wait(&self) -> Duration {
        match self.store.next_due_at() {
            Ok(Some(at)) => Duration::from_millis((at - now_millis()).clamp(1, 1000) as u64),
            _ => Duration::from_secs(1),
        }
    }

    /// Start attempts for the due rows that have budget. Returns whether any started.
    async fn schedule(self: &Arc<Self>) -> bool {
        let mut started = false;
        for retries in [false, true] {
            let budget = if retries { &self.retries } else { &self.fresh };
            let free = budget.available_permits();
            if free == 0 {
                continue;
            }
            let skip = self.in_flight.lock().map(|f| f.len()).unwrap_or(0);
            let store = self.store.clone();
            let rows =
                tokio::task::spawn_blocking(move || store.due_deliveries(retries, free + skip))
                    .await;
            let rows = match rows {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read the outbox");
                    continue;
                }
                Err(_) => continue,
            };
            for row in rows {
                let Ok(lane_permit) = budget.clone().try_acquire_owned() else {
                    break;
                };
                let Ok(target_permit) = self.target(&row.target).try_acquire_owned() else {
                    continue;
                };
                if !self
                    .in_flight
                    .lock()
                    .map(|mut f| f.insert(row.id))
                    .unwrap_or(false)
                {
                    continue;
                }
                started = true;
                let this = self.clone();
                tokio::spawn(async move {
                    let outcome = this.attempt(&row).await;
                    this.count(&outcome);
                    if let Err(e) = this.store.record_outcomes(vec![(row.id, outcome)]).await {
                        tracing::error!(id = row.id, error = %format!("{e:#}"), "cannot record a delivery outcome; it will be attempted again");
                    }
                    if let Ok(mut f) = this.in_flight.lock() {
                        f.remove(&row.id);
                    }
                    drop((lane_permit, target_permit));
                    this.wake.wake();
                });
            }
        }
        started
    }

    fn target(&self, name: &str) -> Arc<Semaphore> {
        let mut targets = self.targets.lock().expect("targets lock");
        targets
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.delivery.concurrency)))
            .clone()
    }

    fn count(&self, outcome: &DeliveryOutcome) {
        let m = &self.metrics;
        match outcome {
            DeliveryOutcome::Delivered => m.inc(&m.deliveries_ok),
            DeliveryOutcome::Retry { .. } => m.inc(&m.deliveries_retried),
            DeliveryOutcome::Dead { .. } => m.inc(&m.deliveries_dead),
        }
    }

    /// One attempt of one row, classified.
    async fn attempt(&self, row: &OutboxRow) -> DeliveryOutcome {
        let request: Request = match serde_json::from_str(&row.request) {
            Ok(r) => r,
            Err(e) => {
                return DeliveryOutcome::Dead {
                    error: format!("unreadable outbox row: {e}"),
                };
            }
        };
        let result = match &request {
            Request::Forward { body } => self.forward(row, body).await,
            Request::Reply {
                to,
                body,
                quote,
                via,
            } => {
                self.whatsapp
                    .send_text(via, to, body, quote.as_deref())
                    .await
            }
            Request::MarkRead { message_id, via } => self.whatsapp.mark_read(via, message_id).await,
        };
        let outcome = self.classify(row, result);
        match &outcome {
            DeliveryOutcome::Delivered => {}
            DeliveryOutcome::Retry { error, .. } => {
                tracing::debug!(
                    id = row.id,
                    target = row.target,
                    kind = row.kind,
                    attempt = row.attempts + 1,
                    error,
                    "delivery will be retried"
                )
            }
            DeliveryOutcome::Dead { error } => {
                tracing::warn!(
                    id = row.id,
                    target = row.target,
                    kind = row.kind,
                    attempts = row.attempts + 1,
                    error,
                    "delivery dead-lettered"
                )
            }
        }
        outcome
    }

    async fn forward(&self, row: &OutboxRow, body: &str) -> anyhow::Result<Response> {
        let Some(dest) = self.config.destinations.get(&row.target) else {
            anyhow::bail!("no [destinations.{}] in the configuration", row.target);
        };
        let timestamp = now_millis() / 1000;
        let mut req = self
            .http
            .post(&dest.url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.webhook_id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(var) = &dest.secret_env {
            match std::env::var(var) {
                Ok(secret) => {
                    req = req.header(
                        "webhook-signature",
                        signature::sign(&secret, &row.webhook_id, timestamp, body.as_bytes()),
                    )
                }
                Err(_) => anyhow::bail!(
                    "[destinations.{}] secret_env names {var}, which is not set",
                    row.target
                ),
            }
        }
        Ok(read(req.body(body.to_string()).send().await?).await?)
    }

    fn classify(&self, row: &OutboxRow, result: anyhow::Result<Response>) -> DeliveryOutcome {
        let (error, retry_after) = match result {
            Ok(r) if r.status.is_success() => return DeliveryOutcome::Delivered,
            Ok(r) if retryable(r.status) => {
                (format!("{}: {}", r.status, snippet(&r.body)), r.retry_after)
            }
            Ok(r) => {
                return DeliveryOutcome::Dead {
                    error: format!("{}: {}", r.status, snippet(&r.body)),
                };
            }
            Err(e) => (format!("{e:#}"), None),
        };
        let cfg = &self.config.delivery;
        let delay = backoff::delay(cfg, row.attempts as u32, retry_after);
        let at = now_millis() + delay.as_millis() as i64;
        if at > row.created_at + cfg.horizon.as_millis() as i64 {
            return DeliveryOutcome::Dead {
                error: format!(
                    "gave up after {} attempts over the {:?} horizon; last error: {error}",
                    row.attempts + 1,
                    cfg.horizon
                ),
            };
        }
        DeliveryOutcome::Retry { at, error }
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}
