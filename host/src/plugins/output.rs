//! What plugins write into the host's log: `log` calls and stdout/stderr, escaped (a plugin
//! cannot forge host log lines or send terminal escapes) and within the call's budget of lines
//! and bytes.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::manifest::Limits;

/// `s` with control characters (newlines, carriage returns, escapes) written as `\n`, `\u{1b}`...
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The first `max` bytes of `s` (on a character boundary), with a note of how much was cut.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}... ({} more bytes cut)",
        &s[..end],
        s.len() - end
    ))
}

/// Log lines and bytes a call has left; what does not fit is counted, not logged.
#[derive(Debug, Default)]
pub struct LogBudget {
    lines: usize,
    bytes: usize,
    /// Lines dropped in this call.
    pub dropped: usize,
}

impl LogBudget {
    /// A fresh budget for one call.
    pub fn new(limits: &Limits) -> LogBudget {
        LogBudget {
            lines: limits.log_max_lines_per_call,
            bytes: limits.log_max_bytes_per_call,
            dropped: 0,
        }
    }

    /// Take a line of `len` bytes from the budget; false (and counted as dropped) when it does
    /// not fit.
    pub fn admit(&mut self, len: usize) -> bool {
        if self.lines == 0 || len > self.bytes {
            self.dropped += 1;
            return false;
        }
        self.lines -= 1;
        self.bytes -= len;
        true
    }
}

/// A plugin version's log lines over time, across calls: `rate` a second, in bursts of up to
/// `burst` lines.
#[derive(Debug)]
pub struct LogRate {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
    /// Lines dropped and not yet reported in the log.
    pub unreported: u64,
}

impl LogRate {
    pub fn new(limits: &Limits, now: Instant) -> LogRate {
        let rate = limits.log_max_lines_per_second as f64;
        let burst = rate.max(limits.log_max_lines_per_call as f64);
        LogRate {
            tokens: burst,
            last: now,
            rate,
            burst,
            unreported: 0,
        }
    }

    /// Take one line; false when over the rate.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Most bytes of stdout or stderr kept per call: one call's log budget cannot be larger.
const CAPTURE_MAX: usize = 64 * 1024;

/// A plugin's stdout or stderr: kept in memory (up to [`CAPTURE_MAX`] bytes, the rest
/// discarded) until the host logs it after the call. Writing never blocks and never fails.
#[derive(Clone, Default)]
pub struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    /// What was written since the last call, as text.
    pub fn take(&self) -> String {
        let bytes = self
            .buf
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn push(&self, bytes: &[u8]) {
        if let Ok(mut buf) = self.buf.lock() {
            let room = CAPTURE_MAX.saturating_sub(buf.len());
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}

impl IsTerminal for Captured {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Captured {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for Captured {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CAPTURE_MAX)
    }
}

#[async_trait::async_trait]
impl Pollable for Captured {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain text é"), "plain text é");
        assert_eq!(
            escape("a\nINFO forged\r\u{1b}[31m"),
            "a\\nINFO forged\\r\\u{1b}[31m"
        );
    }

    #[test]
    fn cut_keeps_a_prefix_and_says_so() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("ééé", 3), "é... (4 more bytes cut)");
    }

    #[test]
    fn the_budget_counts_lines_and_bytes() {
        let limits = Limits {
            log_max_lines_per_call: 2,
            log_max_bytes_per_call: 10,
            ..Limits::default()
        };
        let mut budget = LogBudget::new(&limits);
        assert!(budget.admit(4));
        assert!(!budget.admit(7), "over the bytes left");
        assert!(budget.admit(6));
        assert!(!budget.admit(0), "over the lines");
        assert_eq!(budget.dropped, 2);
    }

    #[test]
    fn the_rate_allows_a_burst_then_refills() {
        let limits = Limits {
            log_max_lines_per_call: 5,
            log_max_lines_per_second: 10,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut rate = LogRate::new(&limits, t0);
        assert_eq!(
            (0..100).filter(|_| rate.take(t0)).count(),
            10,
            "a burst of one second"
        );
        let t1 = t0 + std::time::Duration::from_millis(500);
        assert_eq!(
            (0..100).filter(|_| rate.take(t1)).count(),
            5,
            "refilled at 10 a second"
        );
        let t2 = t1 + std::time::Duration::from_secs(3600);
        assert_eq!(
            (0..100).filter(|_| rate.take(t2)).count(),
            10,
            "never above the burst"
        );
    }

    #[test]
    fn capture_is_bounded() {
        let c = Captured::default();
        c.push(&vec![b'x'; CAPTURE_MAX + 100]);
        c.push(b"more");
        assert_eq!(c.take().len(), CAPTURE_MAX);
        assert_eq!(c.take(), "", "taken");
    }
}
