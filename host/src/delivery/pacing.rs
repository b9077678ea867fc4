//! Throughput per business number: WhatsApp takes about 80 messages a second from a number by
//! default (error 130429 past it). Sends from one number are spaced evenly at its rate, and a
//! throughput error pushes the number's next slot back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::config::WhatsAppConfig;

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
    next: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    /// Pace at the rates of `[whatsapp]`.
    pub fn new(config: Option<&WhatsAppConfig>) -> Pacer {
        Pacer {
            default: config.map_or(80.0, |c| c.rate),
            rates: config
                .map(|c| c.rates.clone().into_iter().collect())
                .unwrap_or_default(),
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Take the next slot of `number`: how long to wait before sending in it.
    pub fn reserve(&self, number: &str) -> Duration {
        let rate = self.rates.get(number).copied().unwrap_or(self.default);
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

    /// WhatsApp said the number is over its throughput: send nothing more from it for `pause`.
    pub fn slow_down(&self, number: &str, pause: Duration) {
        let until = Instant::now() + pause;
        if let Ok(mut next) = self.next.lock() {
            let slot = next.entry(number.to_string()).or_insert(until);
            *slot = (*slot).max(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_of_a_number_are_spaced_at_its_rate_and_numbers_are_independent() {
        let mut config: WhatsAppConfig =
            toml::from_str("rate = 10.0\n[rates]\nslow = 2.0\n").unwrap();
        check(&config).unwrap();
        let pacer = Pacer::new(Some(&config));
        let waits: Vec<Duration> = (0..5).map(|_| pacer.reserve("a")).collect();
        // The fifth send of a burst waits for four intervals of 100 ms (less the time taken).
        assert!(waits[0].is_zero());
        assert!(waits[4] > Duration::from_millis(350), "{waits:?}");
        assert!(pacer.reserve("b").is_zero());
        pacer.reserve("slow");
        assert!(pacer.reserve("slow") > Duration::from_millis(450));
        pacer.slow_down("b", Duration::from_secs(5));
        assert!(pacer.reserve("b") > Duration::from_secs(4));
        config.rate = 0.0;
        assert!(
            check(&config)
                .unwrap_err()
                .to_string()
                .contains("[whatsapp] rate")
        );
    }
}
