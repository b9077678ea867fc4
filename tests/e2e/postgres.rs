//! Several hosts on one PostgreSQL database: the work is shared, each customer's order is
//! kept, and a host that dies, or loses its connections, or sees PostgreSQL restart, loses
//! nothing. Skipped, saying so, where no PostgreSQL answers (see `postgres_database`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use switchboard_tests::*;

/// The PostgreSQL tests one at a time (this file's and the console's): one restarts PostgreSQL
/// under the others.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A text message from customer `customer`, numbered `seq` in its id.
fn message(customer: usize, seq: usize) -> String {
    let wa_id = format!("1555000{customer:04}");
    serde_json::json!({
        "contacts": [{"profile": {"name": "C"}, "wa_id": wa_id}],
        "messages": [{
            "from": wa_id,
            "id": format!("c{customer}-{seq}"),
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": format!("message {seq}")}
        }]
    })
    .to_string()
}

/// Start host `id` of `setup` on `url`.
async fn host(mut setup: ServerSetup, id: &str, url: &str) -> Server {
    // Its own application name, so that a test can cut this host's connections only.
    setup.storage_url = format!("{url}?application_name={id}");
    setup.extra += &format!("\n[cluster]\nhost_id = \"{id}\"\nlease_ttl = \"2s\"\n");
    setup.start().await
}

/// The forwards received, per customer, as the sequence numbers in the order they came.
fn arrivals(sink: &Fake) -> HashMap<usize, Vec<usize>> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for r in sink.received() {
        let id = r.json()["id"].as_str().unwrap_or_default().to_string();
        let Some((c, s)) = id.trim_start_matches('c').split_once('-') else {
            continue;
        };
        out.entry(c.parse().unwrap())
            .or_default()
            .push(s.parse().unwrap());
    }
    out
}

/// Every acknowledged message arrived, and each customer's first arrivals are in order;
/// returns the duplicates.
fn check(sink: &Fake, acked: &HashMap<usize, Vec<usize>>) -> usize {
    let got = arrivals(sink);
    let mut duplicates = 0;
    for (customer, sent) in acked {
        let received = got.get(customer).cloned().unwrap_or_default();
        let mut firsts = Vec::new();
        for s in &received {
            if firsts.contains(s) {
                duplicates += 1;
            } else {
                firsts.push(*s);
            }
        }
        for s in sent {
            assert!(
                firsts.contains(s),
                "customer {customer}: message {s} was acknowledged and never delivered ({received:?})"
            );
        }
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        assert_eq!(firsts, sorted, "customer {customer}: out of order");
    }
    duplicates
}

/// Post `rounds` messages for each of `customers`, round-robin over `hosts` (the index of the
/// host by round and customer); a customer's next message only after the last was
/// acknowledged. A refused one is sent again every 200 ms for up to a minute, as WhatsApp
/// sends again what was not acknowledged. Records what was acknowledged.
async fn post_rounds(
    hosts: &[&Server],
    customers: usize,
    rounds: std::ops::Range<usize>,
    acked: &mut HashMap<usize, Vec<usize>>,
) {
    for seq in rounds {
        let posts = (0..customers).map(|c| {
            let server = hosts[(seq + c) % hosts.len()];
            let body = message(c, seq);
            let (url, client) = (server.url("/webhook"), http());
            async move {
                for _ in 0..300 {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        return (c, true);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (c, false)
            }
        });
        for (c, ok) in futures_join(posts).await {
            if ok {
                acked.entry(c).or_default().push(seq);
            }
        }
    }
}

async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Hosts `h1` and `h2` on `url`, forwarding every notification to `sink`, once each holds a
/// share (with their folders, to keep while they run).
async fn two_hosts(url: &str, sink: &Fake) -> ([tempfile::TempDir; 2], Server, Server) {
    two_hosts_of(url, |dir| ServerSetup::echo(dir, sink)).await
}

/// [`two_hosts`], each set up by `setup` in its folder.
async fn two_hosts_of(
    url: &str,
    setup: impl Fn(&Path) -> ServerSetup,
) -> ([tempfile::TempDir; 2], Server, Server) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = host(setup(dirs[0].path()), "h1", url).await;
    let b = host(setup(dirs[1].path()), "h2", url).await;
    balanced(&a, &b).await;
    (dirs, a, b)
}

