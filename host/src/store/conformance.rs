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
    let json = format!(
        r#"{{"from":"{sender}","id":"{id}","timestamp":"1","type":"text","text":{{"body":"hi"}}}}"#
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
    let lease = store
        .heartbeat(&host("a", Duration::from_secs(10)))
        .await
        .unwrap();
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
            vec![set("k", b"v")],
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

    let top = blocking(&store, |s| s.max_delivery_id().unwrap()).await;
    assert!(top >= rows[1].id);
    let l = lease.clone();
    let pending = blocking(&store, move |s| s.claim_deliveries(&l, 0, top, 10).unwrap()).await;
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [rows[0].id, rows[1].id]
    );

    store
        .record_outcomes(
            &lease,
            vec![
                (rows[0].id, DeliveryOutcome::Delivered),
                (
                    rows[1].id,
                    DeliveryOutcome::Dead {
                        error: "410: gone".into(),
                    },
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
    store.close().await;
}

/// Notifications that failed for a reason of the host wait, each customer's oldest first.
async fn retries_wait_per_customer(store: Store) {
    let lease = store
        .heartbeat(&host("a", Duration::from_secs(10)))
        .await
        .unwrap();
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
        .record_outcomes(&kept, vec![(rows[0].id, DeliveryOutcome::Delivered)])
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

both_backends!(claims_and_records, retries_wait_per_customer);

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
