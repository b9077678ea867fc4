//! Dispatch: run every stored notification through the plugin chain and turn the actions into
//! deliveries, committed in one transaction with the notification marked handled.

mod envelope;
mod load;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchboard_sdk::{Action, Notification};

use crate::config::Config;
use crate::delivery::{self, Delivery, Request};
use crate::metrics::Metrics;
use crate::plugins::kv::KvOverlay;
use crate::plugins::{Registry, Snapshot};
use crate::store::{self, InboxItem, NewDelivery, Store};
use crate::whatsapp::{Via, WhatsApp};
use load::Load;
pub use load::Storing;

/// How many notifications one dispatch transaction covers at most.
const BATCH: usize = 256;

/// Notifications handed over in memory at most; past that they wait in the database only.
const HANDOFF_CAPACITY: usize = 4 * BATCH;

/// Notifications committed to the inbox, handed from the store's writer to the dispatcher in
/// commit order, so the dispatcher need not read back what ingress just wrote. When the
/// dispatcher falls behind, the hand-over stops (`spilled`) and it reads the inbox instead.
struct Handoff {
    queue: Mutex<VecDeque<InboxItem>>,
    spilled: AtomicBool,
}

/// The ingress side of the dispatcher: hands over stored notifications and wakes it, and
/// tells it when ingress is busy.
#[derive(Clone)]
pub struct Inbox {
    handoff: Arc<Handoff>,
    wake: SyncSender<()>,
    load: Arc<Load>,
}

impl Inbox {
    /// Count a webhook as waiting for the inbox's commit while the guard lives.
    pub fn storing(&self) -> Storing<'_> {
        self.load.storing()
    }

    /// What the store calls right after committing fresh notifications, in commit order.
    pub fn on_commit(&self) -> store::OnCommit {
        let inbox = self.clone();
        Box::new(move |items| inbox.hand_over(items))
    }

    fn hand_over(&self, items: Vec<InboxItem>) {
        let h = &self.handoff;
        // The inbox's writer never waits for the queue: the dispatcher, which runs at idle
        // priority, may have been preempted holding it.
        let handed = !h.spilled.load(Ordering::SeqCst)
            && match h.queue.try_lock() {
                Ok(mut queue) if queue.len() + items.len() <= HANDOFF_CAPACITY => {
                    queue.extend(items);
                    true
                }
                _ => false,
            };
        if !handed {
            self.spill();
        }
        self.wake();
    }

    /// Make the dispatcher read the inbox from the database next, not the hand-over.
    fn spill(&self) {
        self.handoff.spilled.store(true, Ordering::SeqCst);
    }

    /// Tell the dispatcher there is work (or that it should look at the inbox again).
    pub fn wake(&self) {
        let _ = self.wake.try_send(());
    }
}

/// The dispatcher's inputs.
pub struct Dispatcher {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<Delivery>,
}

/// The ingress side and what the dispatcher receives from it.
pub fn channel() -> (Inbox, Receiver<()>) {
    let (tx, rx) = sync_channel(1);
    let handoff = Handoff {
        queue: Mutex::new(VecDeque::new()),
        // Start from the database: what was stored before a restart waits there.
        spilled: AtomicBool::new(true),
    };
    let inbox = Inbox {
        handoff: Arc::new(handoff),
        wake: tx,
        load: Arc::new(Load::default()),
    };
    (inbox, rx)
}

