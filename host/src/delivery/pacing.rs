//! Throughput per business number: WhatsApp takes about 80 messages a second from a number by
//! default (error 130429 past it). Sends from one number are spaced evenly at its rate, and a
//! throughput error pushes the number's next slot back.
//!
//! With several hosts on one database ([`Storage::shared`](crate::store::Storage::shared)),
//! the rate is the number's across all of them: each host reserves the number's sending time
//! from the database ([`Storage::reserve_pacing`](crate::store::Storage::reserve_pacing)) in
//! blocks of slots covering about [`BLOCK`], so a high rate costs one round trip per block,
//! not per send. When the database does not answer, the host paces alone for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::config::WhatsAppConfig;
use crate::store::{Store, now_millis};

/// How much of a number's sending time a host reserves at once.
const BLOCK: Duration = Duration::from_millis(50);
/// The longest wait for a reservation before this send is paced by this host alone.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the host paces alone after a reservation failed, before it asks the database again.
const ALONE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Refuse rates that are not a positive number of messages a second.
pub fn check(config: &WhatsAppConfig) -> anyhow::Result<()> {
    let bad = |r: f64| !(r.is_finite() && r > 0.0);
    if bad(config.rate) {
        bail!(
            "[whatsapp] rate must be a positive number of messages a second, got {}",
            config.rate
        );
    }
    for (number, rate) in &config.rates {
        if bad(*rate) {
            bail!(
                "[whatsapp.rates] {number:?} must be a positive number of messages a second, got {rate}"
            );
        }
    }
    Ok(())
}

/// The next free slot of each business number.
pub struct Pacer {
    default: f64,
    rates: HashMap<String, f64>,
    /// This host's own slots: all of them on one host, or while the database does not answer.
    next: Mutex<HashMap<String, Instant>>,
    shared: Option<Shared>,
}

impl Pacer {
    /// Pace at the rates of `[whatsapp]`: across the hosts of `shared`, the store they share,
    /// or in this process alone.
    pub fn new(config: Option<&WhatsAppConfig>, shared: Option<Store>) -> Pacer {
        Pacer {
            default: config.map_or(80.0, |c| c.rate),
            rates: config
                .map(|c| c.rates.clone().into_iter().collect())
                .unwrap_or_default(),
            next: Mutex::new(HashMap::new()),
            shared: shared.map(|store| Shared {
                store,
                blocks: Mutex::new(HashMap::new()),
                failed_at: Mutex::new(None),
            }),
        }
    }

    /// Take the next slot of `number`: how long to wait before sending in it.
    pub async fn reserve(&self, number: &str) -> Duration {
        let rate = self.rates.get(number).copied().unwrap_or(self.default);
        if let Some(shared) = &self.shared
            && let Some(at) = shared.slot(number, rate).await
        {
            return Duration::from_millis((at - now_millis()).max(0) as u64);
        }
        self.local_slot(number, rate)
    }

    fn local_slot(&self, number: &str, rate: f64) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let now = Instant::now();
        let Ok(mut next) = self.next.lock() else {
            return Duration::ZERO;
        };
        let slot = next
            .get(number)
            .copied()
            .filter(|s| *s > now)
            .unwrap_or(now);
        next.insert(number.to_string(), slot + interval);
        slot - now
    }

    /// WhatsApp said the number is over its throughput: send nothing more from it for `pause`
    /// (from any host, when shared).
    pub async fn slow_down(&self, number: &str, pause: Duration) {
        let until = Instant::now() + pause;
        if let Ok(mut next) = self.next.lock() {
            let slot = next.entry(number.to_string()).or_insert(until);
            *slot = (*slot).max(until);
        }
        if let Some(shared) = &self.shared {
            shared
                .pause(number, now_millis() + pause.as_millis() as i64)
                .await;
        }
    }
}

/// Pacing across the hosts that share the store.
struct Shared {
    store: Store,
    /// Each number's slots reserved and not used yet; a number's reservations are made one at
    /// a time, in the order its sends asked.
    blocks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Block>>>>,
    /// When a reservation last failed.
    failed_at: Mutex<Option<Instant>>,
}

/// A number's reserved slots not used yet.
#[derive(Default)]
struct Block {
    /// The next slot, Unix ms.
    next: f64,
    left: u32,
    /// Between two slots, ms.
    interval: f64,
    /// No reservation starts before this, Unix ms (a throughput error's pause).
    not_before: i64,
}

