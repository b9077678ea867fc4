//! Dispatch: run every stored notification through the plugin chain and turn the actions into
//! deliveries, committed in one transaction with the notification marked handled.

mod envelope;
mod load;
mod sends;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchboard_sdk::{Action, Notification};

use crate::cluster::Membership;
use crate::config::Config;
use crate::delivery::{self, Delivery, Request};
use crate::metrics::Metrics;
use crate::plugins::kv::KvOverlay;
use crate::plugins::{Registry, Snapshot};
use crate::store::{self, InboxItem, NewDelivery, RetryChange, RetryRow, Store, now_millis};
use crate::whatsapp::{Via, WhatsApp};
use load::Load;
pub use load::Storing;

/// How many notifications one dispatch transaction covers at most.
const BATCH: usize = 256;
/// The fewest notifications per group: a smaller batch is not worth a thread more.
const MIN_GROUP: usize = 16;

/// The ingress side of the dispatcher: hands over stored notifications and wakes it, and
/// tells it when ingress is busy.
#[derive(Clone)]
pub struct Inbox {
    wake: SyncSender<()>,
    load: Arc<Load>,
    /// When the dispatcher last found nothing to do or committed a batch (Unix ms).
    progress: Arc<AtomicI64>,
}

impl Inbox {
    /// Count a webhook as waiting for the inbox's commit while the guard lives.
    pub fn storing(&self) -> Storing<'_> {
        self.load.storing()
    }

    /// Tell the dispatcher there is work (or that it should look at the inbox again).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// When the dispatcher last made progress (found nothing to do, or committed a batch),
    /// in Unix ms: while it is idle, at most about a second ago.
    pub fn last_progress(&self) -> i64 {
        self.progress.load(Ordering::Relaxed)
    }

    fn progressed(&self) {
        self.progress.store(store::now_millis(), Ordering::Relaxed);
    }
}

/// The dispatcher's inputs.
pub struct Dispatcher {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<Delivery>,
    pub membership: Arc<Membership>,
    /// How many groups a large batch runs in at most
    /// ([`crate::config::StorageConfig::dispatch_groups`]).
    pub groups: usize,
}

/// How long an idle dispatcher waits before it claims again, without a wake-up: the fallback
/// for a wake-up missed (from another host, over a lost connection).
const IDLE_POLL: i64 = 500;

/// The ingress side and what the dispatcher receives from it.
pub fn channel() -> (Inbox, Receiver<()>) {
    let (tx, rx) = sync_channel(1);
    let inbox = Inbox {
        wake: tx,
        load: Arc::new(Load::default()),
        progress: Arc::new(AtomicI64::new(store::now_millis())),
    };
    (inbox, rx)
}

