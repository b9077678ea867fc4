//! Delivery: carry out the outbox. Every row is attempted until its receiver accepts it, with
//! exponential backoff up to the configured horizon, then dead-lettered. First attempts and
//! retries have separate budgets, so a backlog of retries never starves fresh traffic; rows of
//! one lane (target and customer) go out one at a time, in order.

pub mod backoff;
pub mod pacing;
mod queue;
mod request;
mod sending;
pub mod signature;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use tokio::sync::{Notify, mpsc};

use queue::{Attempt, Budget, Queue};

pub use request::{Request, WHATSAPP};

use crate::cluster::Membership;
use crate::config::Config;
use crate::http_client::{Endpoint, Http, Response, snippet};
use crate::metrics::Metrics;
use crate::store::{Attempted, DeliveryOutcome, OutboxRow, Store, now_millis};
use crate::whatsapp::WhatsApp;

/// Carries out the outbox.
pub struct Delivery {
    store: Store,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    http: Http,
    whatsapp: WhatsApp,
    pacer: pacing::Pacer,
    sends: sending::SendLog,
    budget: Budget,
    /// The configured destinations, their URLs parsed once.
    destinations: HashMap<String, Destination>,
    /// Rows committed by the dispatcher, not yet taken into the queue.
    incoming: Mutex<Incoming>,
    wake: Notify,
    membership: Arc<Membership>,
}

/// A `[destinations.NAME]` as forwards use it.
struct Destination {
    url: Endpoint,
    /// Environment variable holding the signing secret.
    secret_env: Option<String>,
}

/// Rows handed over by the dispatcher, and the highest id handed over so far: rows above it
/// are still on their way, so the outbox scan leaves them to the hand-over.
struct Incoming {
    rows: Vec<(OutboxRow, Option<Request>)>,
    upto: i64,
}

/// How often the outbox table is scanned for rows the queue does not know: revived dead
/// letters, and anything missed.
const RESCAN: Duration = Duration::from_secs(2);

/// How often the outbox scan starts again from the first row rather than after the last row
/// queued.
const FULL_RESCAN: Duration = Duration::from_secs(30);

