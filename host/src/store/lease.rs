//! Partitions, leases and fences: how hosts share the work of one database.
//!
//! A customer's notifications and deliveries all fall in one partition ([`partition_of`]); the
//! host holding a partition's lease is the only one that dispatches and delivers its work, so
//! each customer's order and plugin state stay consistent. Every change of owner raises the
//! partition's fence; a record made under an older fence is refused ([`Fenced`]).

use switchboard_sdk::Notification;

/// A partition held by this host, with the fence it was taken under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Owned {
    pub partition: i32,
    pub fence: i64,
}

/// The lease of the embedded database: its one partition, held by its one server.
pub const SOLE: [Owned; 1] = [Owned {
    partition: 0,
    fence: 0,
}];

/// Who a host is, as it registers.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Configured, or host name and process id.
    pub id: String,
    /// How long its leases last without a renewal.
    pub ttl: std::time::Duration,
}

/// A record refused because the lease it was made under was taken over: the new owner redoes
/// the work.
#[derive(Debug, thiserror::Error)]
#[error("the lease on partition {partition} was taken over; the new owner does this work")]
pub struct Fenced {
    pub partition: i32,
}

/// The partition of a notification among `count`: by business number and customer, as the
/// dispatcher and delivery lanes order them.
pub fn partition_of(n: &Notification, count: u32) -> i32 {
    if count <= 1 {
        return 0;
    }
    let customer = n.sender.as_deref().unwrap_or(&n.id);
    let business = n.phone_number_id.as_deref().unwrap_or("");
    // FNV-1a: stable across processes and versions (hosts must agree), unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in business.bytes().chain([0]).chain(customer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(count)) as i32
}

/// The hosts sharing the storage and its partitions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Cluster {
    pub hosts: Vec<HostRow>,
    pub partitions: Vec<PartitionRow>,
}

/// A host that registered, with how long ago it was last seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostRow {
    pub id: String,
    pub started_at: i64,
    pub last_seen_ms_ago: i64,
    pub live: bool,
    pub partitions: Vec<i32>,
}

/// One partition: its owner, and the work waiting in it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionRow {
    pub partition: i32,
    pub owner: Option<String>,
    pub fence: i64,
    /// Until the lease runs out (negative: expired), if held.
    pub expires_in_ms: Option<i64>,
    /// Notifications not yet dispatched, and the age of the oldest.
    pub inbox_pending: u64,
    pub inbox_oldest_age_ms: Option<i64>,
    /// Deliveries pending, and the age of the oldest.
    pub outbox_pending: u64,
    pub outbox_oldest_age_ms: Option<i64>,
}

/// The versions of a database's schema.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchemaStatus {
    pub backend: &'static str,
    pub applied: Vec<i64>,
    pub latest: i64,
}

#[cfg(test)]
mod tests {
    use switchboard_sdk::Kind;

    use super::*;

    fn from(sender: &str, business: Option<&str>) -> Notification {
        let json = format!(
            r#"{{"from":"{sender}","id":"x{sender}","timestamp":"1","type":"text","text":{{"body":"hi"}}}}"#
        );
        let mut n = Notification::from_item(Kind::Message, &json, None, "test").unwrap();
        n.phone_number_id = business.map(str::to_string);
        n
    }

    #[test]
    fn a_customer_always_falls_in_the_same_partition_and_customers_spread() {
        let a = from("15550001", Some("P1"));
        assert_eq!(partition_of(&a, 32), partition_of(&a.clone(), 32));
        // A fixed value: hosts of different builds must agree on it.
        assert_eq!(partition_of(&a, 32), 9);
        let used: std::collections::HashSet<i32> = (0..1000)
            .map(|i| partition_of(&from(&format!("1555{i:04}"), Some("P1")), 32))
            .collect();
        assert_eq!(used.len(), 32, "1000 customers use every partition");
        assert!(used.iter().all(|p| (0..32).contains(p)));
        assert_eq!(partition_of(&a, 1), 0);
    }
}
