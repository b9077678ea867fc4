//! `/health/live`, `/health/ready` (and `/health`, the same as ready), and the backlog gauges
//! of `/metrics`. What they read of the store is computed at most once a second, however often
//! they are called.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::metrics::{Series, Value};
use crate::store::{Backlog, now_millis};

/// How long a look at the store serves.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The last look at the store.
#[derive(Default)]
pub struct Health {
    cache: tokio::sync::Mutex<Option<(Instant, Arc<Look>)>>,
}

/// The store as last seen: whether it opens afresh, and what waits in it.
struct Look {
    probe: Result<(), String>,
    backlog: Result<Backlog, String>,
}

async fn look(app: &AppState) -> Arc<Look> {
    // One look at a time: concurrent callers wait for it rather than each querying.
    let mut cache = app.health.cache.lock().await;
    if let Some((at, look)) = &*cache
        && at.elapsed() < CACHE_FOR
    {
        return look.clone();
    }
    let store = app.store.clone();
    let look = tokio::task::spawn_blocking(move || Look {
        probe: store.probe().map_err(|e| format!("{e:#}")),
        backlog: store.backlog().map_err(|e| format!("{e:#}")),
    })
    .await
    .unwrap_or_else(|e| Look {
        probe: Err(format!("the storage check failed: {e}")),
        backlog: Err("not computed".into()),
    });
    let look = Arc::new(look);
    *cache = Some((Instant::now(), look.clone()));
    look
}

/// Whether dispatch is stuck: notifications wait (or the backlog cannot be read) and the
/// dispatcher has made no progress for longer than `stall`.
fn dispatch_check(
    now: i64,
    last_progress: i64,
    backlog: &Result<Backlog, String>,
    stall: Duration,
) -> Result<(), String> {
    let quiet = Duration::from_millis(now.saturating_sub(last_progress).max(0) as u64);
    if quiet <= stall {
        return Ok(());
    }
    let waiting = match backlog {
        Ok(b) if b.inbox == 0 => return Ok(()),
        Ok(b) => format!("{} notifications wait", b.inbox),
        Err(_) => "the backlog cannot be read".into(),
    };
    Err(format!(
        "dispatch has made no progress for {}s (more than dispatch_stall_timeout, {}s) and {waiting}; the log says what it is stuck on (a plugin call, the database)",
        quiet.as_secs(),
        stall.as_secs()
    ))
}

fn answer(checks: &[(&str, Result<(), String>)]) -> Response {
    let ok = checks.iter().all(|(_, c)| c.is_ok());
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "checks": checks.iter().map(|(name, c)| (name.to_string(), match c {
            Ok(()) => json!({ "ok": true }),
            Err(reason) => json!({ "ok": false, "reason": reason }),
        })).collect::<serde_json::Map<_, _>>(),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Liveness: fails when dispatch is stuck (a restart may free it).
pub async fn live(State(app): State<Arc<AppState>>) -> Response {
    let look = look(&app).await;
    let stall = app.config.server.dispatch_stall_timeout;
    let dispatch = dispatch_check(
        now_millis(),
        app.inbox.last_progress(),
        &look.backlog,
        stall,
    );
    answer(&[("dispatch", dispatch)])
}

/// Readiness: fails when the database cannot be opened and read, or dispatch is stuck.
pub async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let look = look(&app).await;
    let stall = app.config.server.dispatch_stall_timeout;
    let storage = look
        .probe
        .clone()
        .and(look.backlog.as_ref().map(|_| ()).map_err(Clone::clone));
    let dispatch = dispatch_check(
        now_millis(),
        app.inbox.last_progress(),
        &look.backlog,
        stall,
    );
    answer(&[("storage", storage), ("dispatch", dispatch)])
}

/// The backlog gauges, for `/metrics`.
pub async fn gauges(app: &AppState) -> Vec<Series> {
    let look = look(app).await;
    render(&look, now_millis(), app.inbox.last_progress())
}

