//! Counters and histograms, served in the Prometheus text format at `/metrics` (encoded by
//! `prometheus-client`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The server's counters.
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
    /// Calls, failed calls and call times by plugin name.
    by_plugin: Mutex<BTreeMap<String, PluginEntry>>,
    pub actions_refused: AtomicU64,
    /// Typed sends refused before they were queued (invalid, window closed, not granted).
    pub sends_refused: AtomicU64,
    /// Sends replaced by a fallback template because the window was closed.
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
    /// Webhook requests by endpoint and status answered.
    ingress: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
    /// The latest plugin failures, newest last (for the console's timeline and plugin view).
    plugin_errors: Mutex<VecDeque<PluginError>>,
    /// Time from a webhook's arrival to its answer.
    ack_seconds: Histogram,
    /// Time of each plugin call, by plugin.
    plugin_call_seconds: HistogramFamily,
    /// Time from a delivery's row being stored to its receiver accepting it, by destination.
    delivery_latency_seconds: HistogramFamily,
    /// Time of each delivery attempt (request to response), by destination.
    delivery_attempt_seconds: HistogramFamily,
}

/// A plugin's calls and failures since the start.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PluginCounts {
    pub calls: u64,
    pub failures: u64,
}

/// What is kept of one plugin; its histogram is its series of `plugin_call_seconds`, looked up
/// once rather than at each call.
struct PluginEntry {
    counts: PluginCounts,
    call_seconds: Histogram,
}

/// One failed plugin call, as the console shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginError {
    /// Unix ms.
    pub at: i64,
    pub plugin: String,
    /// The notification's id (message or status id).
    pub notification: String,
    pub error: String,
}

/// How many plugin failures are kept in memory.
const PLUGIN_ERRORS_KEPT: usize = 1000;