impl Dispatcher {
    /// Run until `stop` is set and no work is left, on the calling thread (not a runtime's:
    /// it blocks on `handle` for the store's writes). Notifications of the partitions this
    /// host holds are claimed and handled in inbox order.
    pub fn run(
        self,
        handle: tokio::runtime::Handle,
        inbox: Inbox,
        wake: Receiver<()>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut retries = Retries::default();
        loop {
            let held = self.membership.held();
            inbox
                .load
                .set_share(held.owned.len(), self.store.partitions());
            if held.generation != retries.generation {
                // Other partitions: their waiting notifications are read afresh.
                retries = Retries {
                    generation: held.generation,
                    ..Default::default()
                };
            }
            let lease = &held.owned[..];
            self.run_due_retries(&handle, lease, &mut retries);
            let mut items = if lease.is_empty() {
                Vec::new()
            } else {
                match self.store.claim_notifications(lease, BATCH) {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot read the inbox");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            };
            if items.is_empty() {
                inbox.progressed();
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let until_retry = retries
                    .next_poll
                    .saturating_sub(now_millis())
                    .clamp(1, IDLE_POLL);
                match wake.recv_timeout(Duration::from_millis(until_retry as u64)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
            while !items.is_empty() {
                let waited = inbox.load.yield_to_ingress(items[0].received_at);
                if !waited.is_zero() {
                    self.metrics
                        .add(&self.metrics.dispatch_held_ms, waited.as_millis() as u64);
                }
                let batch: Vec<(InboxItem, Option<i64>)> = items
                    .drain(..items.len().min(BATCH))
                    .map(|i| (i, None))
                    .collect();
                let handled: Vec<i64> = batch.iter().map(|(i, _)| i.id).collect();
                let outcome = self.dispatch_batch(&batch, &retries.customers);
                if self.registry.interrupted() {
                    tracing::info!(
                        "shutting down: the notifications of the batch in progress are dispatched again at the next start"
                    );
                    return;
                }
                // A batch whose outcome cannot be stored is stored again; one whose lease was
                // taken over is the new owner's to dispatch.
                if !self.record(&handle, lease, handled, outcome, &mut retries) {
                    break;
                }
                inbox.progressed();
            }
        }
    }

    /// Store the outcome of a batch, fenced by `lease`, and hand its deliveries to delivery.
    /// A storage failure is retried; returns false when the lease was lost (nothing was stored:
    /// the partitions' owner dispatches the batch).
    fn record(
        &self,
        handle: &tokio::runtime::Handle,
        lease: &[store::Owned],
        handled: Vec<i64>,
        outcome: BatchOutcome,
        retries: &mut Retries,
    ) -> bool {
        loop {
            match handle.block_on(self.store.dispatched(
                lease,
                handled.clone(),
                outcome.deliveries.clone(),
                outcome.kv.clone(),
                outcome.retries.clone(),
            )) {
                Ok(rows) => {
                    self.metrics
                        .add(&self.metrics.notifications_dispatched, outcome.dispatched);
                    self.delivery
                        .enqueue(rows.into_iter().zip(outcome.requests).collect());
                    if outcome.customers != retries.customers {
                        retries.customers = outcome.customers;
                        retries.next_poll = 0;
                    }
                    return true;
                }
                Err(e) if e.downcast_ref::<store::Fenced>().is_some() => {
                    tracing::warn!(error = %format!("{e:#}"), "dispatch outcome dropped");
                    return false;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot store the outcome of dispatch; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    if !self.membership.held().owned.iter().eq(lease.iter()) {
                        tracing::warn!(
                            "the partitions held changed meanwhile: the batch is dropped, their owner dispatches it"
                        );
                        return false;
                    }
                }
            }
        }
    }

    /// Run the notifications waiting after a failure of the host that are due, if any (at most
    /// every second, the waiting ones are read again: `notifications retry` changes them).
    fn run_due_retries(
        &self,
        handle: &tokio::runtime::Handle,
        lease: &[store::Owned],
        r: &mut Retries,
    ) {
        let now = now_millis();
        if now < r.next_poll || lease.is_empty() {
            return;
        }
        r.next_poll = now + 1000;
        let state = match self.store.retry_state(lease) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the notifications waiting to be dispatched again");
                return;
            }
        };
        let m = &self.metrics;
        m.notifications_waiting
            .store(state.waiting as u64, Ordering::Relaxed);
        m.notifications_parked
            .store(state.parked as u64, Ordering::Relaxed);
        r.customers = state.customers;
        match state.next_at {
            Some(at) if at <= now => {}
            Some(at) => {
                r.next_poll = r.next_poll.min(at);
                return;
            }
            None => return,
        }
        let rows = match self.store.due_retries(lease, now, BATCH) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the notifications waiting to be dispatched again");
                return;
            }
        };
        let batch: Vec<(InboxItem, Option<i64>)> = rows
            .into_iter()
            .map(|row| {
                let item = InboxItem {
                    id: row.inbox_id,
                    received_at: row.received_at,
                    dedup_key: row.dedup_key,
                    notification: row.notification,
                };
                (item, Some(row.attempts))
            })
            .collect();
        let outcome = self.dispatch_batch(&batch, &r.customers);
        if self.registry.interrupted() {
            return;
        }
        // Not committed, the rows stay as they were and are run again at the next poll.
        match handle.block_on(self.store.dispatched(
            lease,
            Vec::new(),
            outcome.deliveries,
            outcome.kv,
            outcome.retries,
        )) {
            Ok(rows) => {
                m.add(&m.notifications_dispatched, outcome.dispatched);
                self.delivery
                    .enqueue(rows.into_iter().zip(outcome.requests).collect());
                // Each customer's next waiting notification may run now.
                r.next_poll = now;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot store the outcome of dispatch; retrying")
            }
        }
    }

