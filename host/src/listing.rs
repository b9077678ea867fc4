//! What `deliveries list` and `notifications list` print: aligned columns with times a person
//! reads, or JSON for scripts (one array; times as RFC 3339 and as Unix milliseconds).

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::store::{Cluster, OutboxRow, OutboxState, RetryRow, SentMessage};

/// `ms` (Unix milliseconds) as RFC 3339 UTC to the second, e.g. `2026-12-01T20:31:05Z`.
pub fn rfc3339(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `ms` as a person reads it, relative to `now`: `2026-12-01 20:31:05Z (3m ago)`, or
/// `(in 20s)` for a time to come.
pub fn when(ms: i64, now: i64) -> String {
    let age = now.saturating_sub(ms);
    let relative = if age >= 0 {
        format!("{} ago", span(age))
    } else {
        format!("in {}", span(age.saturating_neg()))
    };
    format!("{} ({relative})", rfc3339(ms).replacen('T', " ", 1))
}

/// A duration in its largest whole unit: `45s`, `3m`, `5h`, `2d`.
fn span(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        ..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Rows as aligned columns under a header; the last column is not padded. Line breaks and tabs
/// in cells become spaces, so each row stays one line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |c: &str| c.replace(['\n', '\r', '\t'], " ");
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()))
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let last = row.len().saturating_sub(1);
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// `cluster status` as two tables: the hosts, then the partitions.
pub fn cluster_table(c: &Cluster) -> String {
    let ms = |v: Option<i64>| v.map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
    let hosts: Vec<Vec<String>> = c
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.id.clone(),
                if h.live { "live" } else { "gone" }.to_string(),
                ms(Some(h.last_seen_ms_ago)),
                h.partitions.len().to_string(),
            ]
        })
        .collect();
    let partitions: Vec<Vec<String>> = c
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.owner.clone().unwrap_or_else(|| "-".into()),
                p.fence.to_string(),
                ms(p.expires_in_ms),
                p.inbox_pending.to_string(),
                ms(p.inbox_oldest_age_ms),
                p.outbox_pending.to_string(),
                ms(p.outbox_oldest_age_ms),
            ]
        })
        .collect();
    let mut out = String::new();
    if !hosts.is_empty() {
        out.push_str(&table(
            &["HOST", "STATE", "LAST SEEN", "PARTITIONS"],
            &hosts,
        ));
        out.push('\n');
    }
    out.push_str(&table(
        &[
            "PARTITION",
            "OWNER",
            "FENCE",
            "LEASE LEFT",
            "INBOX",
            "INBOX OLDEST",
            "OUTBOX",
            "OUTBOX OLDEST",
        ],
        &partitions,
    ));
    out
}

/// `deliveries list` as a table.
pub fn deliveries_table(rows: &[OutboxRow], now: i64) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.kind.clone(),
                r.target.clone(),
                r.attempts.to_string(),
                when(r.created_at, now),
                match r.state {
                    OutboxState::Pending => when(r.next_at, now),
                    OutboxState::Dead => "-".into(),
                },
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "KIND",
            "TARGET",
            "ATTEMPTS",
            "CREATED",
            "NEXT ATTEMPT",
            "LAST ERROR",
        ],
        &cells,
    )
}

/// `deliveries list --json`: one object per row.
pub fn deliveries_json(rows: &[OutboxRow]) -> Value {
    rows.iter()
        .map(|r| {
            let pending = r.state == OutboxState::Pending;
            json!({
                "id": r.id,
                "kind": r.kind,
                "target": r.target,
                "lane": r.lane,
                "webhook_id": r.webhook_id,
                "state": match r.state {
                    OutboxState::Pending => "pending",
                    OutboxState::Dead => "dead",
                },
                "attempts": r.attempts,
                "created_at": rfc3339(r.created_at),
                "created_at_ms": r.created_at,
                // None for a dead letter.
                "next_attempt_at": pending.then(|| rfc3339(r.next_at)),
                "next_attempt_at_ms": pending.then_some(r.next_at),
                "last_error": r.last_error,
            })
        })
        .collect()
}

