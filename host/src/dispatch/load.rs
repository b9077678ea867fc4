//! How busy ingress is, so that dispatch can hold back while a burst is being stored.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::store;

/// Webhooks waiting for the inbox's commit from which ingress counts as busy: well below
/// capacity a few wait for each commit; in a burst, about one per sender's connection. This is
/// for the whole cluster: a host of several behind a load balancer gets its share of the
/// webhooks, and counts as busy at its share of this (see [`Load::set_share`]).
const BUSY: usize = 16;
/// The least a host's threshold goes down to, however many hosts share the load.
const MIN_BUSY: usize = 4;
/// How long ingress stays busy after it last had its threshold of webhooks waiting: in a burst the
/// count drops for moments (after each commit, or while the senders are slow to send more).
const BUSY_FOR: Duration = Duration::from_millis(10);
/// The longest dispatch waits for a burst to pass, counted from the arrival of the oldest
/// notification of its batch. Under a longer burst it goes on beside ingress.
const MAX_HOLD: Duration = Duration::from_secs(2);

/// How busy ingress is (shared by ingress and the dispatcher).
pub struct Load {
    /// Webhooks waiting for the inbox's commit.
    storing: AtomicUsize,
    /// This host's threshold: [`BUSY`], or its share of it.
    busy_at: AtomicUsize,
    /// Until when (in microseconds since `epoch`) ingress counts as busy.
    busy_until: AtomicU64,
    epoch: Instant,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            storing: AtomicUsize::new(0),
            busy_at: AtomicUsize::new(BUSY),
            busy_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Load {
    /// This host holds `held` of the cluster's `partitions`. Hosts hold even shares, one per
    /// live host, and a load balancer in front gives each about the same share of the
    /// webhooks: the threshold is scaled by it, so that ingress counts as busy at the same load
    /// of the cluster whatever the number of hosts. Without it, two hosts under a burst would
    /// each see half the webhooks waiting, under the threshold, and dispatch beside the burst
    /// (on PostgreSQL, in its backends at normal priority, whatever the dispatcher's).
    pub fn set_share(&self, held: usize, partitions: u32) {
        let at = (BUSY * held).div_ceil(partitions.max(1) as usize);
        self.busy_at
            .store(at.clamp(MIN_BUSY, BUSY), Ordering::Relaxed);
    }

    fn busy_at(&self) -> usize {
        self.busy_at.load(Ordering::Relaxed)
    }

    /// Count a webhook as waiting for the inbox's commit while the guard lives.
    pub fn storing(&self) -> Storing<'_> {
        if self.storing.fetch_add(1, Ordering::Relaxed) + 1 >= self.busy_at() {
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
        self.storing.load(Ordering::Relaxed) >= self.busy_at()
            || self.now() < self.busy_until.load(Ordering::Relaxed)
    }
}

/// A webhook waiting for the inbox's commit, from [`Load::storing`] until dropped.
pub struct Storing<'a>(&'a Load);

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        if self.0.storing.fetch_sub(1, Ordering::Relaxed) >= self.0.busy_at() {
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

    #[test]
    fn a_host_of_several_counts_as_busy_at_its_share_of_the_cluster_threshold() {
        let load = Load::default();
        // Half the partitions: one host of two.
        load.set_share(16, 32);
        let some: Vec<_> = (0..BUSY / 2 - 1).map(|_| load.storing()).collect();
        assert!(!load.busy(), "under half the threshold is not busy");
        let half = load.storing();
        assert!(
            load.busy(),
            "half the cluster's threshold makes one host of two busy"
        );
        drop((some, half));

        // Alone again (every partition, or SQLite's one): the whole threshold.
        std::thread::sleep(BUSY_FOR + Duration::from_millis(5));
        load.set_share(32, 32);
        let some: Vec<_> = (0..BUSY - 1).map(|_| load.storing()).collect();
        assert!(!load.busy(), "a host alone needs the whole threshold");
        drop(some);

        // Many hosts: never below the floor.
        std::thread::sleep(BUSY_FOR + Duration::from_millis(5));
        load.set_share(1, 32);
        let few: Vec<_> = (0..MIN_BUSY - 1).map(|_| load.storing()).collect();
        assert!(!load.busy(), "the threshold stays at {MIN_BUSY} at least");
        let one_more = load.storing();
        assert!(load.busy());
        drop((few, one_more));
    }
}
