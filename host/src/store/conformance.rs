//! One suite over `dyn Storage`, run against SQLite and PostgreSQL: what the engine relies on,
//! whichever backend it runs on.
//!
//! PostgreSQL comes from `SWITCHBOARD_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a database of its own, dropped
//! afterwards. Without a server the PostgreSQL half says it was skipped, and why.

use std::time::Duration;

use switchboard_sdk::{Kind, Notification};

use super::*;

fn item(id: &str, sender: &str) -> NewInboxItem {
    text(id, sender, "hi")
}

fn text(id: &str, sender: &str, body: &str) -> NewInboxItem {
    let json = format!(
        r#"{{"from":"{sender}","id":"{id}","timestamp":"1","type":"text","text":{{"body":"{body}"}}}}"#
    );
    let notification = Notification::from_item(Kind::Message, &json, None, "test").unwrap();
    NewInboxItem {
        dedup_key: format!("m:{id}"),
        notification,
    }
}

fn delivery(partition: i32, n: usize) -> NewDelivery {
    NewDelivery {
        partition,
        kind: "forward".into(),
        target: "sink".into(),
        lane: format!("sink/{n}"),
        webhook_id: format!("w{n}"),
        request: "{}".into(),
        inbox_id: 0,
        plugin: "p".into(),
    }
}

fn set(key: &str, value: &[u8]) -> KvWrite {
    KvWrite::Set {
        plugin: "p".into(),
        key: key.into(),
        value: value.to_vec(),
        expires_at: None,
    }
}

fn host(id: &str, ttl: Duration) -> HostInfo {
    HostInfo { id: id.into(), ttl }
}

/// The lease of host `a`, alone: every partition.
async fn sole_host(store: &Store) -> Vec<Owned> {
    store
        .heartbeat(&host("a", Duration::from_secs(10)))
        .await
        .unwrap()
}

/// Blocking reads run off the async threads, as the engine runs them.
async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&dyn Storage) -> T + Send + 'static,
) -> T {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&*store))
        .await
        .unwrap()
}

