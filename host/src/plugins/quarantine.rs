//! The circuit breaker of one plugin version: after [`THRESHOLD`] failures in a row (the
//! plugin's own: errors, traps, limits; not the host's), the version is skipped for a back-off
//! that doubles at each new trip (from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]); then one call is
//! let through (half-open): success closes the breaker, failure opens it again. A new version
//! (new code or manifest) starts closed.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Failures in a row that quarantine a version.
pub const THRESHOLD: u32 = 5;
/// The first quarantine's length.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest quarantine.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Called as usual.
    Ok,
    /// Skipped until the back-off ends.
    Quarantined,
    /// The back-off ended: the next call decides.
    HalfOpen,
}

/// A version's record of failures.
#[derive(Debug)]
pub struct Breaker {
    state: State,
    until: Option<Instant>,
    consecutive: u32,
    trips: u32,
    last_error: Option<String>,
}

/// What `/plugins` shows of a breaker.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Unix milliseconds when the quarantine ends.
    pub quarantined_until: Option<i64>,
    /// How many times this version was quarantined.
    pub quarantines: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Ok,
            until: None,
            consecutive: 0,
            trips: 0,
            last_error: None,
        }
    }
}

impl Breaker {
    /// Whether to call the plugin now.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Ok | State::HalfOpen => true,
            State::Quarantined if self.until.is_some_and(|u| now < u) => false,
            State::Quarantined => {
                self.state = State::HalfOpen;
                true
            }
        }
    }

    /// The call succeeded.
    pub fn success(&mut self) {
        self.state = State::Ok;
        self.until = None;
        self.consecutive = 0;
        self.trips = 0;
    }

    /// The call failed by the plugin's fault. Returns the quarantine's length when this
    /// failure started one.
    pub fn failure(&mut self, now: Instant, error: &str) -> Option<Duration> {
        self.consecutive = self.consecutive.saturating_add(1);
        self.last_error = Some(error.to_string());
        let trip = self.state == State::HalfOpen
            || (self.state == State::Ok && self.consecutive >= THRESHOLD);
        if !trip {
            return None;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << self.trips.min(16))
            .min(MAX_BACKOFF);
        self.trips += 1;
        self.state = State::Quarantined;
        self.until = Some(now + backoff);
        Some(backoff)
    }

    /// Whether the version is skipped now.
    pub fn quarantined(&self, now: Instant) -> bool {
        self.state == State::Quarantined && self.until.is_some_and(|u| now < u)
    }

    /// The record as `/plugins` shows it.
    pub fn status(&self, now: Instant) -> Status {
        Status {
            state: self.state,
            consecutive_failures: self.consecutive,
            last_error: self.last_error.clone(),
            quarantined_until: self
                .until
                .filter(|_| self.state == State::Quarantined)
                .map(|u| {
                    crate::store::now_millis() + u.saturating_duration_since(now).as_millis() as i64
                }),
            quarantines: self.trips,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_the_threshold_then_half_opens_with_a_growing_backoff() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..THRESHOLD - 1 {
            assert!(b.admit(t0));
            assert_eq!(b.failure(t0, "boom"), None);
        }
        assert!(b.admit(t0));
        assert_eq!(b.failure(t0, "boom"), Some(FIRST_BACKOFF));
        assert!(
            !b.admit(t0 + FIRST_BACKOFF / 2),
            "skipped while quarantined"
        );
        assert!(b.quarantined(t0));
        let status = b.status(t0);
        assert_eq!(status.state, State::Quarantined);
        assert_eq!(status.consecutive_failures, THRESHOLD);
        assert_eq!(status.last_error.as_deref(), Some("boom"));
        assert!(status.quarantined_until.is_some());

        // Half-open: one call; failing it doubles the back-off at once.
        let t1 = t0 + FIRST_BACKOFF;
        assert!(b.admit(t1));
        assert_eq!(b.status(t1).state, State::HalfOpen);
        assert_eq!(b.failure(t1, "again"), Some(FIRST_BACKOFF * 2));
        assert!(!b.admit(t1 + FIRST_BACKOFF));

        // Half-open again; a success closes it and resets the back-off.
        let t2 = t1 + FIRST_BACKOFF * 2;
        assert!(b.admit(t2));
        b.success();
        assert_eq!(b.status(t2).state, State::Ok);
        assert_eq!(b.status(t2).consecutive_failures, 0);
        for _ in 0..THRESHOLD - 1 {
            assert_eq!(b.failure(t2, "x"), None);
        }
        assert_eq!(b.failure(t2, "x"), Some(FIRST_BACKOFF));
    }

    #[test]
    fn the_backoff_is_capped() {
        let mut b = Breaker::default();
        let mut now = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..THRESHOLD {
            if let Some(d) = b.failure(now, "x") {
                last = d;
            }
        }
        for _ in 0..20 {
            now += last;
            assert!(b.admit(now));
            last = b
                .failure(now, "x")
                .expect("a half-open failure trips again");
        }
        assert_eq!(last, MAX_BACKOFF);
    }
}