impl Delivery {
    /// Set up delivery for `config`.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        membership: Arc<Membership>,
    ) -> anyhow::Result<Arc<Delivery>> {
        let http = Http::new(config.delivery.timeout, config.delivery.concurrency)?;
        let whatsapp = WhatsApp::new(&http, config.whatsapp.as_ref())?;
        let concurrency = config.delivery.concurrency;
        let fresh = concurrency * (config.destinations.len() + 1);
        let budget = Budget {
            fresh,
            retries: fresh.div_ceil(2),
            per_target: concurrency,
        };
        let destinations = config
            .destinations
            .iter()
            .map(|(name, d)| {
                let url = Endpoint::parse(&d.url)?;
                let secret_env = d.secret_env.clone();
                Ok((name.clone(), Destination { url, secret_env }))
            })
            .collect::<anyhow::Result<_>>()?;
        // Rows already stored are found by the outbox scan; later ones are handed over.
        let upto = store.max_delivery_id()?;
        let pacer = pacing::Pacer::new(
            config.whatsapp.as_ref(),
            store.shared().then(|| store.clone()),
        );
        Ok(Arc::new(Delivery {
            store,
            metrics,
            http,
            pacer,
            sends: Default::default(),
            whatsapp,
            budget,
            destinations,
            incoming: Mutex::new(Incoming {
                rows: Vec::new(),
                upto,
            }),
            wake: Notify::new(),
            config,
            membership,
        }))
    }

    /// Hand over rows just committed to the outbox, each with the request it holds (so the
    /// queue need not parse it again).
    pub fn enqueue(&self, rows: Vec<(OutboxRow, Request)>) {
        if let Ok(mut incoming) = self.incoming.lock() {
            incoming.upto = rows.iter().map(|(r, _)| r.id).fold(incoming.upto, i64::max);
            incoming
                .rows
                .extend(rows.into_iter().map(|(row, request)| (row, Some(request))));
        }
        self.wake.notify_one();
    }

    /// Look at the queue and the partitions held again.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Run the scheduler until `shutdown` resolves, then let the attempts in flight finish
    /// (bounded) and record their outcomes.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut queue = Queue::default();
        let (done_tx, mut done_rx) =
            mpsc::unbounded_channel::<(Attempt, DeliveryOutcome, Attempted)>();
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
        let (recorded_tx, mut recorded_rx) = mpsc::unbounded_channel::<Vec<i64>>();
        let recorder = tokio::spawn(record(
            self.store.clone(),
            self.membership.clone(),
            outcome_rx,
            recorded_tx,
        ));
        tokio::spawn(sending::record_sends(self.clone()));
        let (mut max_id, mut last_scan, mut stopping) = (0i64, None::<Instant>, None::<Instant>);
        let (mut generation, mut last_full_scan) = (u64::MAX, Instant::now());
        // Bounds memory while a destination is down under traffic.
        let (max_queued, mut backlogged) = (self.config.delivery.max_in_memory.max(1), false);
        loop {
            let now = now_millis();
            let held = self.membership.held();
            if held.generation != generation {
                generation = held.generation;
                let dropped = queue.release(|p| held.owned.iter().any(|o| o.partition == p));
                if dropped > 0 {
                    tracing::info!(
                        dropped,
                        "deliveries of partitions no longer held left to their new owner"
                    );
                }
                // Rows of partitions taken over were stored by another host: scan them all.
                let store = self.store.clone();
                if let Ok(Ok(top)) =
                    tokio::task::spawn_blocking(move || store.max_delivery_id()).await
                    && let Ok(mut i) = self.incoming.lock()
                {
                    i.upto = i.upto.max(top);
                }
                (max_id, last_scan) = (0, None);
            }
            if last_full_scan.elapsed() >= FULL_RESCAN {
                // Rows never handed over (a commit whose answer was lost) are found too.
                (max_id, last_full_scan) = (0, Instant::now());
            }
            let (incoming, upto) = match self.incoming.lock() {
                Ok(mut i) => (std::mem::take(&mut i.rows), i.upto),
                Err(_) => (Vec::new(), max_id),
            };
            if backlogged || queue.len() + incoming.len() > max_queued {
                // Past the bound the rows stay in the database only; the rescan loads them, in
                // order, as the queue drains.
                backlogged = true;
            } else {
                max_id = incoming.iter().map(|(r, _)| r.id).fold(max_id, i64::max);
                queue.add(incoming, now);
            }
            let room = max_queued.saturating_sub(queue.len());
            let rescan = last_scan.is_none_or(|t| t.elapsed() >= RESCAN)
                || (backlogged && room >= max_queued / 2);
            if rescan && stopping.is_none() {
                last_scan = Some(Instant::now());
                let (store, lease) = (self.store.clone(), held.owned.clone());
                match tokio::task::spawn_blocking(move || {
                    store.claim_deliveries(&lease, max_id, upto, room)
                })
                .await
                {
                    Ok(Ok(rows)) => {
                        backlogged = rows.len() >= room;
                        let rows: Vec<_> = rows
                            .into_iter()
                            .filter(|r| !queue.knows(r.id))
                            .map(|r| (r, None))
                            .collect();
                        max_id = rows.iter().map(|(r, _)| r.id).fold(max_id, i64::max);
                        queue.add(rows, now);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot read the outbox")
                    }
                    Err(_) => {}
                }
            }
            while let Ok((attempt, outcome, attempted)) = done_rx.try_recv() {
                queue.finish(&attempt, &outcome, now);
                let _ = outcome_tx.send((attempt.task.id, outcome, attempted));
            }
            while let Ok(ids) = recorded_rx.try_recv() {
                queue.forget(ids);
            }
            let next_timer = queue.tick(now);
            while stopping.is_none() && !held.owned.is_empty() {
                let Some(attempt) = queue.next(&self.budget) else {
                    break;
                };
                let (this, done_tx) = (self.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let (outcome, attempted) = this.attempt(&attempt).await;
                    this.count(&outcome);
                    let _ = done_tx.send((attempt, outcome, attempted));
                    this.wake.notify_one();
                });
            }
            if let Some(since) = stopping
                && (queue.in_flight() == 0 || since.elapsed() > Duration::from_secs(10))
            {
                break;
            }
            let wait = next_timer.map_or(1000, |at| (at - now).clamp(1, 1000)) as u64;
            tokio::select! {
                _ = &mut shutdown, if stopping.is_none() => stopping = Some(Instant::now()),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
        drop(outcome_tx);
        let _ = recorder.await;
    }

    fn count(&self, outcome: &DeliveryOutcome) {
        let m = &self.metrics;
        match outcome {
            DeliveryOutcome::Delivered => m.inc(&m.deliveries_ok),
            DeliveryOutcome::Retry { .. } => m.inc(&m.deliveries_retried),
            DeliveryOutcome::Dead { .. } => m.inc(&m.deliveries_dead),
        }
    }

    /// One attempt of one row, classified, and what it was.
    async fn attempt(&self, attempt: &Attempt) -> (DeliveryOutcome, Attempted) {
        let task = &*attempt.task;
        let mut attempted = Attempted {
            target: task.target.clone(),
            at: now_millis(),
            ..Attempted::default()
        };
        let request = match &task.request {
            Ok(r) => r,
            Err(e) => {
                let error = format!("unreadable outbox row: {e}");
                return (DeliveryOutcome::Dead { error }, attempted);
            }
        };
        let started = Instant::now();
        let (outcome, status) = match request {
            Request::Forward { body } => {
                let result = self.forward(task, body).await;
                let status = result.as_ref().ok().map(|r| r.status.as_u16());
                (self.classify(attempt, result), status)
            }
            _ => self.whatsapp(attempt, request).await,
        };
        let took = started.elapsed();
        attempted.duration_ms = millis(took);
        attempted.status = status;
        let since_stored = matches!(outcome, DeliveryOutcome::Delivered).then(|| {
            Duration::from_millis(now_millis().saturating_sub(task.created_at).max(0) as u64)
        });
        self.metrics
            .delivery_attempted(&task.target, took, since_stored);
        match &outcome {
            DeliveryOutcome::Delivered => {}
            DeliveryOutcome::Retry { error, .. } => {
                tracing::debug!(
                    id = task.id,
                    target = &*task.target,
                    kind = task.kind,
                    attempt = attempt.attempts + 1,
                    error,
                    "delivery will be retried"
                )
            }
            DeliveryOutcome::Dead { error } => {
                tracing::warn!(
                    id = task.id,
                    target = &*task.target,
                    kind = task.kind,
                    attempts = attempt.attempts + 1,
                    error,
                    "delivery dead-lettered"
                )
            }
        }
        (outcome, attempted)
    }

    async fn forward(&self, task: &queue::Task, body: &str) -> anyhow::Result<Response> {
        let Some(dest) = self.destinations.get(&*task.target) else {
            anyhow::bail!("no [destinations.{}] in the configuration", task.target);
        };
        let timestamp = now_millis() / 1000;
        let mut headers = vec![
            (WEBHOOK_ID, HeaderValue::try_from(&task.webhook_id)?),
            (WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp)),
        ];
        if let Some(var) = &dest.secret_env {
            let Ok(secret) = std::env::var(var) else {
                anyhow::bail!(
                    "[destinations.{}] secret_env names {var}, which is not set",
                    task.target
                );
            };
            let signature = signature::sign(&secret, &task.webhook_id, timestamp, body.as_bytes());
            headers.push((WEBHOOK_SIGNATURE, HeaderValue::try_from(signature)?));
        }
        self.http
            .send(Method::POST, &dest.url, &headers, body.to_string())
            .await
    }

    fn classify(&self, attempt: &Attempt, result: anyhow::Result<Response>) -> DeliveryOutcome {
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
        self.retry(attempt, error, retry_after)
    }

    /// Retry `attempt` after back-off (at least `retry_after`), or dead-letter it past the
    /// horizon.
    fn retry(
        &self,
        attempt: &Attempt,
        error: String,
        retry_after: Option<Duration>,
    ) -> DeliveryOutcome {
        let cfg = &self.config.delivery;
        let delay = backoff::delay(cfg, attempt.attempts as u32, retry_after);
        let at = now_millis().saturating_add(millis(delay));
        if at > attempt.task.created_at.saturating_add(millis(cfg.horizon)) {
            return DeliveryOutcome::Dead {
                error: format!(
                    "gave up after {} attempts over the {:?} horizon; last error: {error}",
                    attempt.attempts + 1,
                    cfg.horizon
                ),
            };
        }
        DeliveryOutcome::Retry { at, error }
    }
}