    /// Run a batch: each notification fresh from the inbox (`None`) or waiting after failed
    /// attempts (`Some(attempts)`). `waiting` are the customers with notifications waiting:
    /// fresh ones of theirs wait behind them, in order.
    ///
    /// A large batch runs in groups at once (up to [`Dispatcher::groups`]), split by customer: a
    /// customer's notifications stay in order, in one group. Each group reads the key-value
    /// store through an overlay of its own, so a key one customer's call writes (a key not named
    /// after the customer) is seen by another customer's call in the same batch only if both
    /// are in one group, as it is seen across hosts only once committed; a plugin's key quota
    /// counts what is committed and its group's writes.
    fn dispatch_batch(
        &self,
        items: &[(InboxItem, Option<i64>)],
        waiting: &HashSet<String>,
    ) -> BatchOutcome {
        let groups = (items.len() / MIN_GROUP).clamp(1, self.groups.max(1));
        if groups == 1 {
            return self.dispatch_group(items.iter(), waiting);
        }
        let mut split: Vec<Vec<&(InboxItem, Option<i64>)>> = vec![Vec::new(); groups];
        for item in items {
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(customer(&item.0.notification), &mut hasher);
            split[std::hash::Hasher::finish(&hasher) as usize % groups].push(item);
        }
        let outcomes: Vec<BatchOutcome> = std::thread::scope(|scope| {
            let (first, rest) = split.split_first().expect("at least one group");
            let others: Vec<_> = rest
                .iter()
                .map(|group| {
                    scope.spawn(move || {
                        crate::priority::background();
                        self.dispatch_group(group.iter().copied(), waiting)
                    })
                })
                .collect();
            let mut outcomes = vec![self.dispatch_group(first.iter().copied(), waiting)];
            for other in others {
                match other.join() {
                    Ok(outcome) => outcomes.push(outcome),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            outcomes
        });
        let mut out = BatchOutcome::default();
        for o in outcomes {
            out.deliveries.extend(o.deliveries);
            out.requests.extend(o.requests);
            out.kv.extend(o.kv);
            out.retries.extend(o.retries);
            out.dispatched += o.dispatched;
            out.customers.extend(o.customers);
        }
        out
    }

    /// Run `items` in order, with a key-value overlay of their own.
    fn dispatch_group<'a>(
        &self,
        items: impl Iterator<Item = &'a (InboxItem, Option<i64>)>,
        waiting: &HashSet<String>,
    ) -> BatchOutcome {
        let mut overlay = KvOverlay::default();
        let mut out = BatchOutcome {
            customers: waiting.clone(),
            ..Default::default()
        };
        for (item, attempts) in items {
            let n = &item.notification;
            let customer = customer(n);
            // The plugins serving now: one removed or replaced mid-batch is not called again.
            let snapshot = self.registry.snapshot();
            let result = if attempts.is_none() && out.customers.contains(customer) {
                Err(Failure::Waits)
            } else {
                let mark = overlay.mark();
                let sees_window = snapshot.plugins.iter().any(|p| {
                    p.api_version.as_deref() == Some("0.2.0") && p.manifest.subscribes_to(n.kind)
                });
                let received = item.received_at;
                sends::with_window(
                    &self.store,
                    &self.config,
                    &mut overlay,
                    n,
                    received,
                    sees_window,
                )
                .and_then(|mut n| {
                    self.delivery.sends().join_status(&self.store, &mut n)?;
                    Ok(n)
                })
                .map_err(|e| format!("cannot read the customer's window or sends: {e:#}"))
                .and_then(|n| Ok((run_chain(&snapshot, &n, &mut overlay, &self.metrics)?, n)))
                .map_err(|fault| {
                    overlay.rollback(mark);
                    Failure::Host(fault)
                })
            };
            match result {
                Ok((actions, n)) => {
                    let n = &n;
                    out.dispatched += 1;
                    if attempts.is_some() {
                        out.retries.push(RetryChange::Done(item.id));
                    }
                    for (delivery, request) in
                        self.deliveries(item.id, &item.dedup_key, n, &actions)
                    {
                        out.deliveries.push(delivery);
                        out.requests.push(request);
                    }
                }
                Err(failure) => {
                    let row = self.failed(item, attempts.unwrap_or(0), customer, failure);
                    if !row.parked {
                        out.customers.insert(row.customer.clone());
                    }
                    out.retries.push(RetryChange::Put(row));
                }
            }
        }
        out.kv = overlay.take_writes();
        out
    }

    /// The waiting row of a notification that failed (or waits behind an earlier one of its
    /// customer), after `attempts` failed attempts before this one.
    fn failed(&self, item: &InboxItem, attempts: i64, customer: &str, f: Failure) -> RetryRow {
        let cfg = &self.config.dispatch;
        let now = now_millis();
        let mut row = RetryRow {
            inbox_id: item.id,
            received_at: item.received_at,
            dedup_key: item.dedup_key.clone(),
            notification: item.notification.clone(),
            customer: customer.to_string(),
            attempts,
            next_at: now,
            parked: false,
            last_error: None,
        };
        let error = match f {
            Failure::Waits => {
                row.last_error =
                    Some("waits for an earlier notification of the same customer".into());
                return row;
            }
            Failure::Host(error) => error,
        };
        let m = &self.metrics;
        m.inc(&m.dispatch_host_failures);
        row.attempts += 1;
        row.parked = row.attempts >= i64::from(cfg.max_attempts);
        let id = &item.notification.id;
        if row.parked {
            tracing::error!(
                inbox_id = item.id,
                id,
                attempts = row.attempts,
                error,
                "dispatch failed for a reason of the host; the notification is parked: see `switchboard notifications list --parked`, then `notifications retry`"
            );
        } else {
            let delay = backoff(cfg, row.attempts);
            row.next_at = now.saturating_add(delay.as_millis().min(i64::MAX as u128) as i64);
            tracing::warn!(
                inbox_id = item.id,
                id,
                attempts = row.attempts,
                error,
                "dispatch failed for a reason of the host; the notification runs again in {delay:?}"
            );
        }
        row.last_error = Some(error);
        row
    }

    /// Turn the chain's actions into outbox rows, refusing what the configuration lacks.
    fn deliveries(
        &self,
        inbox_id: i64,
        key: &str,
        n: &Notification,
        actions: &[(Arc<str>, Action)],
    ) -> Vec<(NewDelivery, Request)> {
        let tags: Vec<&str> = actions
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Tag { tag } => Some(tag.as_str()),
                _ => None,
            })
            .collect();
        let customer = n.sender.as_deref().unwrap_or(&n.id);
        let via = self.config.via(n);
        let mut out = Vec::new();
        for (index, (plugin, action)) in actions.iter().enumerate() {
            let (target, request) = match action {
                Action::Forward { destination, body } => {
                    if !self.config.destinations.contains_key(destination) {
                        tracing::warn!(%plugin, destination, "forward refused: no [destinations.{destination}] in the configuration");
                        continue;
                    }
                    let body = body.clone().unwrap_or_else(|| envelope::build(n, &tags));
                    (destination.as_str(), Request::Forward { body })
                }
                Action::Reply { to, body, quote } => (
                    delivery::WHATSAPP,
                    Request::Reply {
                        to: to.clone(),
                        body: body.clone(),
                        quote: quote.clone(),
                        via: via.clone(),
                    },
                ),
                Action::MarkRead {
                    message_id,
                    typing_indicator,
                } => (
                    delivery::WHATSAPP,
                    Request::MarkRead {
                        message_id: message_id.clone(),
                        via: via.clone(),
                        typing_indicator: *typing_indicator,
                    },
                ),
                Action::Send(send) => {
                    let snapshot = self.registry.snapshot();
                    let fallback = snapshot
                        .plugins
                        .iter()
                        .find(|p| p.name == *plugin)
                        .and_then(|p| p.manifest.sends.window_fallback.as_ref());
                    match sends::request(&self.config, &via, n, plugin, send, fallback) {
                        Ok(queued) => {
                            if queued.fell_back {
                                self.metrics.inc(&self.metrics.sends_fell_back);
                                tracing::info!(%plugin, to = send.to, "send replaced by its fallback template: the customer's window is closed");
                            }
                            (delivery::WHATSAPP, queued.request)
                        }
                        Err(refusal) => {
                            self.metrics.inc(&self.metrics.sends_refused);
                            tracing::warn!(%plugin, to = send.to, "send refused: {refusal}");
                            continue;
                        }
                    }
                }
                Action::Tag { .. } | Action::Stop => continue,
            };
            if target == delivery::WHATSAPP
                && !WhatsApp::supports(self.config.whatsapp.as_ref(), &via)
            {
                let section = if via == Via::Onprem {
                    "[whatsapp] base_url"
                } else {
                    "[whatsapp.cloud]"
                };
                tracing::warn!(%plugin, "{} refused: no {section} in the configuration", request.kind());
                continue;
            }
            // A send goes in the lane of its recipient, who may be backed off alone.
            let lane_customer = match &request {
                Request::Send { to, .. } => to.as_str(),
                _ => customer,
            };
            let delivery = NewDelivery {
                partition: store::partition_of(n, self.store.partitions()),
                kind: request.kind().to_string(),
                target: target.to_string(),
                lane: format!("{target}/{lane_customer}"),
                webhook_id: webhook_id(key, plugin, index),
                request: serde_json::to_string(&request).unwrap_or_default(),
                inbox_id,
                plugin: plugin.to_string(),
            };
            out.push((delivery, request));
        }
        out
    }
}