fn render(look: &Look, now: i64, last_progress: i64) -> Vec<Series> {
    let age = |at: i64| Value::Float(now.saturating_sub(at).max(0) as f64 / 1000.0);
    let storage_ok = look.probe.is_ok() && look.backlog.is_ok();
    let mut out = vec![
        Series::gauge(
            "storage_ok",
            "Whether the database opens and reads (1) or not (0)",
        )
        .value(vec![], Value::Int(u64::from(storage_ok))),
        Series::gauge(
            "dispatch_progress_age_seconds",
            "Time since dispatch last made progress (or found nothing to do)",
        )
        .value(vec![], age(last_progress)),
    ];
    let Ok(b) = &look.backlog else {
        return out;
    };
    out.push(
        Series::gauge("inbox_backlog", "Notifications stored, not yet dispatched")
            .value(vec![], Value::Int(b.inbox)),
    );
    out.push(
        Series::gauge(
            "inbox_oldest_age_seconds",
            "Age of the oldest notification not yet dispatched (0 when none)",
        )
        .value(vec![], b.inbox_oldest.map_or(Value::Float(0.0), age)),
    );
    let mut pending = Series::gauge(
        "outbox_pending",
        "Deliveries waiting for an attempt or a retry, by destination (`whatsapp` for replies and mark-read)",
    );
    let mut oldest = Series::gauge(
        "outbox_oldest_age_seconds",
        "Age of the oldest pending delivery, by destination",
    );
    for (target, n, at) in &b.outbox {
        pending = pending.value(vec![("destination", target.clone())], Value::Int(*n));
        oldest = oldest.value(vec![("destination", target.clone())], age(*at));
    }
    out.push(pending);
    out.push(oldest);
    out.push(
        Series::gauge(
            "dead_letters",
            "Deliveries given up, waiting for `deliveries retry`",
        )
        .value(vec![], Value::Int(b.dead)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn waiting(n: u64) -> Result<Backlog, String> {
        Ok(Backlog {
            inbox: n,
            inbox_oldest: Some(0),
            ..Backlog::default()
        })
    }

    #[test]
    fn dispatch_is_stuck_only_when_quiet_too_long_with_work_waiting() {
        let stall = Duration::from_secs(60);
        let now = 1_000_000;
        // Quiet for 2 minutes with work waiting: stuck.
        let stuck = dispatch_check(now, now - 120_000, &waiting(3), stall);
        assert!(stuck.unwrap_err().contains("3 notifications wait"));
        // The same quiet with nothing waiting: idle, not stuck.
        assert!(dispatch_check(now, now - 120_000, &waiting(0), stall).is_ok());
        // Work waiting, recent progress: busy, not stuck.
        assert!(dispatch_check(now, now - 1_000, &waiting(3), stall).is_ok());
        // The backlog unknown and quiet too long: stuck.
        assert!(dispatch_check(now, now - 120_000, &Err("io".into()), stall).is_err());
    }

    #[test]
    fn gauges_render_the_backlog_by_destination() {
        let look = Look {
            probe: Ok(()),
            backlog: Ok(Backlog {
                inbox: 2,
                inbox_oldest: Some(7_000),
                outbox: vec![("sink".into(), 5, 4_000), ("whatsapp".into(), 1, 9_500)],
                dead: 3,
            }),
        };
        let text = Metrics::default().render(render(&look, 10_000, 9_000));
        for line in [
            "switchboard_storage_ok 1",
            "switchboard_dispatch_progress_age_seconds 1.0",
            "switchboard_inbox_backlog 2",
            "switchboard_inbox_oldest_age_seconds 3.0",
            "switchboard_outbox_pending{destination=\"sink\"} 5",
            "switchboard_outbox_pending{destination=\"whatsapp\"} 1",
            "switchboard_outbox_oldest_age_seconds{destination=\"sink\"} 6.0",
            "switchboard_dead_letters 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        let broken = Look {
            probe: Err("cannot open".into()),
            backlog: Err("cannot read".into()),
        };
        let text = Metrics::default().render(render(&broken, 10_000, 9_000));
        assert!(text.contains("switchboard_storage_ok 0"));
        assert!(!text.contains("switchboard_inbox_backlog"));
    }
}
