//! Throughput per business number: WhatsApp takes about 80 messages a second from a number by
//! default (error 130429 past it). Sends from one number are spaced evenly at its rate, and a
//! throughput error pushes the number's next slot back.
//!
//! With several hosts on one database ([`Storage::shared`](crate::store::Storage::shared)),
//! the rate is the number's across all of them: each host reserves the number's sending time
//! from the database ([`Storage::reserve_pacing`](crate::store::Storage::reserve_pacing)): one
//! slot for each send waiting at that moment, up to [`BLOCK`] of them, so a busy number costs
//! one round trip per batch of sends, not per send, and no slot is reserved that no send takes
//! (past 1,000 a second, the slots left in the reservation's last millisecond too).
//! When the database does not answer, the host paces alone for a while.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::config::WhatsAppConfig;
use crate::store::{Store, now_millis};

/// The most of a number's sending time a host reserves at once.
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
                numbers: Mutex::new(HashMap::new()),
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
    numbers: Mutex<HashMap<String, Arc<Number>>>,
    /// When a reservation last failed.
    failed_at: Mutex<Option<Instant>>,
}

/// One number's pacing on this host.
#[derive(Default)]
struct Number {
    /// Sends asking for a slot now. A reservation asks for one slot for each (up to a block),
    /// so no reserved slot goes unused: unused slots would hold back every host. (Past 1,000 a
    /// second it also keeps the rest of its last whole millisecond, see [`Shared::slot`].)
    waiting: AtomicU32,
    /// Slots reserved and not taken yet; the sends take them one at a time, in the order they
    /// asked.
    block: tokio::sync::Mutex<Block>,
}

/// A number's reserved slots not taken yet.
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

/// Counts a send as waiting for its slot until it is dropped (also when its future is).
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicU32) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// The next slot of `number` at `rate`, Unix ms; `None` when the database did not answer
    /// (lately), and the caller paces alone.
    async fn slot(&self, number: &str, rate: f64) -> Option<i64> {
        let pacing = self.number(number)?;
        let _waiting = Waiting::new(&pacing.waiting);
        let mut block = pacing.block.lock().await;
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
        if block.left == 0 {
            // A slot for each send waiting now (this one too), up to a block.
            let most = ((rate * BLOCK.as_secs_f64()) as u32).max(1);
            let slots = pacing.waiting.load(Ordering::Relaxed).clamp(1, most);
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
                    // The span is whole milliseconds: every slot that fits in it is this
                    // host's. (Over 1,000 a second, taking only the slots asked for would
                    // spend a whole millisecond on a single waiting send.)
                    block.next = at as f64;
                    block.interval = 1000.0 / rate;
                    block.left = ((span as f64 * rate / 1000.0) as u32).max(slots);
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
        let Some(pacing) = self.number(number) else {
            return;
        };
        let mut block = pacing.block.lock().await;
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

    fn number(&self, number: &str) -> Option<Arc<Number>> {
        let mut numbers = self.numbers.lock().ok()?;
        Some(numbers.entry(number.to_string()).or_default().clone())
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

    #[tokio::test]
    async fn sends_below_the_rate_are_not_held_back_by_slots_nobody_took() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("db.sqlite")).unwrap();
        let config: WhatsAppConfig = toml::from_str("rate = 80.0").unwrap();
        let pacer = Arc::new(Pacer::new(Some(&config), Some(store)));
        // One send every 30 ms, at 80/s (a slot every 12.5 ms): none waits. Reserving a whole
        // block of 50 ms for each would push every next one later and later.
        for i in 0..6 {
            let wait = pacer.reserve("n").await;
            assert!(wait < Duration::from_millis(10), "send {i} waited {wait:?}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        // A burst of 20 at once is still spread over 19 intervals.
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let pacer = pacer.clone();
            burst.spawn(async move { pacer.reserve("n").await });
        }
        let waits = burst.join_all().await;
        let longest = waits.iter().max().copied().unwrap_or_default();
        assert!(longest > Duration::from_millis(200), "{waits:?}");
    }

    #[tokio::test]
    async fn a_shared_number_paced_over_a_thousand_a_second_keeps_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&dir.path().join("db.sqlite")).unwrap();
        let config: WhatsAppConfig = toml::from_str("rate = 100000.0").unwrap();
        let pacer = Pacer::new(Some(&config), Some(store));
        // 200 sends one after the other at 100,000/s take 2 ms. Reserving whole milliseconds
        // for one slot at a time made it one send a millisecond: the last waited 199 ms.
        let mut longest = Duration::ZERO;
        for _ in 0..200 {
            longest = longest.max(pacer.reserve("n").await);
        }
        assert!(
            longest < Duration::from_millis(50),
            "the longest wait: {longest:?}"
        );
    }
}
