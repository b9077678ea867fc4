//! Calls of the WhatsApp API (replies, mark-read, typed sends): paced per business number, and
//! their failures classified by WhatsApp's error codes: dead-lettered with the code and title,
//! retried after pacing the number down, backing off one recipient, or retried with back-off.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_sdk::send::{ApiError, Outcome, classify, recipient_backoff};
use switchboard_sdk::{Kind, Notification, SentBy};
use tokio::sync::mpsc;

use super::queue::Attempt;
use super::{Delivery, Request};
use crate::http_client::{Response, snippet};
use crate::store::{DeliveryOutcome, SendStatus, SentMessage, Store, now_millis};

/// How long a number pauses after WhatsApp's spam-rate limit (131048, 471).
const SPAM_PAUSE: Duration = Duration::from_secs(60);
/// How long a number pauses after a throughput error that asked for no particular wait.
const THROUGHPUT_PAUSE: Duration = Duration::from_secs(1);

impl Delivery {
    /// Carry out a WhatsApp API request: wait for its number's slot (messages only; marking
    /// read sends nothing to the customer), call, classify.
    /// One attempt of a WhatsApp request, classified, with the HTTP status answered, if any.
    pub(super) async fn whatsapp(
        &self,
        attempt: &Attempt,
        request: &Request,
    ) -> (DeliveryOutcome, Option<u16>) {
        let config = self.config.whatsapp.as_ref();
        let (via, paced) = match request {
            Request::Reply { via, .. } | Request::Send { via, .. } => (via, true),
            Request::MarkRead { via, .. } => (via, false),
            Request::Forward { .. } => {
                let error = "a forward is not a WhatsApp request".into();
                return (DeliveryOutcome::Dead { error }, None);
            }
        };
        let number = via.number(config);
        if paced {
            let wait = self.pacer.reserve(&number).await;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let result = match request {
            Request::Reply {
                to, body, quote, ..
            } => {
                self.whatsapp
                    .send_text(via, to, body, quote.as_deref())
                    .await
            }
            Request::Send { body, .. } => self.whatsapp.send_message(via, body).await,
            Request::MarkRead {
                message_id,
                typing_indicator,
                ..
            } => {
                self.whatsapp
                    .mark_read(via, message_id, *typing_indicator)
                    .await
            }
            Request::Forward { .. } => Err(anyhow::anyhow!("a forward is not a WhatsApp request")),
        };
        if let (Ok(response), Request::Send { .. }) = (&result, request)
            && response.status.is_success()
        {
            self.sends
                .delivered(attempt.task.id, request, &response.body);
        }
        let status = result.as_ref().ok().map(|r| r.status.as_u16());
        let outcome = self.classify_whatsapp(attempt, &number, result).await;
        (outcome, status)
    }

    /// The record of delivered sends and their statuses.
    pub fn sends(&self) -> &SendLog {
        &self.sends
    }

    async fn classify_whatsapp(
        &self,
        attempt: &Attempt,
        number: &str,
        result: anyhow::Result<Response>,
    ) -> DeliveryOutcome {
        let response = match result {
            Ok(r) if r.status.is_success() => return DeliveryOutcome::Delivered,
            Ok(r) => r,
            Err(e) => return self.retry(attempt, format!("{e:#}"), None),
        };
        let error = ApiError::from_body(response.body.as_bytes());
        let status = response.status.as_u16();
        let described = || match &error {
            Some(e) => format!("HTTP {status}, {e}"),
            None => format!("{}: {}", response.status, snippet(&response.body)),
        };
        match classify(Some(status), error.as_ref(), response.retry_after) {
            Outcome::DeadLetter { reason, .. } => DeliveryOutcome::Dead {
                error: format!("{}: {reason}", described()),
            },
            Outcome::PaceDown { retry_after, .. } => {
                let pause = retry_after.unwrap_or(THROUGHPUT_PAUSE);
                self.pacer.slow_down(number, pause).await;
                self.retry(
                    attempt,
                    format!("{} (throughput: number {number} paced down)", described()),
                    Some(pause),
                )
            }
            Outcome::BackOffRecipient { .. } => {
                let wait = recipient_backoff(attempt.attempts.clamp(0, 16) as u32);
                self.retry(
                    attempt,
                    format!("{} (this recipient backed off {wait:?})", described()),
                    Some(wait),
                )
            }
            Outcome::PauseNumber { .. } => {
                tracing::error!(
                    number,
                    error = described(),
                    "WhatsApp's spam-rate limit: sends from this number are paused for {SPAM_PAUSE:?}; \
                     check the number's quality rating"
                );
                self.pacer.slow_down(number, SPAM_PAUSE).await;
                self.retry(attempt, described(), Some(SPAM_PAUSE))
            }
            Outcome::Retry { after } => self.retry(attempt, described(), after),
            _ => self.retry(attempt, described(), None),
        }
    }
}

/// Delivered sends and the statuses WhatsApp reports for them, on their way to the store
/// (written in batches by [`record_sends`]); the latest sends are also kept in memory, as a
/// status may come before its send's record is committed.
pub struct SendLog {
    tx: mpsc::UnboundedSender<Event>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    recent: Mutex<Recent>,
}

enum Event {
    Sent(SentMessage),
    Status(SendStatus),
}

/// The latest delivered sends by WhatsApp message id, at most [`RECENT`].
#[derive(Default)]
struct Recent {
    by_id: HashMap<String, SentBy>,
    order: VecDeque<String>,
}

const RECENT: usize = 10_000;

impl Default for SendLog {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        SendLog {
            tx,
            rx: Mutex::new(Some(rx)),
            recent: Mutex::new(Recent::default()),
        }
    }
}