/// `d` in milliseconds, saturating (a duration from the configuration or a receiver may be
/// longer than `i64` milliseconds hold).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Outcomes are committed at most this often: each commit rewrites the outbox pages it
/// touches, so under load fewer, larger commits write less (in the load bench the work
/// database's writer took 14-16 us per webhook with it, 17-19 without). A crash may lose the
/// outcomes of one gap, which means one more attempt each (at least once).
const RECORD_GAP: Duration = Duration::from_millis(20);

/// Write outcomes to the outbox in batches, then report the ids whose outcome was final.
async fn record(
    store: Store,
    membership: Arc<Membership>,
    mut outcomes: mpsc::UnboundedReceiver<(i64, DeliveryOutcome, Attempted)>,
    recorded: mpsc::UnboundedSender<Vec<i64>>,
) {
    let mut last = tokio::time::Instant::now() - RECORD_GAP;
    while let Some(first) = outcomes.recv().await {
        tokio::time::sleep_until(last + RECORD_GAP).await;
        last = tokio::time::Instant::now();
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match outcomes.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let finished: Vec<i64> = batch
            .iter()
            .filter(|(_, o, _)| !matches!(o, DeliveryOutcome::Retry { .. }))
            .map(|(id, _, _)| *id)
            .collect();
        loop {
            let lease = membership.held().owned;
            if lease.is_empty() {
                // Whoever holds the partitions now attempts these rows again.
                tracing::warn!(
                    outcomes = batch.len(),
                    "delivery outcomes dropped: no partition is held"
                );
                break;
            }
            match store.record_attempts(&lease, batch.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot record delivery outcomes; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let _ = recorded.send(finished);
    }
}