/// Ingest, dedup, claim, record, deliver, prune: ids never go back.
async fn claims_and_records(store: Store) {
    let lease = sole_host(&store).await;
    assert_eq!(
        lease.len(),
        store.partitions() as usize,
        "one host holds every partition"
    );

    let fresh = store
        .ingest(vec![item("a", "1"), item("b", "2"), item("a", "1")])
        .await
        .unwrap();
    assert_eq!(fresh, 2, "the repeated id is a duplicate");
    assert_eq!(store.ingest(vec![item("b", "2")]).await.unwrap(), 0);

    let l = lease.clone();
    let claimed = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    let ids: Vec<i64> = claimed.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1], "oldest first");
    assert_eq!(claimed[0].dedup_key, "m:a");
    assert_eq!(claimed[0].notification.sender.as_deref(), Some("1"));

    let partition = partition_of(&claimed[0].notification, store.partitions());
    let rows = store
        .dispatched(
            &lease,
            ids.clone(),
            vec![delivery(partition, 1), delivery(partition, 2)],
            // The last write of a key counts, also when one batch writes it several times.
            vec![
                set("k", b"v0"),
                set("gone", b"x"),
                set("k", b"v"),
                KvWrite::Delete {
                    plugin: "p".into(),
                    key: "gone".into(),
                },
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].id < rows[1].id);
    assert_eq!(rows[0].webhook_id, "w1");
    let l = lease.clone();
    let again = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    assert!(
        again.is_empty(),
        "recorded notifications are not claimed again"
    );
    let value = blocking(&store, |s| s.kv_reader().unwrap().get("p", "k").unwrap()).await;
    assert_eq!(
        value.as_deref(),
        Some(&b"v"[..]),
        "key-value writes are committed with it"
    );
    let gone = blocking(&store, |s| s.kv_reader().unwrap().get("p", "gone").unwrap()).await;
    assert_eq!(gone, None, "a key set then deleted in one batch is gone");

    let top = blocking(&store, |s| s.max_delivery_id().unwrap()).await;
    assert!(top >= rows[1].id);
    let l = lease.clone();
    let pending = blocking(&store, move |s| s.claim_deliveries(&l, 0, top, 10).unwrap()).await;
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id, rows[1].id]
    );

    store
        .record_attempts(
            &lease,
            vec![
                (rows[0].id, DeliveryOutcome::Delivered, Attempted::default()),
                (
                    rows[1].id,
                    DeliveryOutcome::Dead {
                        error: "410: gone".into(),
                    },
                    Attempted::default(),
                ),
            ],
        )
        .await
        .unwrap();
    let l = lease.clone();
    assert!(
        blocking(&store, move |s| s.claim_deliveries(&l, 0, top, 10).unwrap())
            .await
            .is_empty()
    );
    let dead = blocking(&store, |s| s.list_deliveries(true, 10).unwrap()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("410: gone"));
    assert_eq!(store.backlog().unwrap().dead, 1);
    assert_eq!(store.retry_dead(None).await.unwrap(), 1);
    let l = lease.clone();
    let revived = blocking(&store, move |s| {
        s.claim_deliveries(&l, top, top, 10).unwrap()
    })
    .await;
    assert_eq!(
        revived.len(),
        1,
        "a revived dead letter is claimed whatever its id"
    );

    store
        .prune(now_millis() + 1, now_millis() + 1)
        .await
        .unwrap();
    assert_eq!(
        store.ingest(vec![item("a", "1")]).await.unwrap(),
        1,
        "past the dedup window a key is new again"
    );
    let l = lease.clone();
    let later = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    assert_eq!(later.len(), 1);
    assert!(later[0].id > ids[1], "inbox ids are not reused");
    let more = store
        .dispatched(
            &lease,
            vec![later[0].id],
            vec![delivery(0, 3)],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    assert!(more[0].id > top, "delivery ids are not reused");

    // More deliveries than one statement stores: each row returned has the id it was stored
    // under.
    let many: Vec<NewDelivery> = (10..31).map(|n| delivery(0, n)).collect();
    let rows = store
        .dispatched(&lease, vec![], many, vec![], vec![])
        .await
        .unwrap();
    let (after, l) = (more[0].id, lease.clone());
    let top = blocking(&store, |s| s.max_delivery_id().unwrap()).await;
    let stored = blocking(&store, move |s| {
        s.claim_deliveries(&l, after, top, 100).unwrap()
    })
    .await;
    let ids = |rows: &[OutboxRow]| -> Vec<(i64, String)> {
        rows.iter()
            .filter(|r| r.id > after)
            .map(|r| (r.id, r.webhook_id.clone()))
            .collect()
    };
    assert_eq!(ids(&rows).len(), 21);
    assert_eq!(ids(&rows), ids(&stored));
    store.close().await;
}

/// Notifications that failed for a reason of the host wait, each customer's oldest first.
async fn retries_wait_per_customer(store: Store) {
    let lease = sole_host(&store).await;
    store
        .ingest(vec![item("x1", "7"), item("x2", "7")])
        .await
        .unwrap();
    let l = lease.clone();
    let claimed = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    let now = now_millis();
    let waiting: Vec<RetryChange> = claimed
        .iter()
        .map(|i| {
            RetryChange::Put(RetryRow {
                inbox_id: i.id,
                received_at: i.received_at,
                dedup_key: i.dedup_key.clone(),
                notification: i.notification.clone(),
                customer: "7".into(),
                attempts: 1,
                next_at: now,
                parked: false,
                last_error: Some("host failure".into()),
            })
        })
        .collect();
    let handled = claimed.iter().map(|i| i.id).collect();
    store
        .dispatched(&lease, handled, vec![], vec![], waiting)
        .await
        .unwrap();
    let l = lease.clone();
    let state = blocking(&store, move |s| s.retry_state(&l).unwrap()).await;
    assert_eq!(state.waiting, 2);
    assert!(state.customers.contains("7"));
    let l = lease.clone();
    let due = blocking(&store, move |s| s.due_retries(&l, now, 10).unwrap()).await;
    assert_eq!(due.len(), 1, "only the customer's oldest may run");
    assert_eq!(due[0].inbox_id, claimed[0].id);
    assert_eq!(due[0].notification, claimed[0].notification);
    store
        .dispatched(
            &lease,
            vec![],
            vec![],
            vec![],
            vec![RetryChange::Done(due[0].inbox_id)],
        )
        .await
        .unwrap();
    let l = lease.clone();
    let due = blocking(&store, move |s| s.due_retries(&l, now, 10).unwrap()).await;
    assert_eq!(due[0].inbox_id, claimed[1].id, "then the next");
    store.close().await;
}