/// What came of a batch, to commit in one transaction.
#[derive(Default)]
struct BatchOutcome {
    deliveries: Vec<NewDelivery>,
    /// The requests of `deliveries`, as their rows hold them.
    requests: Vec<Request>,
    kv: Vec<store::KvWrite>,
    retries: Vec<RetryChange>,
    /// Notifications run through the chain.
    dispatched: u64,
    /// The customers with notifications waiting once the batch is committed (those done may
    /// still be in: they are read again from the database).
    customers: HashSet<String>,
}

/// Why a notification was not dispatched this time.
enum Failure {
    /// An earlier notification of its customer is waiting.
    Waits,
    /// A failure of the host.
    Host(String),
}

/// The notifications waiting after a failure of the host, as the dispatcher tracks them.
#[derive(Default)]
struct Retries {
    /// The generation of the partitions held that this was read under.
    generation: u64,
    /// Customers with notifications waiting (not parked).
    customers: HashSet<String>,
    /// When to read the waiting notifications again (Unix ms).
    next_poll: i64,
}

/// Whose notifications keep their order: the sender (as in the delivery lanes), else the
/// notification alone.
fn customer(n: &Notification) -> &str {
    n.sender.as_deref().unwrap_or(&n.id)
}

/// The delay before attempt `attempts + 1` of a notification: doubling from
/// `initial_backoff`, capped at `max_backoff`.
fn backoff(cfg: &crate::config::DispatchConfig, attempts: i64) -> Duration {
    let doublings = attempts.clamp(1, 21) as u32 - 1;
    crate::delivery::backoff::exponential(cfg.initial_backoff, cfg.max_backoff, doublings)
}