impl Shared {
    /// The next slot of `number` at `rate`, Unix ms; `None` when the database did not answer
    /// (lately), and the caller paces alone.
    async fn slot(&self, number: &str, rate: f64) -> Option<i64> {
        let block = self.block(number)?;
        let mut block = block.lock().await;
        // Checked once it is this send's turn: the sends that waited behind a failed
        // reservation do not wait for one each.
        if self
            .failed_at
            .lock()
            .ok()?
            .is_some_and(|t| t.elapsed() < ALONE_AFTER_FAILURE)
        {
            return None;
        }
        let now = now_millis();
        // A slot an interval in the past goes with the rest of its block: the number is not
        // busy, and slots used late would go out bunched together.
        if block.left == 0 || block.next < (now as f64) - block.interval {
            let slots = ((rate * BLOCK.as_secs_f64()) as u32).max(1);
            let span = (f64::from(slots) * 1000.0 / rate).ceil() as i64;
            let start = now.max(block.not_before);
            let reserved = tokio::time::timeout(
                RESERVE_TIMEOUT,
                self.store.reserve_pacing(number, start, span),
            )
            .await
            .map_err(|_| anyhow::anyhow!("no answer in {RESERVE_TIMEOUT:?}"))
            .and_then(|r| r);
            match reserved {
                Ok(at) => {
                    if let Ok(mut failed) = self.failed_at.lock()
                        && failed.take().is_some()
                    {
                        tracing::info!("sends are paced across the hosts again");
                    }
                    block.next = at as f64;
                    block.left = slots;
                    block.interval = span as f64 / f64::from(slots);
                }
                Err(e) => {
                    tracing::warn!(
                        number,
                        error = %format!("{e:#}"),
                        "cannot reserve the number's sending slots in the database: this host \
                         paces its sends alone for {ALONE_AFTER_FAILURE:?}"
                    );
                    if let Ok(mut failed) = self.failed_at.lock() {
                        *failed = Some(Instant::now());
                    }
                    return None;
                }
            }
        }
        let at = block.next;
        block.next += block.interval;
        block.left -= 1;
        Some(at.ceil() as i64)
    }

    /// No slot of `number` before `until` (Unix ms), on any host: the slots this host holds
    /// are dropped, and the shared row is pushed.
    async fn pause(&self, number: &str, until: i64) {
        let Some(block) = self.block(number) else {
            return;
        };
        let mut block = block.lock().await;
        *block = Block {
            not_before: until.max(block.not_before),
            ..Block::default()
        };
        let paused =
            tokio::time::timeout(RESERVE_TIMEOUT, self.store.pause_pacing(number, until)).await;
        if !matches!(paused, Ok(Ok(()))) {
            tracing::warn!(
                number,
                "cannot record the number's pause in the database: the other hosts may go on \
                 sending from it"
            );
        }
    }

    fn block(&self, number: &str) -> Option<Arc<tokio::sync::Mutex<Block>>> {
        let mut blocks = self.blocks.lock().ok()?;
        Some(blocks.entry(number.to_string()).or_default().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_of_a_number_are_spaced_at_its_rate_and_numbers_are_independent() {
        let mut config: WhatsAppConfig =
            toml::from_str("rate = 10.0\n[rates]\nslow = 2.0\n").unwrap();
        check(&config).unwrap();
        let pacer = Pacer::new(Some(&config), None);
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(pacer.reserve("a").await);
        }
        // The fifth send of a burst waits for four intervals of 100 ms (less the time taken).
        assert!(waits[0].is_zero());
        assert!(waits[4] > Duration::from_millis(350), "{waits:?}");
        assert!(pacer.reserve("b").await.is_zero());
        pacer.reserve("slow").await;
        assert!(pacer.reserve("slow").await > Duration::from_millis(450));
        pacer.slow_down("b", Duration::from_secs(5)).await;
        assert!(pacer.reserve("b").await > Duration::from_secs(4));
        config.rate = 0.0;
        assert!(
            check(&config)
                .unwrap_err()
                .to_string()
                .contains("[whatsapp] rate")
        );
    }

    #[tokio::test]
    async fn pacers_sharing_a_store_take_turns_and_share_a_pause() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("db.sqlite")).unwrap();
        let config: WhatsAppConfig = toml::from_str("rate = 10.0").unwrap();
        let a = Pacer::new(Some(&config), Some(store.clone()));
        let b = Pacer::new(Some(&config), Some(store));
        let mut waits = Vec::new();
        for _ in 0..3 {
            waits.push(a.reserve("n").await);
            waits.push(b.reserve("n").await);
        }
        // Six sends of two hosts at 10/s: the last waits five intervals.
        assert!(waits[0] <= Duration::from_millis(10), "{waits:?}");
        assert!(waits[5] > Duration::from_millis(450), "{waits:?}");
        a.slow_down("n", Duration::from_secs(5)).await;
        assert!(b.reserve("n").await > Duration::from_secs(4));
    }
}