/// Two hosts: a fair share each; a lease that runs out is taken over under a new fence, and
/// records under the old one are refused.
async fn leases_are_shared_and_fenced(store: Store) {
    let a = host("a", Duration::from_millis(600));
    let b = host("b", Duration::from_secs(10));
    let lease_a = store.heartbeat(&a).await.unwrap();
    assert_eq!(lease_a.len(), store.partitions() as usize);

    // B arrives: A gives up the half beyond its share (worked on no more at once, released at
    // its next heartbeat), and B takes it.
    assert!(store.heartbeat(&b).await.unwrap().is_empty(), "all taken");
    let kept = store.heartbeat(&a).await.unwrap();
    assert_eq!(kept.len(), store.partitions() as usize / 2);
    store.heartbeat(&a).await.unwrap();
    let lease_b = store.heartbeat(&b).await.unwrap();
    assert_eq!(lease_b.len(), store.partitions() as usize / 2);
    assert!(lease_b.iter().all(|o| !kept.contains(o)));

    // Work in one of A's partitions.
    store.ingest(vec![item("f1", "1")]).await.unwrap();
    let n = item("f1", "1").notification;
    let p = partition_of(&n, store.partitions());
    let (owner, other) = if kept.iter().any(|o| o.partition == p) {
        (kept.clone(), lease_b.clone())
    } else {
        (lease_b.clone(), kept.clone())
    };
    let claimed = blocking(&store, move |s| s.claim_notifications(&owner, 10).unwrap()).await;
    assert_eq!(claimed.len(), 1, "its owner claims it");
    let none = blocking(&store, move |s| s.claim_notifications(&other, 10).unwrap()).await;
    assert!(none.is_empty(), "the other host does not");

    // A stops beating; once its leases run out, B takes everything under new fences.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let all_b = store.heartbeat(&b).await.unwrap();
    assert_eq!(all_b.len(), store.partitions() as usize, "{all_b:?}");
    for o in &kept {
        let now = all_b.iter().find(|x| x.partition == o.partition).unwrap();
        assert!(now.fence > o.fence, "a take-over raises the fence");
    }
    // A's records under its old lease change nothing.
    let refused = store
        .dispatched(
            &kept,
            vec![claimed[0].id],
            vec![delivery(p, 9)],
            vec![],
            vec![],
        )
        .await
        .expect_err("fenced");
    assert!(refused.downcast_ref::<Fenced>().is_some(), "{refused:#}");
    let l = all_b.clone();
    let still = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    assert_eq!(
        still.len(),
        1,
        "the new owner claims what the old one could not record"
    );
    let rows = store
        .dispatched(
            &all_b,
            vec![still[0].id],
            vec![delivery(p, 9)],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    store
        .record_attempts(
            &kept,
            vec![(rows[0].id, DeliveryOutcome::Delivered, Attempted::default())],
        )
        .await
        .unwrap();
    let l = all_b.clone();
    let pending = blocking(&store, move |s| {
        s.claim_deliveries(&l, 0, i64::MAX, 10).unwrap()
    })
    .await;
    assert_eq!(pending.len(), 1, "an outcome under an old fence is dropped");
    let cluster = blocking(&store, |s| s.cluster().unwrap()).await;
    assert_eq!(cluster.partitions.len(), store.partitions() as usize);
    assert!(
        cluster
            .partitions
            .iter()
            .all(|p| p.owner.as_deref() == Some("b"))
    );
    assert_eq!(
        cluster
            .partitions
            .iter()
            .map(|p| p.outbox_pending)
            .sum::<u64>(),
        1
    );
    store.close().await;
}

/// The console's history: searches, each delivery with its attempts and the WhatsApp message
/// it became, retries of dead letters by filter with their audit, and pruning past the
/// retention.
async fn history_is_kept_searched_retried_and_pruned(store: Store) {
    let lease = sole_host(&store).await;
    store
        .ingest(vec![
            text("wamid.a", "111", "Hello 100% sure"),
            text("wamid.b", "222", "other"),
        ])
        .await
        .unwrap();
    let search = |q: NotificationQuery| {
        let store = store.clone();
        async move { blocking(&store, move |s| s.search_notifications(&q).unwrap()).await }
    };
    let ids = |p: &Page<NotificationSummary>| -> Vec<String> {
        p.items.iter().map(|n| n.id.clone()).collect()
    };
    let by_text = search(NotificationQuery {
        q: Some("hello 100%".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&by_text),
        ["wamid.a"],
        "any case; the % is matched as itself"
    );
    let none = search(NotificationQuery {
        q: Some("100_".into()),
        ..Default::default()
    })
    .await;
    assert!(none.items.is_empty(), "the _ is matched as itself");
    let by_wa_id = search(NotificationQuery {
        wa_id: Some("222".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_wa_id), ["wamid.b"]);
    assert_eq!(by_wa_id.items[0].text.as_deref(), Some("other"));
    let by_id = search(NotificationQuery {
        id: Some("wamid.a".into()),
        kind: Some("message".into()),
        endpoint: Some("test".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&by_id), ["wamid.a"]);
    let statuses = search(NotificationQuery {
        kind: Some("status".into()),
        ..Default::default()
    })
    .await;
    assert!(statuses.items.is_empty());
    let first = search(NotificationQuery {
        limit: Some(1),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&first), ["wamid.b"], "newest first");
    let second = search(NotificationQuery {
        limit: Some(1),
        before: first.next,
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&second), ["wamid.a"], "the cursor goes on");
    let a = second.items[0].inbox_id;

    // Three deliveries of a's plugin: a forward that fails once then arrives, a send, and a
    // forward refused.
    let l = lease.clone();
    let claimed = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    let p = partition_of(&claimed[0].notification, store.partitions());
    let made = |n, kind: &str, target: &str| NewDelivery {
        kind: kind.into(),
        target: target.into(),
        inbox_id: a,
        plugin: "echo".into(),
        ..delivery(p, n)
    };
    let rows = store
        .dispatched(
            &lease,
            claimed.iter().map(|i| i.id).collect(),
            vec![
                made(1, "forward", "sink"),
                made(2, "send", "whatsapp"),
                made(3, "forward", "sink"),
            ],
            vec![],
            vec![],
        )
        .await
        .unwrap();
    let (forward, send, refused) = (rows[0].id, rows[1].id, rows[2].id);
    let tried = |status, target: &str| Attempted {
        target: target.into(),
        at: now_millis(),
        duration_ms: 5,
        status: Some(status),
    };
    let retry = DeliveryOutcome::Retry {
        at: now_millis(),
        error: "503: busy".into(),
    };
    store
        .record_attempts(&lease, vec![(forward, retry, tried(503, "sink"))])
        .await
        .unwrap();
    let dead = DeliveryOutcome::Dead {
        error: "400: refused by the receiver".into(),
    };
    store
        .record_attempts(
            &lease,
            vec![
                (forward, DeliveryOutcome::Delivered, tried(200, "sink")),
                (send, DeliveryOutcome::Delivered, tried(200, "whatsapp")),
                (refused, dead, tried(400, "sink")),
            ],
        )
        .await
        .unwrap();
    let sent = SentMessage {
        wa_id: "wamid.OUT".into(),
        delivery_id: send,
        plugin: "echo".into(),
        notification_id: "wamid.a".into(),
        recipient: "111".into(),
        kind: "text".into(),
        sent_at: now_millis(),
        status: None,
        error: None,
        status_at: None,
    };
    let read = SendStatus {
        wa_id: "wamid.OUT".into(),
        status: "read".into(),
        error: None,
        at: now_millis(),
    };
    store.record_sent(vec![sent], vec![read]).await.unwrap();

    let history = blocking(&store, move |s| s.deliveries_of(a).unwrap()).await;
    assert_eq!(history.len(), 3);
    let d = &history[0];
    assert_eq!(
        (d.state.as_str(), d.plugin.as_deref(), d.inbox_id),
        ("delivered", Some("echo"), Some(a))
    );
    let attempts: Vec<_> = d
        .attempts
        .iter()
        .map(|t| (t.status, t.outcome.as_str()))
        .collect();
    assert_eq!(attempts, [(Some(503), "retry"), (Some(200), "delivered")]);
    assert_eq!(d.attempts[0].error.as_deref(), Some("503: busy"));
    assert_eq!(d.sent, None, "a forward is no send");
    let s = history[1]
        .sent
        .as_ref()
        .expect("the send's WhatsApp message");
    assert_eq!(
        (s.message_id.as_str(), s.status.as_deref()),
        ("wamid.OUT", Some("read"))
    );
    assert_eq!(history[2].state, "dead");
    assert_eq!(
        history[2].last_error.as_deref(),
        Some("400: refused by the receiver")
    );
    let l = lease.clone();
    let pending = blocking(&store, move |s| {
        s.claim_deliveries(&l, 0, i64::MAX, 10).unwrap()
    })
    .await;
    assert!(pending.is_empty(), "delivered rows are not attempted again");
    assert_eq!(store.backlog().unwrap().outbox, vec![]);

    let find = |q: DeliveryQuery| {
        let store = store.clone();
        async move { blocking(&store, move |s| s.find_deliveries(&q).unwrap()).await }
    };
    let delivered = find(DeliveryQuery {
        state: Some("delivered".into()),
        ..Default::default()
    })
    .await;
    let found: Vec<i64> = delivered.items.iter().map(|d| d.id).collect();
    assert_eq!(found, [send, forward], "newest first");
    let page = find(DeliveryQuery {
        destination: Some("sink".into()),
        limit: Some(1),
        ..Default::default()
    })
    .await;
    assert_eq!(page.items[0].id, refused);
    let page = find(DeliveryQuery {
        destination: Some("sink".into()),
        before: page.next,
        ..Default::default()
    })
    .await;
    assert_eq!(
        page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        [forward]
    );
    assert_eq!(page.next, None);
    let dead_letters = find(DeliveryQuery {
        state: Some("dead".into()),
        kind: Some("forward".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(dead_letters.items.len(), 1);
    assert_eq!(dead_letters.items[0].attempts[0].status, Some(400));

    let since = now_millis() - 3_600_000;
    let health = blocking(&store, move |s| s.destination_health(since).unwrap()).await;
    let sink = health.iter().find(|h| h.destination == "sink").unwrap();
    assert_eq!((sink.delivered, sink.dead, sink.pending), (1, 1, 0));
    let wa = health.iter().find(|h| h.destination == "whatsapp").unwrap();
    assert_eq!((wa.delivered, wa.dead), (1, 0));

    // A dry run counts; a run puts the dead letter back, pending in its partition, and says
    // who did it.
    let filter = DeadFilter {
        destination: Some("sink".into()),
        error: Some("REFUSED".into()),
        ..Default::default()
    };
    let dry = store
        .retry_dead_matching(filter.clone(), true, 10, "tester".into())
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.retried, dry.ids), (1, 0, vec![refused]));
    assert!(
        blocking(&store, |s| s.audit_log(10).unwrap())
            .await
            .is_empty()
    );
    let other = DeadFilter {
        kind: Some("send".into()),
        ..Default::default()
    };
    let none = store
        .retry_dead_matching(other, true, 10, "tester".into())
        .await
        .unwrap();
    assert_eq!(none.matched, 0);
    let run = store
        .retry_dead_matching(filter, false, 10, "tester".into())
        .await
        .unwrap();
    assert_eq!((run.matched, run.retried, run.ids), (1, 1, vec![refused]));
    let audit = blocking(&store, |s| s.audit_log(10).unwrap()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].who.as_str(),
            audit[0].action.as_str(),
            audit[0].count
        ),
        ("tester", "retry-dead", 1)
    );
    assert!(audit[0].detail.contains("REFUSED"), "{}", audit[0].detail);
    let l = lease.clone();
    let top = blocking(&store, |s| s.max_delivery_id().unwrap()).await;
    let revived = blocking(&store, move |s| {
        s.claim_deliveries(&l, top, top, 10).unwrap()
    })
    .await;
    assert_eq!(revived.iter().map(|r| r.id).collect::<Vec<_>>(), [refused]);
    assert_eq!(revived[0].partition, p, "in its partition");
    assert_eq!(store.backlog().unwrap().dead, 0);

    // Within the retention the history stays; past it, the finished rows and the audit go,
    // and what is pending stays.
    assert_eq!(
        store
            .prune_history(now_millis() - 60_000, 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.prune_history(now_millis() + 1, 10).await.unwrap(), 3);
    let left = blocking(&store, move |s| s.deliveries_of(a).unwrap()).await;
    assert_eq!(left.iter().map(|d| d.id).collect::<Vec<_>>(), [refused]);
    assert!(
        blocking(&store, |s| s.audit_log(10).unwrap())
            .await
            .is_empty()
    );
    assert!(
        blocking(&store, |s| s.history_since().unwrap())
            .await
            .is_some()
    );
    store.close().await;
}

/// Pruning in batches of one goes past the dead letters kept below, and a row delivered late,
/// below where the round had got to, goes in the next round.
async fn pruning_in_batches_finds_every_delivered_row(store: Store) {
    let lease = sole_host(&store).await;
    store.ingest(vec![item("wamid.a", "111")]).await.unwrap();
    let l = lease.clone();
    let claimed = blocking(&store, move |s| s.claim_notifications(&l, 10).unwrap()).await;
    let p = partition_of(&claimed[0].notification, store.partitions());
    let rows = store
        .dispatched(
            &lease,
            claimed.iter().map(|i| i.id).collect(),
            (0..5).map(|n| delivery(p, n)).collect(),
            vec![],
            vec![],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let dead = || DeliveryOutcome::Dead {
        error: "400".into(),
    };
    let outcomes = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let outcome = if i % 2 == 0 {
                dead()
            } else {
                DeliveryOutcome::Delivered
            };
            (id, outcome, Attempted::default())
        })
        .collect();
    store.record_attempts(&lease, outcomes).await.unwrap();
    let kept = |store: &Store| {
        let store = store.clone();
        async move {
            let page = blocking(&store, |s| {
                s.find_deliveries(&DeliveryQuery::default()).unwrap()
            })
            .await;
            let mut ids: Vec<i64> = page.items.iter().map(|d| d.id).collect();
            ids.sort();
            ids
        }
    };

    // The first batch takes the first delivered row, past the first dead letter.
    assert_eq!(store.prune_history(now_millis() + 1, 1).await.unwrap(), 1);
    assert_eq!(kept(&store).await, [ids[0], ids[2], ids[3], ids[4]]);
    // The first dead letter is retried and delivered: it is below where the round got to.
    assert_eq!(store.retry_dead(Some(ids[0])).await.unwrap(), 1);
    store
        .record_attempts(
            &lease,
            vec![(ids[0], DeliveryOutcome::Delivered, Attempted::default())],
        )
        .await
        .unwrap();
    let mut pruned = 0;
    for _ in 0..6 {
        pruned += store.prune_history(now_millis() + 1, 1).await.unwrap();
    }
    assert_eq!(
        pruned, 2,
        "the second delivered row, and the one delivered late"
    );
    assert_eq!(
        kept(&store).await,
        [ids[2], ids[4]],
        "the dead letters stay"
    );
    store.close().await;
}

/// Two hosts reserving one number's sending time at once get spans that do not overlap, one
/// after the other from the first; a pause holds back the next reservation of either.
async fn pacing_reservations_are_disjoint(a: Store, b: Store) {
    const SPAN: i64 = 50;
    let now = now_millis();
    let reservations = (0..40).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { store.reserve_pacing("n", now, SPAN).await.unwrap() })
    });
    let mut starts = Vec::new();
    for r in reservations.collect::<Vec<_>>() {
        starts.push(r.await.unwrap());
    }
    starts.sort_unstable();
    let expected: Vec<i64> = (0..40).map(|i| now + i * SPAN).collect();
    assert_eq!(starts, expected, "disjoint and back to back");
    assert_eq!(
        b.reserve_pacing("other", now, SPAN).await.unwrap(),
        now,
        "numbers are independent"
    );
    let until = now + 3_600_000;
    a.pause_pacing("n", until).await.unwrap();
    assert_eq!(b.reserve_pacing("n", now, SPAN).await.unwrap(), until);
    a.pause_pacing("n", now).await.unwrap();
    assert_eq!(
        a.reserve_pacing("n", now, SPAN).await.unwrap(),
        until + SPAN,
        "a shorter pause changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_reservations_are_disjoint_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db.sqlite")).unwrap();
    pacing_reservations_are_disjoint(store.clone(), store).await;
}