/// Run the plugins in order on one notification. Returns the permitted actions with the plugin
/// that asked for each, or, when a call failed for a reason of the host (see
/// [`CallError::is_plugin_fault`](crate::plugins::runtime::CallError::is_plugin_fault)), what
/// failed: the notification is then to be run again, none of its actions taken.
pub fn run_chain(
    snapshot: &Snapshot,
    n: &Notification,
    overlay: &mut KvOverlay,
    metrics: &Metrics,
) -> Result<Vec<(Arc<str>, Action)>, String> {
    let mut taken: Vec<(Arc<str>, Action)> = Vec::new();
    let mut prior: Vec<Action> = Vec::new();
    for plugin in &snapshot.plugins {
        if !plugin.manifest.subscribes_to(n.kind) {
            continue;
        }
        // A quarantined version is passed over as if absent: the rest of the chain runs.
        if !plugin.admit() {
            metrics.inc(&metrics.plugin_calls_skipped);
            continue;
        }
        metrics.inc(&metrics.plugin_calls);
        let started = std::time::Instant::now();
        let called = plugin.call(n, &prior, overlay);
        metrics.plugin_call_time(&plugin.name, started.elapsed());
        let actions = match called {
            Ok(actions) => actions,
            Err(e) if !e.is_plugin_fault() => return Err(format!("plugin {}: {e}", plugin.name)),
            Err(e) => {
                metrics.plugin_failed(&plugin.name);
                metrics.plugin_error(&plugin.name, &n.id, e.to_string());
                tracing::warn!(plugin = %plugin.name, version = plugin.version(), id = %n.id, error = %e, "plugin call failed");
                continue;
            }
        };
        let mut stop = false;
        for action in actions {
            if let Err(reason) = permitted(&plugin.manifest.permissions, n, &action) {
                metrics.inc(&metrics.actions_refused);
                if matches!(action, Action::Send(_)) {
                    metrics.inc(&metrics.sends_refused);
                }
                tracing::warn!(plugin = %plugin.name, id = %n.id, "action refused: {reason}");
                continue;
            }
            stop |= action == Action::Stop;
            prior.push(action.clone());
            taken.push((plugin.name.clone(), action));
        }
        if stop {
            break;
        }
    }
    Ok(taken)
}