impl SendLog {
    /// The send `request`, delivered as row `delivery_id`, got an answer `body` that holds the
    /// message's WhatsApp id (`messages[0].id` on both APIs).
    fn delivered(&self, delivery_id: i64, request: &Request, body: &str) {
        let Request::Send {
            to,
            kind,
            plugin,
            notification,
            ..
        } = request
        else {
            return;
        };
        let wa_id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|b| b.pointer("/messages/0/id")?.as_str().map(str::to_string));
        let Some(wa_id) = wa_id else {
            tracing::warn!(
                delivery_id,
                "the WhatsApp API accepted a send without giving its message id: its statuses \
                 cannot be joined to it"
            );
            return;
        };
        if let Ok(mut recent) = self.recent.lock() {
            recent.by_id.insert(
                wa_id.clone(),
                SentBy::new(plugin, notification, delivery_id.max(0) as u64),
            );
            recent.order.push_back(wa_id.clone());
            while recent.order.len() > RECENT {
                if let Some(old) = recent.order.pop_front() {
                    recent.by_id.remove(&old);
                }
            }
        }
        let _ = self.tx.send(Event::Sent(SentMessage {
            wa_id,
            delivery_id,
            plugin: plugin.clone(),
            notification_id: notification.clone(),
            recipient: to.clone(),
            kind: kind.clone(),
            sent_at: now_millis(),
            status: None,
            error: None,
            status_at: None,
        }));
    }

    /// For a status notification of a send of this host: which send it belongs to (set on
    /// `n`), and its status recorded. Blocks on a store read: not for async code.
    pub fn join_status(&self, store: &Store, n: &mut Notification) -> anyhow::Result<()> {
        if n.kind != Kind::Status {
            return Ok(());
        }
        let recent = self
            .recent
            .lock()
            .ok()
            .and_then(|r| r.by_id.get(&n.id).cloned());
        let sent_by = match recent {
            Some(s) => Some(s),
            None => store
                .sent_message(&n.id)?
                .map(|s| SentBy::new(s.plugin, s.notification_id, s.delivery_id.max(0) as u64)),
        };
        let Some(sent_by) = sent_by else {
            return Ok(());
        };
        n.sent_by = Some(sent_by);
        let error = n.status().ok().and_then(|s| {
            let e = s.errors?.into_iter().next()?;
            Some(
                format!("{} {}", e.code, e.title.unwrap_or_default())
                    .trim()
                    .to_string(),
            )
        });
        let _ = self.tx.send(Event::Status(SendStatus {
            wa_id: n.id.clone(),
            status: n.status.clone().unwrap_or_default(),
            error,
            at: now_millis(),
        }));
        Ok(())
    }
}

/// Write delivered sends and reported statuses to the store in batches, in the order they
/// came (a send's record before its statuses). Runs for as long as the delivery runs.
pub async fn record_sends(delivery: Arc<Delivery>) {
    let Some(mut rx) = delivery.sends.rx.lock().ok().and_then(|mut rx| rx.take()) else {
        return;
    };
    while let Some(first) = rx.recv().await {
        let (mut sent, mut statuses) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(event) = next {
            match event {
                Event::Sent(s) => sent.push(s),
                Event::Status(s) => statuses.push(s),
            }
            next = if sent.len() + statuses.len() < 1024 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        // Sends first: a status in the same batch finds its send's row.
        while let Err(e) = delivery
            .store
            .record_sent(sent.clone(), statuses.clone())
            .await
        {
            tracing::error!(error = %format!("{e:#}"), "cannot record delivered sends; trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
