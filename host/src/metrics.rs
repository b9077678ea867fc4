//! Counters, served in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    pub webhooks_received: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub webhooks_unauthorized: AtomicU64,
    pub notifications_accepted: AtomicU64,
    pub notifications_duplicate: AtomicU64,
    pub notifications_dispatched: AtomicU64,
    pub dispatch_held_ms: AtomicU64,
    pub plugin_calls: AtomicU64,
    pub plugin_failures: AtomicU64,
    pub plugin_calls_skipped: AtomicU64,
    /// Failed calls by plugin name.
    plugin_failures_by_name: Mutex<BTreeMap<String, u64>>,
    pub actions_refused: AtomicU64,
    /// Typed sends refused before they were queued (invalid, window closed, not granted).
    pub sends_refused: AtomicU64,
    /// Sends replaced by the plugin's fallback template because the window was closed.
    pub sends_fell_back: AtomicU64,
    pub deliveries_ok: AtomicU64,
    pub deliveries_retried: AtomicU64,
    pub deliveries_dead: AtomicU64,
    /// Dispatch attempts that failed for a reason of the host.
    pub dispatch_host_failures: AtomicU64,
    /// Gauge: notifications waiting to be dispatched again.
    pub notifications_waiting: AtomicU64,
    /// Gauge: notifications parked after failing dispatch again and again.
    pub notifications_parked: AtomicU64,
    /// Connections open now (a gauge).
    pub connections_open: AtomicU64,
    pub connection_cap_reached: AtomicU64,
    pub slow_header: AtomicU64,
    pub slow_body: AtomicU64,
    pub idle_closed: AtomicU64,
    pub requests_too_large: AtomicU64,
}

impl Metrics {
    /// Add one.
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Add `n`.
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Count a failed call of plugin `name`.
    pub fn plugin_failed(&self, name: &str) {
        self.inc(&self.plugin_failures);
        if let Ok(mut by_name) = self.plugin_failures_by_name.lock() {
            *by_name.entry(name.to_string()).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, plugins_loaded: usize, plugin_load_errors: usize) -> String {
        let counters = [
            (
                "webhooks_received_total",
                "Webhook POSTs received",
                &self.webhooks_received,
            ),
            (
                "webhooks_rejected_total",
                "Webhook POSTs refused as bad input",
                &self.webhooks_rejected,
            ),
            (
                "webhooks_unauthorized_total",
                "Requests refused by authentication",
                &self.webhooks_unauthorized,
            ),
            (
                "notifications_accepted_total",
                "Notifications stored",
                &self.notifications_accepted,
            ),
            (
                "notifications_duplicate_total",
                "Notifications dropped as already seen",
                &self.notifications_duplicate,
            ),
            (
                "notifications_dispatched_total",
                "Notifications run through the plugins",
                &self.notifications_dispatched,
            ),
            (
                "dispatch_held_milliseconds_total",
                "Time dispatch waited for bursts of ingress to pass",
                &self.dispatch_held_ms,
            ),
            ("plugin_calls_total", "Plugin calls", &self.plugin_calls),
            (
                "plugin_failures_total",
                "Plugin calls that failed",
                &self.plugin_failures,
            ),
            (
                "plugin_calls_skipped_total",
                "Plugin calls skipped because the plugin was quarantined",
                &self.plugin_calls_skipped,
            ),
            (
                "actions_refused_total",
                "Plugin actions refused for lack of permission",
                &self.actions_refused,
            ),
            (
                "sends_refused_total",
                "Typed sends refused before they were queued: invalid, window closed, not granted",
                &self.sends_refused,
            ),
            (
                "sends_fell_back_total",
                "Sends replaced by the plugin's fallback template: the customer's window was closed",
                &self.sends_fell_back,
            ),
            (
                "deliveries_ok_total",
                "Deliveries accepted by their receiver",
                &self.deliveries_ok,
            ),
            (
                "deliveries_retried_total",
                "Delivery attempts that will be retried",
                &self.deliveries_retried,
            ),
            (
                "deliveries_dead_total",
                "Deliveries given up (dead letters)",
                &self.deliveries_dead,
            ),
            (
                "dispatch_host_failures_total",
                "Dispatch attempts that failed for a reason of the host (run again later)",
                &self.dispatch_host_failures,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} counter"
            );
            let _ = writeln!(out, "switchboard_{name} {}", c.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_connections_open Client connections open\n# TYPE switchboard_connections_open gauge\nswitchboard_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        for (name, help, c) in [
            (
                "connection_cap_reached_total",
                "Times every connection slot was taken (max_connections): new connections waited in the listen backlog",
                &self.connection_cap_reached,
            ),
            (
                "idle_connections_closed_total",
                "Keep-alive connections closed after idle_timeout",
                &self.idle_closed,
            ),
            (
                "requests_too_large_total",
                "Requests refused with 413 (body above max_body_bytes)",
                &self.requests_too_large,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} counter\nswitchboard_{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_slow_clients_total Connections cut for a request head (or TLS handshake) not received within header_timeout, or a body not within body_timeout\n# TYPE switchboard_slow_clients_total counter"
        );
        for (phase, c) in [("header", &self.slow_header), ("body", &self.slow_body)] {
            let _ = writeln!(
                out,
                "switchboard_slow_clients_total{{phase=\"{phase}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# TYPE switchboard_plugins_loaded gauge\nswitchboard_plugins_loaded {plugins_loaded}"
        );
        let _ = writeln!(
            out,
            "# TYPE switchboard_plugin_load_errors gauge\nswitchboard_plugin_load_errors {plugin_load_errors}"
        );
        for (name, help, g) in [
            (
                "notifications_waiting",
                "Notifications waiting to be dispatched again after a failure of the host",
                &self.notifications_waiting,
            ),
            (
                "notifications_parked",
                "Notifications parked after failing dispatch again and again",
                &self.notifications_parked,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} gauge\nswitchboard_{name} {}",
                g.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# TYPE switchboard_plugin_call_failures_total counter");
        if let Ok(by_name) = self.plugin_failures_by_name.lock() {
            for (name, n) in by_name.iter() {
                let _ = writeln!(
                    out,
                    "switchboard_plugin_call_failures_total{{plugin=\"{}\"}} {n}",
                    name.replace(['"', '\\', '\n'], "_")
                );
            }
        }
        out
    }
}
