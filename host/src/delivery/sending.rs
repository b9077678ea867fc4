//! Calls of the WhatsApp API (replies, mark-read, typed sends): paced per business number, and
//! their failures classified by WhatsApp's error codes: dead-lettered with the code and title,
//! retried after pacing the number down, backing off one recipient, or retried with back-off.

use std::time::Duration;

use switchboard_sdk::send::{ApiError, Outcome, classify, recipient_backoff};

use super::pacing::Pacer;
use super::queue::Attempt;
use super::{Delivery, Request};
use crate::http_client::{Response, snippet};
use crate::store::DeliveryOutcome;

/// How long a number pauses after WhatsApp's spam-rate limit (131048, 471).
const SPAM_PAUSE: Duration = Duration::from_secs(60);
/// How long a number pauses after a throughput error that asked for no particular wait.
const THROUGHPUT_PAUSE: Duration = Duration::from_secs(1);

impl Delivery {
    /// Carry out a WhatsApp API request: wait for its number's slot (messages only; marking
    /// read sends nothing to the customer), call, classify.
    pub(super) async fn whatsapp(&self, attempt: &Attempt, request: &Request) -> DeliveryOutcome {
        let config = self.config.whatsapp.as_ref();
        let (via, paced) = match request {
            Request::Reply { via, .. } | Request::Send { via, .. } => (via, true),
            Request::MarkRead { via, .. } => (via, false),
            Request::Forward { .. } => {
                return DeliveryOutcome::Dead {
                    error: "a forward is not a WhatsApp request".into(),
                };
            }
        };
        let number = via.number(config);
        if paced {
            let wait = self.pacer.reserve(&number);
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
        self.classify_whatsapp(attempt, &self.pacer, &number, result)
    }

    fn classify_whatsapp(
        &self,
        attempt: &Attempt,
        pacer: &Pacer,
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
                pacer.slow_down(number, pause);
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
                pacer.slow_down(number, SPAM_PAUSE);
                self.retry(attempt, described(), Some(SPAM_PAUSE))
            }
            Outcome::Retry { after } => self.retry(attempt, described(), after),
            _ => self.retry(attempt, described(), None),
        }
    }
}
