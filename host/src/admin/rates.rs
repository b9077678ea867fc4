//! The counters sampled every few seconds over the last hour, for the console's rates chart.
//! Kept in memory: the chart starts empty after a restart.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::metrics::Metrics;
use crate::store::now_millis;

/// How often the counters are sampled.
pub const EVERY: Duration = Duration::from_secs(10);
/// Samples kept: one hour.
const KEPT: usize = 360;

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Unix ms.
    pub at: i64,
    pub received: u64,
    pub accepted: u64,
    pub dispatched: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    pub plugin_failures: u64,
}

impl Sample {
    pub fn of(m: &Metrics, at: i64) -> Sample {
        let v = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Sample {
            at,
            received: v(&m.webhooks_received),
            accepted: v(&m.notifications_accepted),
            dispatched: v(&m.notifications_dispatched),
            delivered: v(&m.deliveries_ok),
            retried: v(&m.deliveries_retried),
            dead: v(&m.deliveries_dead),
            plugin_failures: v(&m.plugin_failures),
        }
    }

    /// What happened from `earlier` to this sample, per minute.
    fn per_minute(&self, earlier: &Sample) -> Rate {
        let minutes = (self.at - earlier.at).max(1) as f64 / 60_000.0;
        let r = |now: u64, then: u64| now.saturating_sub(then) as f64 / minutes;
        Rate {
            from: earlier.at,
            at: self.at,
            received: r(self.received, earlier.received),
            accepted: r(self.accepted, earlier.accepted),
            dispatched: r(self.dispatched, earlier.dispatched),
            delivered: r(self.delivered, earlier.delivered),
            retried: r(self.retried, earlier.retried),
            dead: r(self.dead, earlier.dead),
            plugin_failures: r(self.plugin_failures, earlier.plugin_failures),
        }
    }
}

/// Events per minute over the interval from `from` to `at`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rate {
    pub from: i64,
    pub at: i64,
    pub received: f64,
    pub accepted: f64,
    pub dispatched: f64,
    pub delivered: f64,
    pub retried: f64,
    pub dead: f64,
    pub plugin_failures: f64,
}

/// The samples of the last hour.
#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

impl Rates {
    pub fn sample(&self, m: &Metrics) {
        self.push(Sample::of(m, now_millis()));
    }

    fn push(&self, s: Sample) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() >= KEPT {
                samples.pop_front();
            }
            samples.push_back(s);
        }
    }

    /// The rate of each interval of the last hour, oldest first, the last one ending at `now`.
    pub fn per_minute(&self, now: Sample) -> Vec<Rate> {
        let Ok(samples) = self.samples.lock() else {
            return Vec::new();
        };
        let mut points: Vec<Sample> = samples.iter().copied().collect();
        if points.last().is_some_and(|l| now.at > l.at) {
            points.push(now);
        }
        points.windows(2).map(|w| w[1].per_minute(&w[0])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_minute_and_an_hour_is_kept() {
        let rates = Rates::default();
        for i in 0..400u64 {
            rates.push(Sample {
                at: i as i64 * 10_000,
                received: i * 5,
                ..Sample::default()
            });
        }
        let now = Sample {
            at: 400 * 10_000,
            received: 399 * 5 + 20,
            ..Sample::default()
        };
        let points = rates.per_minute(now);
        assert_eq!(
            points.len(),
            KEPT,
            "359 intervals kept and the one ending now"
        );
        // 5 every 10 s is 30 a minute; the last interval had 20 in 10 s.
        assert_eq!(points[0].received, 30.0);
        assert_eq!(points.last().unwrap().received, 120.0);
        assert_eq!(points.last().unwrap().at, now.at);
        assert_eq!(points.last().unwrap().from, 399 * 10_000);
    }
}