impl Dispatcher {
    /// Run until `stop` is set and no work is left, on the calling thread (not a runtime's:
    /// it blocks on `handle` for the store's writes). Notifications are handled in inbox
    /// order; `cursor` is the last one handled.
    pub fn run(
        self,
        handle: tokio::runtime::Handle,
        inbox: Inbox,
        wake: Receiver<()>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut cursor = loop {
            match self.store.dispatch_cursor() {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read the dispatch cursor");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        loop {
            // The flag first: what is in the queue was committed before it is taken, so before
            // the database is read.
            let spilled = inbox.handoff.spilled.swap(false, Ordering::SeqCst);
            let handed = std::mem::take(
                &mut *inbox
                    .handoff
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            // After a spill everything handed over is in the database too, in order with what
            // was not; items read there and handed over as well are skipped by the cursor.
            let mut items: Vec<InboxItem> = if spilled {
                match self.store.pending_inbox(cursor, BATCH) {
                    Ok(items) => {
                        if items.len() == BATCH {
                            inbox.spill();
                        }
                        items
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot read the inbox");
                        inbox.spill();
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
            } else {
                handed.into_iter().filter(|i| i.id > cursor).collect()
            };
            if items.is_empty() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                match wake.recv_timeout(Duration::from_millis(500)) {
                    Ok(()) => {}
                    // Idle: look at the database once more, in case anything was missed.
                    Err(RecvTimeoutError::Timeout) => {
                        inbox.spill();
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
            while !items.is_empty() {
                let held = inbox.load.yield_to_ingress(items[0].received_at);
                if !held.is_zero() {
                    self.metrics
                        .add(&self.metrics.dispatch_held_ms, held.as_millis() as u64);
                }
                let batch: Vec<InboxItem> = items.drain(..items.len().min(BATCH)).collect();
                let last = batch.last().map_or(cursor, |i| i.id);
                // A batch whose outcome cannot be stored is dispatched again, as after a crash.
                loop {
                    let (deliveries, requests, kv) = self.dispatch_batch(&batch);
                    if self.registry.interrupted() {
                        tracing::info!(
                            "shutting down: the notifications of the batch in progress are dispatched again at the next start"
                        );
                        return;
                    }
                    match handle.block_on(self.store.dispatched(last, deliveries, kv)) {
                        Ok(rows) => {
                            self.metrics
                                .add(&self.metrics.notifications_dispatched, batch.len() as u64);
                            self.delivery
                                .enqueue(rows.into_iter().zip(requests).collect());
                            cursor = last;
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "cannot store the outcome of dispatch; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
            }
        }
    }

    /// The deliveries of a batch, with their requests as the store's rows will hold them, and
    /// the plugins' key-value writes.
    fn dispatch_batch(
        &self,
        items: &[InboxItem],
    ) -> (Vec<NewDelivery>, Vec<Request>, Vec<store::KvWrite>) {
        let mut overlay = KvOverlay::default();
        let (mut deliveries, mut requests) = (Vec::new(), Vec::new());
        for item in items {
            // The plugins serving now: one removed or replaced mid-batch is not called again.
            let snapshot = self.registry.snapshot();
            let actions = run_chain(&snapshot, &item.notification, &mut overlay, &self.metrics);
            for (delivery, request) in
                self.deliveries(&item.dedup_key, &item.notification, &actions)
            {
                deliveries.push(delivery);
                requests.push(request);
            }
        }
        (deliveries, requests, overlay.take_writes())
    }

    /// Turn the chain's actions into outbox rows, refusing what the configuration lacks.
    fn deliveries(
        &self,
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
                Action::MarkRead { message_id } => (
                    delivery::WHATSAPP,
                    Request::MarkRead {
                        message_id: message_id.clone(),
                        via: via.clone(),
                    },
                ),
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
            let delivery = NewDelivery {
                kind: request.kind().to_string(),
                target: target.to_string(),
                lane: format!("{target}/{customer}"),
                webhook_id: webhook_id(key, plugin, index),
                request: serde_json::to_string(&request).unwrap_or_default(),
            };
            out.push((delivery, request));
        }
        out
    }
}

/// Run the plugins in order on one notification. Returns the permitted actions with the plugin
/// that asked for each.
pub fn run_chain(
    snapshot: &Snapshot,
    n: &Notification,
    overlay: &mut KvOverlay,
    metrics: &Metrics,
) -> Vec<(Arc<str>, Action)> {
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
        let actions = match plugin.call(n, &prior, overlay) {
            Ok(actions) => actions,
            Err(e) => {
                metrics.plugin_failed(&plugin.name);
                tracing::warn!(plugin = %plugin.name, version = plugin.version(), id = %n.id, error = %e, "plugin call failed");
                continue;
            }
        };
        let mut stop = false;
        for action in actions {
            if let Err(reason) = permitted(&plugin.manifest.permissions, n, &action) {
                metrics.inc(&metrics.actions_refused);
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
    taken
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
        Action::Reply { .. } | Action::MarkRead { .. } if !p.reply => {
            Err("replies and mark-read are not granted: set [permissions] reply = true in the plugin's .toml".into())
        }
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

    fn items(ids: std::ops::Range<i64>) -> Vec<InboxItem> {
        let json = r#"{"from":"1","id":"a","timestamp":"1","type":"text","text":{"body":"hi"}}"#;
        let notification = Notification::from_item(Kind::Message, json, None, "test").unwrap();
        ids.map(|id| InboxItem {
            id,
            received_at: 0,
            dedup_key: format!("m:{id}"),
            notification: notification.clone(),
        })
        .collect()
    }

    #[test]
    fn the_inbox_writer_never_waits_for_the_dispatcher() {
        let (inbox, _wake) = channel();
        inbox.handoff.spilled.store(false, Ordering::SeqCst);
        inbox.hand_over(items(1..3));
        assert_eq!(inbox.handoff.queue.lock().unwrap().len(), 2);

        // The dispatcher holds the queue (preempted, say): the hand-over goes on without it and
        // sends the dispatcher to the database.
        let held = inbox.handoff.queue.lock().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = inbox.clone();
        std::thread::spawn(move || {
            writer.hand_over(items(3..4));
            let _ = done_tx.send(());
        });
        assert!(
            done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the hand-over waited for the lock"
        );
        assert_eq!(held.len(), 2, "the item went to the database only");
        assert!(inbox.handoff.spilled.load(Ordering::SeqCst));
    }
}
