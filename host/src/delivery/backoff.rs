use std::time::Duration;

use rand::Rng;

use crate::config::DeliveryConfig;

/// The delay before attempt `attempts + 1`: exponential from `initial_backoff`, capped at
/// `max_backoff`, with "full jitter" between half and all of it so that retries of many
/// deliveries spread out. A `Retry-After` from the receiver is honoured when longer, up to
/// `max_backoff`: a receiver cannot push a retry past it (nor, with a huge value, overflow the
/// retry time into the past).
pub fn delay(config: &DeliveryConfig, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let capped = exponential(config.initial_backoff, config.max_backoff, attempts);
    let jittered = capped.mul_f64(rand::rng().random_range(0.5..=1.0));
    match retry_after {
        Some(r) if r > jittered => r.min(config.max_backoff),
        _ => jittered,
    }
}

/// `initial` doubled `doublings` times (at most 20), capped at `max`.
pub fn exponential(initial: Duration, max: Duration, doublings: u32) -> Duration {
    initial.saturating_mul(1u32 << doublings.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let c = DeliveryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..Default::default()
        };
        for attempts in 0..10 {
            let d = delay(&c, attempts, None);
            let full = Duration::from_secs(1 << attempts).min(Duration::from_secs(60));
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempts}: {d:?} not within [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn honours_a_longer_retry_after() {
        let c = DeliveryConfig::default();
        assert_eq!(
            delay(&c, 0, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert!(delay(&c, 0, Some(Duration::from_millis(1))) >= Duration::from_millis(500));
    }

    #[test]
    fn a_retry_after_of_any_size_is_capped_at_max_backoff() {
        let c = DeliveryConfig::default();
        for huge in [
            Duration::from_secs(u64::MAX),
            Duration::MAX,
            c.max_backoff * 2,
        ] {
            assert_eq!(delay(&c, 0, Some(huge)), c.max_backoff);
        }
    }
}