/// `notifications list` as a table.
pub fn notifications_table(rows: &[RetryRow], now: i64) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.inbox_id.to_string(),
                r.notification.kind.as_str().to_string(),
                r.notification.id.clone(),
                r.customer.clone(),
                r.attempts.to_string(),
                when(r.received_at, now),
                if r.parked {
                    "parked".into()
                } else {
                    when(r.next_at, now)
                },
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "KIND",
            "NOTIFICATION",
            "CUSTOMER",
            "ATTEMPTS",
            "RECEIVED",
            "NEXT ATTEMPT",
            "LAST ERROR",
        ],
        &cells,
    )
}

/// `notifications list --json`: one object per row.
pub fn notifications_json(rows: &[RetryRow]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "id": r.inbox_id,
                "kind": r.notification.kind.as_str(),
                "notification_id": r.notification.id,
                "customer": r.customer,
                "source": r.notification.source,
                "state": if r.parked { "parked" } else { "waiting" },
                "attempts": r.attempts,
                "received_at": rfc3339(r.received_at),
                "received_at_ms": r.received_at,
                // None for a parked one.
                "next_attempt_at": (!r.parked).then(|| rfc3339(r.next_at)),
                "next_attempt_at_ms": (!r.parked).then_some(r.next_at),
                "last_error": r.last_error,
            })
        })
        .collect()
}

/// `deliveries sends` as a table.
pub fn sends_table(rows: &[SentMessage], now: i64) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            vec![
                s.delivery_id.to_string(),
                s.plugin.clone(),
                s.kind.clone(),
                s.recipient.clone(),
                when(s.sent_at, now),
                s.status.clone().unwrap_or_else(|| "-".into()),
                s.error.clone().unwrap_or_default(),
                s.wa_id.clone(),
            ]
        })
        .collect();
    table(
        &[
            "DELIVERY",
            "PLUGIN",
            "TYPE",
            "TO",
            "SENT",
            "STATUS",
            "ERROR",
            "WHATSAPP ID",
        ],
        &cells,
    )
}

/// `deliveries sends --json`: one object per send.
pub fn sends_json(rows: &[SentMessage]) -> Value {
    rows.iter()
        .map(|s| {
            json!({
                "delivery_id": s.delivery_id,
                "whatsapp_id": s.wa_id,
                "plugin": s.plugin,
                "notification_id": s.notification_id,
                "to": s.recipient,
                "type": s.kind,
                "sent_at": rfc3339(s.sent_at),
                "sent_at_ms": s.sent_at,
                "status": s.status,
                "error": s.error,
                "status_at_ms": s.status_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_rfc3339_with_an_age() {
        let at = 1_764_621_065_000; // 2025-12-01T20:31:05Z
        assert_eq!(rfc3339(at), "2025-12-01T20:31:05Z");
        assert_eq!(when(at, at + 185_000), "2025-12-01 20:31:05Z (3m ago)");
        assert_eq!(when(at, at - 20_000), "2025-12-01 20:31:05Z (in 20s)");
        assert_eq!(
            when(at, at + 3 * 86_400_000),
            "2025-12-01 20:31:05Z (3d ago)"
        );
        assert_eq!(when(at, at + 7_200_000), "2025-12-01 20:31:05Z (2h ago)");
    }

    #[test]
    fn columns_are_aligned_and_rows_stay_on_one_line() {
        let out = table(
            &["ID", "NAME", "NOTE"],
            &[
                vec!["1".into(), "a-long-name".into(), "x".into()],
                vec!["200".into(), "b".into(), "two\nlines".into()],
            ],
        );
        assert_eq!(
            out,
            "ID   NAME         NOTE\n1    a-long-name  x\n200  b            two lines\n"
        );
    }
}
