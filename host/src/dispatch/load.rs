//! How busy ingress is, so that dispatch can hold back while a burst is being stored.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::store;

/// Webhooks waiting for the inbox's commit from which ingress counts as busy: well below
/// capacity a few wait for each commit; in a burst, about one per sender's connection.
const BUSY: usize = 16;
/// How long ingress stays busy after it last had [`BUSY`] webhooks waiting: in a burst the
/// count drops for moments (after each commit, or while the senders are slow to send more).
const BUSY_FOR: Duration = Duration::from_millis(10);
/// The longest dispatch waits for a burst to pass, counted from the arrival of the oldest
/// notification of its batch. Under a longer burst it goes on beside ingress.
const MAX_HOLD: Duration = Duration::from_secs(2);

/// How busy ingress is (shared by ingress and the dispatcher).
pub struct Load {
    /// Webhooks waiting for the inbox's commit.
    storing: AtomicUsize,
    /// Until when (in microseconds since `epoch`) ingress counts as busy.
    busy_until: AtomicU64,
    epoch: Instant,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            storing: AtomicUsize::new(0),
            busy_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Load {
    /// Count a webhook as waiting for the inbox's commit while the guard lives.
    pub fn storing(&self) -> Storing<'_> {
        if self.storing.fetch_add(1, Ordering::Relaxed) + 1 >= BUSY {
            self.mark_busy();
        }
        Storing(self)
    }

    /// Wait while ingress is busy, so that a burst is stored and answered at full speed and
    /// the work behind it catches up after; at most until `received_at` (the oldest
    /// notification to dispatch) is [`MAX_HOLD`] old. Returns how long it waited.
    pub fn yield_to_ingress(&self, received_at: i64) -> Duration {
        let (started, mut held) = (Instant::now(), Duration::ZERO);
        let deadline = received_at + MAX_HOLD.as_millis() as i64;
        while self.busy() && store::now_millis() < deadline {
            std::thread::sleep(Duration::from_millis(1));
            held = started.elapsed();
        }
        held
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Ingress is busy now: it stays so for [`BUSY_FOR`].
    fn mark_busy(&self) {
        let until = self.now() + BUSY_FOR.as_micros() as u64;
        self.busy_until.fetch_max(until, Ordering::Relaxed);
    }

    fn busy(&self) -> bool {
        self.storing.load(Ordering::Relaxed) >= BUSY
            || self.now() < self.busy_until.load(Ordering::Relaxed)
    }
}

/// A webhook waiting for the inbox's commit, from [`Load::storing`] until dropped.
pub struct Storing<'a>(&'a Load);

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        if self.0.storing.fetch_sub(1, Ordering::Relaxed) >= BUSY {
            self.0.mark_busy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(d: Duration) -> i64 {
        store::now_millis() - d.as_millis() as i64
    }

    #[test]
    fn dispatch_waits_while_ingress_is_busy_but_no_longer_than_the_limit() {
        let load = Load::default();
        let few: Vec<_> = (0..BUSY - 1).map(|_| load.storing()).collect();
        assert!(
            load.yield_to_ingress(ago(Duration::ZERO)).is_zero(),
            "a few webhooks waiting is not busy"
        );

        let one_more = load.storing();
        assert!(
            load.yield_to_ingress(ago(MAX_HOLD)).is_zero(),
            "a batch as old as the limit goes at once"
        );
        let held = load.yield_to_ingress(ago(MAX_HOLD - Duration::from_millis(50)));
        assert!(
            held >= Duration::from_millis(40),
            "a younger batch waits until the limit: {held:?}"
        );

        // Answered, ingress stays busy for a moment (the next webhooks are on their way).
        drop((few, one_more));
        assert!(load.busy());
        std::thread::sleep(BUSY_FOR + Duration::from_millis(5));
        assert!(load.yield_to_ingress(ago(Duration::ZERO)).is_zero());
    }
}