/// Bounds in seconds, from 0.1 ms to 10 s.
const FAST_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
/// Bounds in seconds, from 5 ms to 1 h (a delivery may wait through retries).
const SLOW_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 900.0, 3600.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            webhooks_received: Default::default(),
            webhooks_rejected: Default::default(),
            webhooks_unauthorized: Default::default(),
            notifications_accepted: Default::default(),
            notifications_duplicate: Default::default(),
            notifications_dispatched: Default::default(),
            dispatch_held_ms: Default::default(),
            plugin_calls: Default::default(),
            plugin_failures: Default::default(),
            plugin_calls_skipped: Default::default(),
            by_plugin: Default::default(),
            actions_refused: Default::default(),
            sends_refused: Default::default(),
            sends_fell_back: Default::default(),
            deliveries_ok: Default::default(),
            deliveries_retried: Default::default(),
            deliveries_dead: Default::default(),
            dispatch_host_failures: Default::default(),
            notifications_waiting: Default::default(),
            notifications_parked: Default::default(),
            connections_open: Default::default(),
            connection_cap_reached: Default::default(),
            slow_header: Default::default(),
            slow_body: Default::default(),
            idle_closed: Default::default(),
            requests_too_large: Default::default(),
            ingress: Default::default(),
            plugin_errors: Default::default(),
            ack_seconds: Histogram::new(FAST_BUCKETS),
            plugin_call_seconds: Family::new_with_constructor(|| Histogram::new(FAST_BUCKETS)),
            delivery_latency_seconds: Family::new_with_constructor(|| Histogram::new(SLOW_BUCKETS)),
            delivery_attempt_seconds: Family::new_with_constructor(|| Histogram::new(SLOW_BUCKETS)),
        }
    }
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
        self.plugin(name, |p| p.counts.failures += 1);
    }

    /// Run `f` on the entry of plugin `name`, made on first use.
    fn plugin(&self, name: &str, f: impl FnOnce(&mut PluginEntry)) {
        let Ok(mut by_plugin) = self.by_plugin.lock() else {
            return;
        };
        if let Some(entry) = by_plugin.get_mut(name) {
            return f(entry);
        }
        let call_seconds = self
            .plugin_call_seconds
            .get_or_create(&vec![("plugin", name.to_string())])
            .clone();
        f(by_plugin.entry(name.to_string()).or_insert(PluginEntry {
            counts: PluginCounts::default(),
            call_seconds,
        }))
    }

    /// Keep what a failed plugin call said, for the console.
    pub fn plugin_error(&self, name: &str, notification: &str, error: String) {
        if let Ok(mut errors) = self.plugin_errors.lock() {
            if errors.len() >= PLUGIN_ERRORS_KEPT {
                errors.pop_front();
            }
            errors.push_back(PluginError {
                at: crate::store::now_millis(),
                plugin: name.to_string(),
                notification: notification.to_string(),
                error,
            });
        }
    }

    /// The plugin failures kept, newest last.
    pub fn plugin_errors(&self) -> Vec<PluginError> {
        self.plugin_errors
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls and failures by plugin name.
    pub fn plugin_counts(&self) -> BTreeMap<String, PluginCounts> {
        self.by_plugin
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.counts)).collect())
            .unwrap_or_default()
    }

    /// A call of plugin `name` took `took`.
    pub fn plugin_call_time(&self, name: &str, took: Duration) {
        self.plugin(name, |p| {
            p.counts.calls += 1;
            p.call_seconds.observe(took.as_secs_f64());
        });
    }

    /// A webhook to `endpoint` was answered with `status` after `took`.
    pub fn webhook_answered(&self, endpoint: &str, status: u16, took: Duration) {
        self.ack_seconds.observe(took.as_secs_f64());
        if let Ok(mut ingress) = self.ingress.lock() {
            match ingress.get_mut(endpoint) {
                Some(by_status) => *by_status.entry(status).or_default() += 1,
                None => {
                    ingress.insert(endpoint.to_string(), BTreeMap::from([(status, 1)]));
                }
            }
        }
    }

    /// Webhook requests by endpoint and status answered.
    pub fn ingress_counts(&self) -> BTreeMap<(String, u16), u64> {
        let Ok(ingress) = self.ingress.lock() else {
            return BTreeMap::new();
        };
        ingress
            .iter()
            .flat_map(|(e, by)| by.iter().map(|(s, n)| ((e.clone(), *s), *n)))
            .collect()
    }

    /// An attempt to `destination` took `took`; if it was accepted, its row had been stored
    /// `since_stored` before.
    pub fn delivery_attempted(
        &self,
        destination: &str,
        took: Duration,
        since_stored: Option<Duration>,
    ) {
        let labels = vec![("destination", destination.to_string())];
        self.delivery_attempt_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(latency) = since_stored {
            self.delivery_latency_seconds
                .get_or_create(&labels)
                .observe(latency.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of these metrics and `extra`.
    pub fn render(&self, extra: Vec<Series>) -> String {
        let load = |c: &AtomicU64| Value::Int(c.load(Ordering::Relaxed));
        let mut series = Vec::new();
        for (name, help, c) in [
            (
                "webhooks_received",
                "Webhook POSTs received",
                &self.webhooks_received,
            ),
            (
                "webhooks_rejected",
                "Webhook POSTs refused as bad input",
                &self.webhooks_rejected,
            ),
            (
                "webhooks_unauthorized",
                "Requests refused by authentication",
                &self.webhooks_unauthorized,
            ),
            (
                "notifications_accepted",
                "Notifications stored",
                &self.notifications_accepted,
            ),
            (
                "notifications_duplicate",
                "Notifications dropped as already seen",
                &self.notifications_duplicate,
            ),
            (
                "notifications_dispatched",
                "Notifications run through the plugins",
                &self.notifications_dispatched,
            ),
            (
                "dispatch_held_milliseconds",
                "Time dispatch waited for bursts of ingress to pass",
                &self.dispatch_held_ms,
            ),
            ("plugin_calls", "Plugin calls", &self.plugin_calls),
            (
                "plugin_failures",
                "Plugin calls that failed",
                &self.plugin_failures,
            ),
            (
                "plugin_calls_skipped",
                "Plugin calls skipped because the plugin was quarantined",
                &self.plugin_calls_skipped,
            ),
            (
                "actions_refused",
                "Plugin actions refused for lack of permission",
                &self.actions_refused,
            ),
            (
                "sends_refused",
                "Typed sends refused before they were queued: invalid, window closed, not granted",
                &self.sends_refused,
            ),
            (
                "sends_fell_back",
                "Sends replaced by a fallback template: the customer's window was closed",
                &self.sends_fell_back,
            ),
            (
                "deliveries_ok",
                "Deliveries accepted by their receiver",
                &self.deliveries_ok,
            ),
            (
                "deliveries_retried",
                "Delivery attempts that will be retried",
                &self.deliveries_retried,
            ),
            (
                "deliveries_dead",
                "Deliveries given up (dead letters)",
                &self.deliveries_dead,
            ),
            (
                "dispatch_host_failures",
                "Dispatch attempts that failed for a reason of the host (run again later)",
                &self.dispatch_host_failures,
            ),
            (
                "connection_cap_reached",
                "Times every connection slot was taken (max_connections): new connections waited in the listen backlog",
                &self.connection_cap_reached,
            ),
            (
                "idle_connections_closed",
                "Keep-alive connections closed after idle_timeout",
                &self.idle_closed,
            ),
            (
                "requests_too_large",
                "Requests refused with 413 (body above max_body_bytes)",
                &self.requests_too_large,
            ),
        ] {
            series.push(Series::counter(name, help).value(vec![], load(c)));
        }
        series.push(
            Series::counter(
                "slow_clients",
                "Connections cut for a request head (or TLS handshake) not received within header_timeout, or a body not within body_timeout",
            )
            .value(vec![("phase", "header".into())], load(&self.slow_header))
            .value(vec![("phase", "body".into())], load(&self.slow_body)),
        );
        for (name, help, g) in [
            (
                "connections_open",
                "Client connections open",
                &self.connections_open,
            ),
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
            series.push(Series::gauge(name, help).value(vec![], load(g)));
        }
        let mut failures = Series::counter(
            "plugin_call_failures",
            "Failed calls by plugin (since the start)",
        );
        // Only plugins that failed, as before the call counts were kept by plugin.
        for (name, counts) in self.plugin_counts() {
            if counts.failures > 0 {
                failures = failures.value(vec![("plugin", name)], Value::Int(counts.failures));
            }
        }
        series.push(failures);
        let mut ingress = Series::counter(
            "webhook_requests",
            "Webhook requests by endpoint and status answered",
        );
        for ((endpoint, status), n) in self.ingress_counts() {
            ingress = ingress.value(
                vec![("endpoint", endpoint), ("status", status.to_string())],
                Value::Int(n),
            );
        }
        series.push(ingress);

        let mut registry = Registry::with_prefix("switchboard");
        registry.register(
            "webhook_ack_seconds",
            "Time from a webhook's arrival to its answer",
            self.ack_seconds.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Time of each plugin call, by plugin",
            self.plugin_call_seconds.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from a delivery being stored to its receiver accepting it, by destination",
            self.delivery_latency_seconds.clone(),
        );
        registry.register(
            "delivery_attempt_seconds",
            "Time of each delivery attempt, request to response, by destination",
            self.delivery_attempt_seconds.clone(),
        );
        for s in series.into_iter().chain(extra) {
            registry.register_collector(Box::new(s));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// A value of a series.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Int(u64),
    Float(f64),
}

/// One metric family whose values are read when scraped: a name (without the
/// `switchboard_` prefix, nor `_total` for a counter), its help, and a value per label set.
#[derive(Debug)]
pub struct Series {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    values: Vec<(Labels, Value)>,
}

impl Series {
    pub fn counter(name: &'static str, help: &'static str) -> Series {
        Series {
            name,
            help,
            kind: MetricType::Counter,
            values: Vec::new(),
        }
    }

    pub fn gauge(name: &'static str, help: &'static str) -> Series {
        Series {
            name,
            help,
            kind: MetricType::Gauge,
            values: Vec::new(),
        }
    }

    /// With the value for `labels` (none for a single value).
    pub fn value(mut self, labels: Labels, v: Value) -> Series {
        self.values.push((labels, v));
        self
    }
}

impl Collector for Series {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (labels, v) in &self.values {
            let one = metric.encode_family(labels)?;
            match (self.kind, *v) {
                (MetricType::Counter, Value::Int(n)) => ConstCounter::new(n).encode(one)?,
                (MetricType::Counter, Value::Float(f)) => ConstCounter::new(f).encode(one)?,
                (_, Value::Int(n)) => {
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(one)?
                }
                (_, Value::Float(f)) => ConstGauge::new(f).encode(one)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_their_names_and_histograms_are_rendered() {
        let m = Metrics::default();
        m.inc(&m.webhooks_received);
        m.add(&m.notifications_accepted, 3);
        m.plugin_call_time("10-echo", Duration::from_millis(2));
        m.plugin_failed("10-echo");
        m.plugin_call_time("20-good", Duration::from_millis(1));
        m.webhook_answered("default", 200, Duration::from_millis(3));
        m.delivery_attempted(
            "sink",
            Duration::from_millis(40),
            Some(Duration::from_secs(2)),
        );
        let text = m.render(vec![
            Series::gauge("plugins_loaded", "Plugins serving").value(vec![], Value::Int(2)),
        ]);
        for line in [
            "switchboard_webhooks_received_total 1",
            "switchboard_notifications_accepted_total 3",
            "switchboard_plugin_call_failures_total{plugin=\"10-echo\"} 1",
            "switchboard_webhook_requests_total{endpoint=\"default\",status=\"200\"} 1",
            "switchboard_slow_clients_total{phase=\"body\"} 0",
            "switchboard_plugins_loaded 2",
            "switchboard_webhook_ack_seconds_count 1",
            "switchboard_webhook_ack_seconds_bucket{le=\"0.005\"} 1",
            "switchboard_webhook_ack_seconds_bucket{le=\"0.0025\"} 0",
            "switchboard_plugin_call_seconds_count{plugin=\"10-echo\"} 1",
            "switchboard_delivery_latency_seconds_bucket{destination=\"sink\",le=\"2.5\"} 1",
            "switchboard_delivery_attempt_seconds_count{destination=\"sink\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(text.contains("# TYPE switchboard_webhook_ack_seconds histogram"));
        assert!(
            !text.contains("switchboard_plugin_call_failures_total{plugin=\"20-good\"}"),
            "a plugin with no failure has no failure series"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let s = Series::gauge("g", "a gauge")
            .value(vec![("plugin", "a\"b\\c\nd".into())], Value::Int(1));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(s));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(r#"g{plugin="a\"b\\c\nd"} 1"#), "{out}");
    }
}
