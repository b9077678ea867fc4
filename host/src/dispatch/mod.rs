//! Dispatch: run every stored notification through the plugin chain and turn the actions into
//! deliveries, committed in one transaction with the notification marked handled.

mod envelope;

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
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

/// How many notifications one dispatch transaction covers at most.
const BATCH: usize = 256;

/// Wakes the dispatcher when new notifications are stored.
#[derive(Clone)]
pub struct Wake(SyncSender<()>);

impl Wake {
    /// Tell the dispatcher there is work.
    pub fn wake(&self) {
        let _ = self.0.try_send(());
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

/// A wake handle and its receiving end.
pub fn channel() -> (Wake, Receiver<()>) {
    let (tx, rx) = sync_channel(1);
    (Wake(tx), rx)
}

impl Dispatcher {
    /// Run until `stop` is set and no work is left, on the calling thread (not a runtime's:
    /// it blocks on `handle` for the store's writes).
    pub fn run(
        self,
        handle: tokio::runtime::Handle,
        wake: Receiver<()>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) {
        loop {
            let items = match self.store.pending_inbox(0, BATCH) {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read the inbox");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if items.is_empty() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                match wake.recv_timeout(Duration::from_millis(500)) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let count = items.len();
            let (done, deliveries, kv) = self.dispatch_batch(items);
            let write = self.store.write(move |txn| {
                let rows = store::outbox::insert(txn, deliveries)?;
                store::kv::apply(txn, &kv)?;
                for id in &done {
                    store::inbox::mark_done(txn, *id)?;
                }
                Ok(rows)
            });
            match handle.block_on(write) {
                Ok(rows) => {
                    self.metrics
                        .add(&self.metrics.notifications_dispatched, count as u64);
                    self.delivery.enqueue(rows);
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot store the outcome of dispatch; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn dispatch_batch(
        &self,
        items: Vec<InboxItem>,
    ) -> (Vec<i64>, Vec<NewDelivery>, Vec<store::KvWrite>) {
        let snapshot = self.registry.snapshot();
        let mut overlay = KvOverlay::default();
        let mut done = Vec::with_capacity(items.len());
        let mut deliveries = Vec::new();
        for item in items {
            done.push(item.id);
            let n: Notification = match serde_json::from_str(&item.notification) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(inbox_id = item.id, error = %e, "stored notification is unreadable; skipped");
                    continue;
                }
            };
            let actions = run_chain(&snapshot, &n, &mut overlay, &self.metrics);
            deliveries.extend(self.deliveries(&item.dedup_key, &n, &actions));
        }
        (done, deliveries, overlay.take_writes())
    }

    /// Turn the chain's actions into outbox rows, refusing what the configuration lacks.
    fn deliveries(
        &self,
        key: &str,
        n: &Notification,
        actions: &[(Arc<str>, Action)],
    ) -> Vec<NewDelivery> {
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
            out.push(NewDelivery {
                kind: request.kind().to_string(),
                target: target.to_string(),
                lane: format!("{target}/{customer}"),
                webhook_id: webhook_id(key, plugin, index),
                request: serde_json::to_string(&request).unwrap_or_default(),
            });
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
            if let Err(reason) = permitted(&plugin.manifest.permissions, &action) {
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

fn permitted(p: &crate::plugins::manifest::Permissions, action: &Action) -> Result<(), String> {
    match action {
        Action::Forward { destination, .. } if !p.may_forward(destination) => Err(format!(
            "forward to {destination:?} is not granted: add it to [permissions] destinations in the plugin's .toml"
        )),
        Action::Reply { .. } | Action::MarkRead { .. } if !p.reply => {
            Err("replies and mark-read are not granted: set [permissions] reply = true in the plugin's .toml".into())
        }
        _ => Ok(()),
    }
}

/// A delivery id that stays the same across re-deliveries and restarts: derived from the
/// notification's identity, the plugin and the action's place in the chain.
fn webhook_id(key: &str, plugin: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{key}\n{plugin}\n{index}"));
    format!("msg_{}", &hex::encode(digest)[..32])
}