/// The times of the rows `older_outbox` stores, as a schema before the delivery counters
/// left them: delivered two hours ago, delivered a second ago, pending.
const OLDER_ROWS: [(i16, Option<i64>); 3] = [(1, Some(-2 * HOUR)), (1, Some(-1_000)), (0, None)];
const HOUR: i64 = 3_600_000;

/// Rows stored before deliveries were counted per minute (`OLDER_ROWS`, relative to `now`) are
/// counted after the upgrade, and pruned past the retention with their counts.
async fn delivered_rows_of_an_older_schema_are_counted_and_pruned(store: Store, now: i64) {
    let sink = |since: i64| {
        let store = store.clone();
        async move {
            let health = blocking(&store, move |s| s.destination_health(since).unwrap()).await;
            assert_eq!(health.len(), 1);
            (health[0].delivered, health[0].pending)
        }
    };
    assert_eq!(sink(now - HOUR).await, (1, 1));
    assert_eq!(sink(now - 3 * HOUR).await, (2, 1));
    assert_eq!(store.prune_history(now - HOUR, 10).await.unwrap(), 1);
    assert_eq!(
        sink(now - 3 * HOUR).await,
        (1, 1),
        "counts past the retention go too"
    );
    let kept = blocking(&store, |s| {
        s.find_deliveries(&DeliveryQuery::default()).unwrap()
    })
    .await;
    assert_eq!(kept.items.iter().map(|d| d.id).collect::<Vec<_>>(), [3, 2]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_rows_of_an_older_schema_are_counted_and_pruned_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let now = now_millis();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        super::schema::create_work_version(&conn, 7).unwrap();
        for (state, finished) in OLDER_ROWS {
            conn.execute(
                "INSERT INTO outbox (kind, target, lane, webhook_id, request, state, created_at,
                                     next_at, finished_at)
                 VALUES ('forward', 'sink', 'l', 'w', '{}', ?1, ?2, ?2, ?3)",
                rusqlite::params![state, now - 3 * HOUR, finished.map(|f| now + f)],
            )
            .unwrap();
        }
    }
    let store = open(&path).unwrap();
    delivered_rows_of_an_older_schema_are_counted_and_pruned(store, now).await;
}