fn permitted(
    p: &crate::plugins::manifest::Permissions,
    n: &Notification,
    action: &Action,
) -> Result<(), String> {
    use crate::plugins::manifest::ReplyTo;
    match action {
        Action::Forward { destination, .. } if !p.may_forward(destination) => Err(format!(
            "forward to {destination:?} is not granted: add it to [permissions] destinations in the plugin's .toml"
        )),
        Action::Reply { .. } | Action::MarkRead { .. } | Action::Send(_) if !p.reply => {
            Err("replies and mark-read are not granted (nor sends): set [permissions] reply = true in the plugin's .toml".into())
        }
        Action::Send(send)
            if p.reply_to == ReplyTo::Sender && n.sender.as_deref() != Some(send.to.as_str()) =>
        {
            Err(format!(
                "a send to {:?}, who did not send this notification, is not granted: set [permissions] reply_to = \"any\" in the plugin's .toml",
                send.to
            ))
        }
        // Checked before later plugins see it: an invalid send is refused at once, with
        // WhatsApp's limit it breaks, rather than by the API later.
        Action::Send(send) => send
            .validate()
            .map_err(|e| format!("send refused: invalid: {e}")),
        Action::Reply { to, .. }
            if p.reply_to == ReplyTo::Sender && n.sender.as_deref() != Some(to.as_str()) =>
        {
            Err(format!(
                "a reply to {to:?}, who did not send this notification, is not granted: set [permissions] reply_to = \"any\" in the plugin's .toml"
            ))
        }
        Action::Stop if !p.stop => Err(
            "ending the chain is not granted: set [permissions] stop = true in the plugin's .toml"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// A delivery id that stays the same across re-deliveries and restarts: derived from the
/// notification's identity, the plugin and the action's place in the chain.
fn webhook_id(key: &str, plugin: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{key}\n{plugin}\n{index}"));
    format!("msg_{}", &hex::encode(digest)[..32])
}

#[cfg(test)]
mod tests {
    use switchboard_sdk::{Kind, Notification};

    use super::*;
    use crate::plugins::Runtime;

    /// A message from `sender` with id `id`, stored as inbox row `row`.
    fn message(row: i64, sender: &str, id: &str) -> InboxItem {
        let json = format!(
            r#"{{"from":"{sender}","id":"{id}","timestamp":"1","type":"text","text":{{"body":"hi"}}}}"#
        );
        InboxItem {
            id: row,
            received_at: now_millis(),
            dedup_key: format!("m:{id}"),
            notification: Notification::from_item(Kind::Message, &json, None, "test").unwrap(),
        }
    }

    /// A dispatcher over a fresh store whose only plugin is the test plugin in `count` mode:
    /// it reads a key-value counter per sender and forwards `{"id", "count"}` to `sink`.
    struct Setup {
        _dir: tempfile::TempDir,
        db: std::path::PathBuf,
        store: Store,
        dispatcher: Dispatcher,
        rt: tokio::runtime::Runtime,
    }

    fn setup(max_attempts: u32) -> Setup {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let wasm = target.join("test-plugins/misbehave.wasm");
        let wasm = std::fs::read(&wasm).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run the tests with `cargo xtask test`)",
                wasm.display()
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::write(plugins.join("count.wasm"), wasm).unwrap();
        std::fs::write(
            plugins.join("count.toml"),
            "[config]\nmode = \"count\"\ndestination = \"sink\"\n[permissions]\ndestinations = [\"sink\"]\n",
        )
        .unwrap();
        let config: Config = toml::from_str(&format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[dispatch]\nmax_attempts = {max_attempts}\n\
             [destinations.sink]\nurl = \"http://127.0.0.1:1/\"\n"
        ))
        .unwrap();
        let db = dir.path().join("db.sqlite");
        let store = store::open(&db).unwrap();
        let registry = Registry::new(Runtime::new(store.clone(), None).unwrap(), &plugins);
        registry.load_all().unwrap();
        assert_eq!(
            registry.snapshot().plugins.len(),
            1,
            "{:?}",
            registry.errors()
        );
        let (config, metrics) = (Arc::new(config), Arc::new(Metrics::default()));
        let membership = Membership::new(config.cluster.host(), &store);
        let delivery = Delivery::new(
            store.clone(),
            config.clone(),
            metrics.clone(),
            membership.clone(),
        )
        .unwrap();
        let dispatcher = Dispatcher {
            store: store.clone(),
            registry,
            config,
            metrics,
            delivery,
            membership,
            // As with PostgreSQL's default pool, or SQLite on 5 cores: the grouping is tested.
            groups: 4,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Setup {
            _dir: dir,
            db,
            store,
            dispatcher,
            rt,
        }
    }

    impl Setup {
        /// Make key-value reads fail, as a storage error would, or work again.
        fn break_kv(&self, broken: bool) {
            let sql = if broken {
                "ALTER TABLE kv RENAME TO kv_away"
            } else {
                "ALTER TABLE kv_away RENAME TO kv"
            };
            rusqlite::Connection::open(&self.db)
                .unwrap()
                .execute_batch(sql)
                .unwrap();
        }

        /// Dispatch fresh notifications and commit the outcome; returns it (committed).
        fn fresh(&self, items: Vec<InboxItem>, waiting: &HashSet<String>) -> BatchOutcome {
            let handled = items.iter().map(|i| i.id).collect();
            let batch: Vec<_> = items.into_iter().map(|i| (i, None)).collect();
            let mut outcome = self.dispatcher.dispatch_batch(&batch, waiting);
            let committed = BatchOutcome {
                deliveries: std::mem::take(&mut outcome.deliveries),
                kv: std::mem::take(&mut outcome.kv),
                retries: outcome.retries.clone(),
                ..Default::default()
            };
            self.rt
                .block_on(self.store.dispatched(
                    &store::SOLE,
                    handled,
                    committed.deliveries,
                    committed.kv,
                    committed.retries,
                ))
                .unwrap();
            outcome
        }

        /// The forwards committed so far, as `(id, count)`.
        fn forwards(&self) -> Vec<(String, u64)> {
            self.store
                .list_deliveries(false, 100)
                .unwrap()
                .iter()
                .map(|r| {
                    let request: Request = serde_json::from_str(&r.request).unwrap();
                    let Request::Forward { body } = request else {
                        panic!("not a forward: {request:?}")
                    };
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                    (
                        body["id"].as_str().unwrap().to_string(),
                        body["count"].as_u64().unwrap(),
                    )
                })
                .collect()
        }

        /// Run the due retries now, as the dispatcher's loop does.
        fn run_retries(&self, r: &mut Retries) {
            r.next_poll = 0;
            self.dispatcher
                .run_due_retries(self.rt.handle(), &store::SOLE, r);
        }

        fn waiting(&self) -> Vec<(String, i64, bool)> {
            let mut rows = self.store.list_notifications(false, 100).unwrap();
            rows.extend(self.store.list_notifications(true, 100).unwrap());
            rows.sort_by_key(|r| r.inbox_id);
            rows.iter()
                .map(|r| (r.notification.id.clone(), r.attempts, r.parked))
                .collect()
        }
    }

    #[test]
    fn a_large_batch_runs_in_groups_and_keeps_each_customers_order_and_state() {
        let s = setup(10);
        let senders = ["A", "B", "C", "D", "E", "F"];
        let per_sender = 8;
        let batch = |first: usize| -> Vec<InboxItem> {
            (0..per_sender * senders.len())
                .map(|i| {
                    let (sender, seq) = (senders[i % senders.len()], first + i / senders.len());
                    let row = (first - 1) * senders.len() + i + 1;
                    message(row as i64, sender, &format!("{sender}-{seq}"))
                })
                .collect()
        };
        assert!(
            batch(1).len() / MIN_GROUP >= 2,
            "the batch must be large enough to be split"
        );
        for first in [1, 1 + per_sender] {
            let outcome = s.fresh(batch(first), &HashSet::new());
            assert_eq!(outcome.dispatched, (per_sender * senders.len()) as u64);
            assert_eq!(outcome.requests.len(), per_sender * senders.len());
        }
        // The test plugin counts each sender's messages in the key-value store: each sender's
        // forwards are in its order, and each count follows the one before, across batches.
        for sender in senders {
            let mine: Vec<(String, u64)> = s
                .forwards()
                .into_iter()
                .filter(|(id, _)| id.starts_with(&format!("{sender}-")))
                .collect();
            let expected: Vec<(String, u64)> = (1..=2 * per_sender)
                .map(|seq| (format!("{sender}-{seq}"), seq as u64))
                .collect();
            assert_eq!(mine, expected);
        }
    }

    #[test]
    fn a_host_failure_keeps_the_notification_and_its_customers_later_ones_for_later() {
        let s = setup(10);
        s.fresh(vec![message(1, "A", "a1")], &HashSet::new());
        assert_eq!(s.forwards(), [("a1".to_string(), 1)]);

        s.break_kv(true);
        let outcome = s.fresh(
            vec![
                message(2, "A", "a2"),
                message(3, "A", "a3"),
                message(4, "B", "b1"),
            ],
            &HashSet::new(),
        );
        assert!(outcome.deliveries.is_empty() && outcome.kv.is_empty());
        assert_eq!(outcome.dispatched, 0);
        assert_eq!(
            s.waiting(),
            [
                ("a2".to_string(), 1, false),
                ("a3".to_string(), 0, false),
                ("b1".to_string(), 1, false)
            ],
            "a3 waits behind a2 without running"
        );
        let rows = s.store.list_notifications(false, 10).unwrap();
        assert!(
            rows[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("key-value read failed"),
            "{:?}",
            rows[0].last_error
        );
        assert_eq!(
            s.dispatcher.metrics.plugin_failures.load(Ordering::Relaxed),
            0
        );

        // A later notification of A waits too, while one of C goes on.
        s.break_kv(false);
        let waiting = s.store.retry_state(&store::SOLE).unwrap().customers;
        assert_eq!(waiting, HashSet::from(["A".to_string(), "B".to_string()]));
        let outcome = s.fresh(vec![message(5, "A", "a4"), message(6, "C", "c1")], &waiting);
        assert_eq!(outcome.dispatched, 1);
        assert_eq!(s.forwards().last().unwrap(), &("c1".to_string(), 1));

        // Once due, they run in each customer's order, and their actions are taken.
        let mut retries = Retries::default();
        for _ in 0..50 {
            if s.waiting().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            s.run_retries(&mut retries);
        }
        assert!(s.waiting().is_empty(), "{:?}", s.waiting());
        let forwards = s.forwards();
        let a: Vec<_> = forwards
            .iter()
            .filter(|(id, _)| id.starts_with('a'))
            .collect();
        assert_eq!(
            a.iter()
                .map(|(id, c)| (id.as_str(), *c))
                .collect::<Vec<_>>(),
            [("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4)],
            "each once, in order"
        );
        assert!(forwards.contains(&("b1".to_string(), 1)));
    }

    #[test]
    fn repeated_host_failures_park_the_notification_and_free_its_customer() {
        let s = setup(2);
        s.break_kv(true);
        s.fresh(
            vec![message(1, "A", "a1"), message(2, "A", "a2")],
            &HashSet::new(),
        );
        let mut retries = Retries::default();
        std::thread::sleep(Duration::from_millis(1100)); // the first backoff: 1 s
        s.run_retries(&mut retries);
        assert_eq!(
            s.waiting(),
            [("a1".to_string(), 2, true), ("a2".to_string(), 0, false)],
            "parked after 2 attempts; a2 no longer waits for it"
        );
        let due = s.store.due_retries(&store::SOLE, now_millis(), 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].notification.id, "a2");
        s.run_retries(&mut retries);
        assert_eq!(
            s.dispatcher
                .metrics
                .notifications_parked
                .load(Ordering::Relaxed),
            1
        );

        // An operator retries it once storage is back.
        s.break_kv(false);
        let parked = s.store.list_notifications(true, 10).unwrap();
        assert_eq!(
            s.rt.block_on(s.store.retry_parked(Some(parked[0].inbox_id)))
                .unwrap(),
            1
        );
        assert_eq!(
            s.rt.block_on(s.store.retry_parked(Some(parked[0].inbox_id)))
                .unwrap(),
            0
        );
        s.run_retries(&mut retries);
        s.run_retries(&mut retries);
        assert!(
            s.waiting().iter().all(|(id, _, _)| id != "a1"),
            "{:?}",
            s.waiting()
        );
        assert!(
            s.forwards().contains(&("a1".to_string(), 1)),
            "{:?}",
            s.forwards()
        );
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let cfg = crate::config::DispatchConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        let delays: Vec<_> = (1..=5).map(|a| backoff(&cfg, a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350, 350]);
        assert_eq!(backoff(&cfg, i64::MAX), cfg.max_backoff);
    }
}