/// Wait until the two hosts hold a share each.
async fn balanced(a: &Server, b: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (x, y) = (
            a.metric("partitions_held").await,
            b.metric("partitions_held").await,
        );
        if x > 0 && y > 0 && x + y == 32 {
            return;
        }
        assert!(Instant::now() < deadline, "not balanced: {x} and {y}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delivered(sink: &Fake, acked: &HashMap<usize, Vec<usize>>, within: Duration) {
    let want: usize = acked.values().map(Vec::len).sum();
    let deadline = Instant::now() + within;
    loop {
        let got = arrivals(sink);
        let have: usize = acked
            .iter()
            .map(|(c, sent)| {
                let r = got.get(c).cloned().unwrap_or_default();
                sent.iter().filter(|s| r.contains(s)).count()
            })
            .sum();
        if have == want {
            return;
        }
        assert!(Instant::now() < deadline, "{have} of {want} delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_share_the_work_and_keep_each_customers_order() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((url, _db)) = postgres_database("two_hosts_share_the_work").await else {
        return;
    };
    let sink = Fake::start().await;
    let (_dirs, a, b) = two_hosts(&url, &sink).await;

    let mut acked = HashMap::new();
    post_rounds(&[&a, &b], 20, 0..15, &mut acked).await;
    assert_eq!(
        acked.values().map(Vec::len).sum::<usize>(),
        300,
        "all acknowledged"
    );
    delivered(&sink, &acked, Duration::from_secs(60)).await;
    assert_eq!(
        check(&sink, &acked),
        0,
        "no crash: each forward exactly once"
    );

    // Both did part of the work, and `cluster status` shows both hosts.
    let dispatched = (
        a.metric("notifications_dispatched_total").await,
        b.metric("notifications_dispatched_total").await,
    );
    assert!(dispatched.0 > 0 && dispatched.1 > 0, "{dispatched:?}");
    assert_eq!(dispatched.0 + dispatched.1, 300);
    let (ok, out) = a.cli(&["cluster", "status"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("h1") && out.contains("h2"), "{out}");
    let (ok, out) = b.cli(&["db", "status"]).await;
    assert!(ok && out.contains("backend: postgres"), "{out}");
    let applied = out
        .lines()
        .find_map(|l| l.strip_prefix("applied: "))
        .unwrap_or_default();
    let (now, latest) = applied.split_once(" (latest known: ").unwrap_or_default();
    assert_eq!(format!("{now})"), latest, "every migration applied: {out}");
    let cluster = b.get_json("/cluster").await;
    assert_eq!(cluster["this_host"], "h2");
    assert_eq!(cluster["partitions"].as_array().unwrap().len(), 32);
}

/// A business number's rate holds across the hosts together: each host's sends of the number
/// take their turn with the other's, rather than each host sending at the full rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hosts_pace_one_business_number_at_its_rate_together() {
    const RATE: f64 = 10.0;
    const SENDS: usize = 30;
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((url, _db)) = postgres_database("two_hosts_pace_one_business_number").await else {
        return;
    };
    let coreapp = Fake::coreapp().await;
    let (_dirs, a, b) = two_hosts_of(&url, |dir| {
        let mut setup = ServerSetup::new(dir);
        setup.example_plugins = false;
        setup.coreapp = Some(coreapp.url());
        setup.extra = format!("[whatsapp.rates]\nonprem = {RATE}\n");
        std::fs::create_dir_all(setup.plugins_dir()).unwrap();
        // Answers every message with a text to its sender.
        install(
            &setup.plugins_dir(),
            "answer",
            &test_plugin("misbehave-v2.wasm"),
            "[config]\nmode = \"send\"\nsends_json = '[{\"message\":{\"text\":{\"body\":\"Thanks\"}}}]'\n\
             [permissions]\nreply = true\n[subscribe]\nkinds = [\"message\"]\n",
        );
        setup
    })
    .await;

    // One message from each of SENDS customers, spread over both hosts' partitions.
    let mut acked = HashMap::new();
    post_rounds(&[&a, &b], SENDS, 0..1, &mut acked).await;
    assert_eq!(acked.len(), SENDS, "all acknowledged");
    let sent = || {
        coreapp
            .received_on("/v1/messages")
            .into_iter()
            .filter(|r| r.method == axum::http::Method::POST)
            .map(|r| r.at)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(60), || sent().len() >= SENDS).await,
        "{} of {SENDS} sent:\n{}\n{}",
        sent().len(),
        a.log(),
        b.log()
    );
    let dispatched = (
        a.metric("notifications_dispatched_total").await,
        b.metric("notifications_dispatched_total").await,
    );
    assert!(dispatched.0 > 0 && dispatched.1 > 0, "{dispatched:?}");
    let mut times = sent();
    times.sort();
    // Ten slots at the rate take a second; each host alone at the rate would fill them in half
    // that. The median over every run of ten slots, so that one send late on a busy machine (the
    // first, opening its connection) does not decide.
    let mut spans: Vec<Duration> = times.windows(11).map(|w| w[10] - w[0]).collect();
    spans.sort();
    let median = spans[spans.len() / 2];
    let least = Duration::from_secs_f64(10.0 / RATE * 0.85);
    assert!(
        median >= least,
        "{SENDS} sends at {RATE}/s over two hosts: ten took {median:?} (median), less than {least:?}: {spans:?}"
    );
}

/// A plugin's key reads on PostgreSQL, made on the dispatcher's thread, also work in a call
/// that waited in WASI first (a call that did not end at its first poll, driven on to its end):
/// each message of one customer sees the count the one before it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_reads_its_keys_after_a_wasi_wait() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((url, _db)) = postgres_database("a_plugin_reads_its_keys_after_a_wasi_wait").await
    else {
        return;
    };
    let sink = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.destinations = vec![("sink".into(), sink.url())];
    std::fs::create_dir_all(setup.plugins_dir()).unwrap();
    install(
        &setup.plugins_dir(),
        "count",
        &test_plugin("misbehave.wasm"),
        "[config]\nmode = \"count\"\nwait_ms = 5\ndestination = \"sink\"\n\
         [permissions]\ndestinations = [\"sink\"]\n[subscribe]\nkinds = [\"message\"]\n",
    );
    let server = host(setup, "h1", &url).await;
    for seq in 0..4 {
        let (status, body) = server.post(&message(7, seq)).await;
        assert_eq!(status, 200, "{body}");
    }
    let counts = || -> Vec<u64> {
        sink.received()
            .iter()
            .filter_map(|r| r.json()["count"].as_u64())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "forwarded so far: {:?}",
            counts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts(), [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_host_is_taken_over_by_the_other() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((url, _db)) = postgres_database("a_killed_host_is_taken_over").await else {
        return;
    };
    let sink = Fake::start().await;
    let (_dirs, a, mut b) = two_hosts(&url, &sink).await;

    let mut acked = HashMap::new();
    post_rounds(&[&a, &b], 20, 0..5, &mut acked).await;
    b.kill();
    let killed = Instant::now();
    // The stream goes on at the survivor (as a load balancer would send it).
    post_rounds(&[&a], 20, 5..10, &mut acked).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.metric("partitions_held").await < 32 {
        assert!(
            Instant::now() < deadline,
            "h1 never took h2's partitions over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let takeover = killed.elapsed();
    println!("take-over after SIGKILL: {takeover:?} (lease_ttl 2s)");
    delivered(&sink, &acked, Duration::from_secs(60)).await;
    let duplicates = check(&sink, &acked);
    println!("duplicates after the crash: {duplicates}");
    assert!(
        takeover < Duration::from_secs(10),
        "the take-over is bounded by the lease time (2 s) and a beat: {takeover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_connections_and_a_postgres_restart_lose_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((url, db)) = postgres_database("cut_connections_and_a_postgres_restart").await else {
        return;
    };
    let sink = Fake::start().await;
    let (_dirs, a, b) = two_hosts(&url, &sink).await;

    let mut acked = HashMap::new();
    post_rounds(&[&a, &b], 10, 0..5, &mut acked).await;
    // h2's connections are cut; h1 goes on.
    db.admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND application_name = 'h2'",
        db.name
    ))
    .await
    .unwrap();
    post_rounds(&[&a, &b], 10, 5..10, &mut acked).await;
    delivered(&sink, &acked, Duration::from_secs(60)).await;

    // PostgreSQL restarts: webhooks meanwhile get 503 (WhatsApp sends them again), and both
    // hosts reconnect.
    match restart_postgres() {
        Ok(()) => post_rounds(&[&a, &b], 10, 10..15, &mut acked).await,
        Err(why) => eprintln!("SKIPPED the PostgreSQL restart: {why}"),
    }
    delivered(&sink, &acked, Duration::from_secs(60)).await;
    let duplicates = check(&sink, &acked);
    println!("duplicates after cut connections and a restart: {duplicates}");
}

/// Restart the local PostgreSQL cluster with `pg_ctlcluster` (as CI runs it).
fn restart_postgres() -> Result<(), String> {
    let versions =
        std::fs::read_dir("/etc/postgresql").map_err(|e| format!("/etc/postgresql: {e}"))?;
    if let Some(v) = versions.flatten().next() {
        let version = v.file_name().to_string_lossy().into_owned();
        let status = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()
            .map_err(|e| format!("pg_ctlcluster: {e}"))?;
        if !status.success() {
            return Err(format!("pg_ctlcluster {version} main restart: {status}"));
        }
        return Ok(());
    }
    Err("no cluster in /etc/postgresql".into())
}