/// A fresh PostgreSQL database for one test, dropped with the guard; `None` (and a line saying
/// why) when no server answers.
pub fn postgres_database() -> Option<(String, DropDatabase)> {
    let server = std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("sb_test_{}", rand::random::<u64>());
    let created = run_apart({
        let (server, name) = (server.clone(), name.clone());
        move || async move {
            let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
            anyhow::Ok(())
        }
    });
    if let Err(e) = created {
        eprintln!(
            "SKIPPED the PostgreSQL half: no PostgreSQL at {server} ({e:#}); set SWITCHBOARD_TEST_POSTGRES to run it"
        );
        return None;
    }
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    Some((format!("{base}/{name}"), DropDatabase { server, name }))
}

/// Drops the test database.
pub struct DropDatabase {
    server: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = run_apart(move || async move {
            let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            anyhow::Ok(())
        });
    }
}

/// Run `f`'s future on a thread and runtime of its own: callers may be inside a runtime.
fn run_apart<F: Future<Output = anyhow::Result<()>>>(
    f: impl FnOnce() -> F + Send + 'static,
) -> anyhow::Result<()> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("panicked"))?
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::open(&dir.path().join("db.sqlite")).unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((url, _drop)) = super::postgres_database() else { return };
                    let store = tokio::task::spawn_blocking(move || super::connect(&url, 4, super::Opener::Server))
                        .await
                        .unwrap()
                        .unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

