//! The CPU-time limit of a plugin call, checked at epoch ticks while wasm code runs. It counts
//! the CPU time of the thread running the call, not wall time: dispatch runs at idle priority,
//! and a call must not fail because its thread waited for a core while ingress had it. Wall time
//! in wasm code still ends a call at [`WALL_FACTOR`] times the limit, whatever the CPU time (a
//! thread starved that long is the host's problem, not the plugin's). The wall-time limit of
//! `[limits] wall_timeout_ms`, which counts host calls and WASI waits too, is enforced around
//! the whole call (see `runtime.rs`).
//!
//! The thread's CPU clock is a system call, so it is first read at the call's first epoch tick,
//! not at its start: most calls end well before a tick and never pay for it. CPU time before
//! that first read is not counted, so a call may run up to one tick past its limit.

use std::time::{Duration, Instant};

/// A call ends after this many times its limit in wall time.
pub const WALL_FACTOR: u32 = 100;

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// It used its CPU time.
    Cpu,
    /// Its thread waited [`WALL_FACTOR`] times the limit for a core.
    Starved,
}

/// When one call started, and its limit.
#[derive(Debug, Clone, Copy)]
pub struct CallTimer {
    wall_start: Instant,
    limit: Duration,
    /// The thread's CPU time at the first tick.
    cpu_mark: Option<Duration>,
}

impl CallTimer {
    /// Start timing a call on the current thread.
    pub fn start(limit: Duration) -> CallTimer {
        CallTimer {
            wall_start: Instant::now(),
            limit,
            cpu_mark: None,
        }
    }

    /// Whether the call has used up its limit: asked at every epoch tick, on the thread that
    /// runs the call.
    pub fn expired(&mut self) -> Option<Expired> {
        let cpu = thread_cpu_time();
        let mark = *self.cpu_mark.get_or_insert(cpu);
        if cpu.saturating_sub(mark) >= self.limit {
            Some(Expired::Cpu)
        } else if self.wall_start.elapsed() >= self.limit * WALL_FACTOR {
            Some(Expired::Starved)
        } else {
            None
        }
    }
}

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_does_not_count_working_does() {
        let limit = Duration::from_millis(20);
        let mut timer = CallTimer::start(limit);
        std::thread::sleep(limit * 3);
        assert_eq!(
            timer.expired(),
            None,
            "time spent off the CPU is not the call's"
        );
        std::thread::sleep(limit * 3);
        assert_eq!(timer.expired(), None, "nor is it after the first tick");

        let mark = timer.cpu_mark.expect("read at the first tick");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut spins = 0u64;
        while thread_cpu_time().saturating_sub(mark) < limit {
            assert!(Instant::now() < deadline, "the CPU clock does not advance");
            spins = std::hint::black_box(spins + 1);
        }
        assert_eq!(
            timer.expired(),
            Some(Expired::Cpu),
            "CPU time past the limit ends the call"
        );
    }

    #[test]
    fn wall_time_still_bounds_a_call() {
        let limit = Duration::from_millis(1);
        let mut timer = CallTimer::start(limit);
        std::thread::sleep(limit * (WALL_FACTOR + 1));
        assert_eq!(timer.expired(), Some(Expired::Starved));
    }
}