both_backends!(
    claims_and_records,
    retries_wait_per_customer,
    history_is_kept_searched_retried_and_pruned,
    pruning_in_batches_finds_every_delivered_row
);

mod shared {
    /// Hosts starting at once against a fresh database apply each migration once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hosts_starting_together_migrate_once() {
        let Some((url, _drop)) = super::postgres_database() else {
            return;
        };
        let starts: Vec<_> = (0..3)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || super::connect(&url, 2, super::Opener::Server))
            })
            .collect();
        for start in starts {
            let store = start.join().unwrap().expect("every host starts");
            let status = tokio::task::spawn_blocking(move || store.schema_status())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(status.backend, "postgres");
            assert_eq!(status.applied, (1..=status.latest).collect::<Vec<_>>());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivered_rows_of_an_older_schema_are_counted_and_pruned() {
        use super::super::postgres::schema::MIGRATIONS;
        let Some((url, _drop)) = super::postgres_database() else {
            return;
        };
        let now = super::now_millis();
        // Migration 7 brought the counters.
        super::run_apart({
            let url = url.clone();
            move || async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(
                        "CREATE TABLE schema_migrations (version bigint PRIMARY KEY,
                            applied_at timestamptz NOT NULL DEFAULT now())",
                    )
                    .await?;
                for (i, sql) in MIGRATIONS[..6].iter().enumerate() {
                    client.batch_execute(sql).await?;
                    client
                        .execute(
                            "INSERT INTO schema_migrations (version) VALUES ($1)",
                            &[&(i as i64 + 1)],
                        )
                        .await?;
                }
                for (state, finished) in super::OLDER_ROWS {
                    client
                        .execute(
                            "INSERT INTO outbox (partition, kind, target, lane, webhook_id,
                                request, state, created_at, next_at, finished_at)
                             VALUES (0, 'forward', 'sink', 'l', 'w', '{}', $1, $2, $2, $3)",
                            &[&state, &(now - 3 * super::HOUR), &finished.map(|f| now + f)],
                        )
                        .await?;
                }
                anyhow::Ok(())
            }
        })
        .unwrap();
        let store =
            tokio::task::spawn_blocking(move || super::connect(&url, 4, super::Opener::Server))
                .await
                .unwrap()
                .unwrap();
        super::delivered_rows_of_an_older_schema_are_counted_and_pruned(store, now).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_are_shared_and_fenced() {
        let Some((url, _drop)) = super::postgres_database() else {
            return;
        };
        let store =
            tokio::task::spawn_blocking(move || super::connect(&url, 4, super::Opener::Server))
                .await
                .unwrap()
                .unwrap();
        super::leases_are_shared_and_fenced(store).await;
    }

    /// Two stores on one database, as two hosts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pacing_reservations_are_disjoint() {
        let Some((url, _drop)) = super::postgres_database() else {
            return;
        };
        let connect = |url: String| {
            tokio::task::spawn_blocking(move || super::connect(&url, 4, super::Opener::Server))
        };
        let a = connect(url.clone()).await.unwrap().unwrap();
        let b = connect(url).await.unwrap().unwrap();
        super::pacing_reservations_are_disjoint(a.clone(), b.clone()).await;
        a.close().await;
        b.close().await;
    }
}
