//! Load benchmark: Switchboard (three example plugins, SQLite) side by side with the two
//! reference programs of DESIGN.md, in one run on this machine.
//!
//! 1. Burst ingest: webhooks per second until every POST got its 200, and p50/p99 latency;
//!    Switchboard against `reference-handler` (parse JSON, answer 200). Then the same for 5
//!    seconds at least, longer than dispatch holds back for a burst.
//! 2. Latency at 80% of Switchboard's burst peak, paced (open loop, latency counted from when
//!    each webhook was due): as long as the burst, then for 5 seconds at least.
//! 3. Sustained end to end: webhooks per second counted until every reply, mark-read and
//!    forward has reached the fake Coreapp and destination; Switchboard against
//!    `reference-relay` (the three calls synchronously, then 200).
//! 4. Switchboard's peak resident memory (VmHWM).
//!
//! Run with `cargo xtask test` once (it builds the plugins), then
//! `cargo bench -p switchboard-tests --bench load`. `LOAD_N` sets the webhooks per run
//! (default 20000), `LOAD_CONCURRENCY` the client connections (default 64), `LOAD_PACED_RATE`
//! the rate of the 5-second paced run. `LOAD_INGEST_ONLY=1` measures burst ingest with no
//! plugins loaded, so nothing runs behind it. `LOAD_PLUGINS=auto-reply,keyword-router` loads
//! only those example plugins (all of them by default).
//!
//! It ends with burst and end to end on each storage backend (`LOAD_BACKENDS`), in turns for
//! `LOAD_ROUNDS` rounds; `LOAD_BACKENDS_ONLY=1` runs only that. `LOAD_PERF_CTL=<fifo>` writes
//! `enable` and `disable` to `perf record --control=fifo:<fifo> -D -1` around each of those
//! bursts, so that a profile holds the bursts only.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard_tests::{Fake, Server, ServerSetup, free_port, http, target_dir};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A text message from its own customer, so every one gets an auto-reply. Message ids look
/// random, as WhatsApp's do: sequential ones would make every dedup key an append.
fn body(i: usize) -> String {
    let id = format!("ABGG{:016x}", mix(i as u64));
    format!(
        r#"{{"contacts":[{{"profile":{{"name":"Load {i}"}},"wa_id":"55119{i:08}"}}],"messages":[{{"from":"55119{i:08}","id":"{id}","timestamp":"1736330400","type":"text","text":{{"body":"Is my order ready? ({i})"}}}}]}}"#
    )
}

/// splitmix64's finalizer: a bijection, so distinct webhooks keep distinct ids.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

struct Stats {
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }

    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<40} {:>8.0} webhooks/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.rate(),
            self.pct(0.50).as_secs_f64() * 1e3,
            self.pct(0.99).as_secs_f64() * 1e3
        )
    }
}

/// POST `n` webhooks (ids from `first`) with `concurrency` connections; with `rate`, paced at
/// that many per second in total. Every POST must get 200.
async fn blast(url: &str, first: usize, n: usize, concurrency: usize, rate: Option<f64>) -> Stats {
    blast_to(&[url.to_string()], first, n, concurrency, rate).await
}

/// [`blast`], round-robin over `urls` (hosts behind a load balancer).
async fn blast_to(
    urls: &[String],
    first: usize,
    n: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> Stats {
    let urls: Arc<[String]> = urls.into();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, urls) = (next.clone(), urls.clone());
        tasks.push(tokio::spawn(async move {
            let mut connections = Vec::new();
            for url in urls.iter() {
                connections.push(Connection::open(url).await);
            }
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return latencies;
                }
                // Paced, a webhook due while its connection still waited for the one before
                // counts from when it was due: the wait is the server's doing.
                let sent = match rate {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if Instant::now() > due {
                            due
                        } else {
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        }
                    }
                    None => Instant::now(),
                };
                let connection = &mut connections[i % urls.len()];
                let status = connection.post(body(first + i)).await;
                assert!(
                    matches!(status, Ok(200)),
                    "webhook {} to {} got {status:?}",
                    first + i,
                    connection.url
                );
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Stats {
        seconds: start.elapsed().as_secs_f64(),
        latencies,
    }
}

/// One kept-alive HTTP/1.1 connection of the load generator to one URL. Written on hyper's
/// connection API rather than with reqwest: the generator runs on the cores of the servers it
/// measures, and with reqwest's pool, URL handling and header maps it used about twice the
/// CPU per webhook (the backends table's `bench` column: 22-27 against 10-14 us in a burst).
struct Connection {
    url: String,
    path: http::Uri,
    host: http::HeaderValue,
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

impl Connection {
    async fn open(url: &str) -> Connection {
        let uri: http::Uri = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
        let authority = uri.authority().expect("a URL with a host").clone();
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        stream.set_nodelay(true).unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        tokio::spawn(connection);
        Connection {
            url: url.to_string(),
            path: uri.path_and_query().expect("a path").clone().into(),
            host: authority.as_str().parse().unwrap(),
            sender,
        }
    }

    /// POST `body` as JSON; the response's status once its body has been read.
    async fn post(&mut self, body: String) -> anyhow::Result<u16> {
        let request = http::Request::post(self.path.clone())
            .header(http::header::HOST, self.host.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        tokio::time::timeout(Duration::from_secs(60), async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            http_body_util::BodyExt::collect(response.into_body()).await?;
            anyhow::Ok(status)
        })
        .await?
    }
}

/// POST webhooks to Switchboard for 5 seconds at least (as many as 5 seconds take at `rate`),
/// paced at `pace` if given, then wait until everything they cause has reached the fakes.
/// Returns the POSTs' figures and how long dispatch held back meanwhile.
async fn sustained_run(
    server: &Server,
    fakes: &[&Fake],
    first: usize,
    rate: f64,
    conc: usize,
    pace: Option<f64>,
) -> (Stats, u64) {
    let n = (5.0 * rate) as usize;
    let held = server.metric("dispatch_held_milliseconds_total").await;
    let before = received(fakes);
    let stats = blast(&server.url("/webhook"), first, n, conc, pace).await;
    drained(fakes, before + 3 * n, server).await;
    let held = server.metric("dispatch_held_milliseconds_total").await - held;
    (stats, held)
}

/// Wait until the fakes have received `expected` requests in all (bounded: 2 minutes); if
/// they do not, fail with what each got, Switchboard's metrics and its warnings.
async fn drained(fakes: &[&Fake], expected: usize, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while received(fakes) < expected {
        if Instant::now() > deadline {
            let counts: Vec<usize> = fakes.iter().map(|f| f.count()).collect();
            let metrics = http()
                .get(server.url("/metrics"))
                .send()
                .await
                .map(|r| r.text());
            let metrics = match metrics {
                Ok(text) => text.await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            let log = server.log();
            let warnings: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(40)
                .collect();
            panic!(
                "deliveries did not finish: the fakes got {counts:?}, {expected} expected in all\n{metrics}\n{}",
                warnings.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A reference program, killed when dropped (also when the bench fails half way).
struct Reference(std::process::Child);

impl Reference {
    fn start(bin: &str, args: &[String]) -> Reference {
        let child = std::process::Command::new(target_dir().join("release").join(bin))
            .args(args)
            .spawn()
            .expect("start reference");
        Reference(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_up(addr: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{addr} did not come up");
}

/// CPU time (user and system) process `pid` has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_at(Path::new(&format!("/proc/{pid}/stat")))
}

/// CPU time in a `/proc` `stat` file (of a process or a thread), in seconds.
fn cpu_seconds_at(stat: &Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime and stime 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0 // USER_HZ
}

/// CPU seconds used so far by each thread of `pid`, summed by thread name.
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        *by_name.entry(name.trim().to_string()).or_insert(0.0) += cpu_seconds_at(&dir.join("stat"));
    }
    by_name
}

/// CPU seconds of each thread (by name) since `before` was taken.
fn thread_cpu_since(
    pid: u32,
    before: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    thread_cpu(pid)
        .into_iter()
        .map(|(name, after)| {
            let secs = after - before.get(&name).copied().unwrap_or(0.0);
            (name, secs)
        })
        .filter(|(_, secs)| *secs > 0.0)
        .collect()
}

/// `name us, ...`: CPU microseconds per webhook of each thread.
/// CPU seconds as microseconds per webhook.
fn us_per_webhook(seconds: f64, webhooks: usize) -> f64 {
    seconds * 1e6 / webhooks as f64
}

fn per_thread(secs: &std::collections::BTreeMap<String, f64>, webhooks: usize) -> String {
    secs.iter()
        .map(|(name, s)| format!("{name} {:.0}", us_per_webhook(*s, webhooks)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU seconds used so far by every PostgreSQL server process on this machine.
fn postgres_cpu() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|e| cpu_seconds_at(&e.path().join("stat")))
        .sum()
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() {
    let n = env("LOAD_N", 20_000);
    let conc = env("LOAD_CONCURRENCY", 64);
    println!(
        "load: {n} webhooks per run, {conc} connections, {} cores",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let coreapp = Fake::counting_coreapp().await;
    let (sales, support, crm) = (
        Fake::counting().await,
        Fake::counting().await,
        Fake::counting().await,
    );
    let fakes = [&coreapp, &sales, &support, &crm];
    let mut ids = 0..;
    let mut fresh = move || ids.next().unwrap() * 1_000_000;

    // 1. Burst ingest of the reference handler.
    let handler_addr = format!("127.0.0.1:{}", free_port());
    let handler = Reference::start("reference-handler", std::slice::from_ref(&handler_addr));
    wait_up(&handler_addr).await;
    let handler_url = format!("http://{handler_addr}/webhook");
    blast(&handler_url, fresh(), n / 10, conc, None).await; // warm-up
    let cpu = cpu_seconds(handler.pid());
    let reference = blast(&handler_url, fresh(), n, conc, None).await;
    let handler_cpu = cpu_seconds(handler.pid()) - cpu;
    drop(handler);

    let dir = tempfile::tempdir().unwrap();
    let mut setup = ServerSetup::new(dir.path());
    if std::env::var("LOAD_INGEST_ONLY").is_ok() {
        // No plugins: what ingest alone costs, with nothing behind it.
        setup.example_plugins = false;
        let server = setup.start().await;
        let cpu = cpu_seconds(server.pid());
        let ingest = blast(&server.url("/webhook"), fresh(), n, conc, None).await;
        let ingest_cpu = cpu_seconds(server.pid()) - cpu;
        println!("{}", reference.line("burst ingest, reference handler"));
        println!("{}", ingest.line("burst ingest, switchboard, no plugins"));
        println!(
            "CPU per webhook: reference handler {:.0} us, switchboard {:.0} us",
            us_per_webhook(handler_cpu, n),
            us_per_webhook(ingest_cpu, n)
        );
        return;
    }
    if std::env::var("LOAD_BACKENDS_ONLY").is_ok() {
        compare_backends(n, conc, &fakes, &mut fresh).await;
        return;
    }
    with_fakes(&mut setup, &fakes);
    let server: Server = setup.start().await;
    let url = server.url("/webhook");
    let relay_addr = format!("127.0.0.1:{}", free_port());
    let relay = Reference::start(
        "reference-relay",
        &[
            relay_addr.clone(),
            coreapp.url(),
            format!("{}/support", support.url()),
        ],
    );
    wait_up(&relay_addr).await;
    let relay_url = format!("http://{relay_addr}/webhook");

    // Warm both up; every webhook makes three calls (reply, mark-read, forward).
    let before = received(&fakes);
    blast(&url, fresh(), n / 10, conc, None).await;
    blast(&relay_url, fresh(), n / 10, conc, None).await;
    drained(&fakes, before + 6 * (n / 10), &server).await;

    // 2. Burst ingest of Switchboard: until every POST got its 200.
    let (before, cpu, threads) = (
        received(&fakes),
        cpu_seconds(server.pid()),
        thread_cpu(server.pid()),
    );
    let held = server.metric("dispatch_held_milliseconds_total").await;
    let ingest = blast(&url, fresh(), n, conc, None).await;
    let ingest_cpu = cpu_seconds(server.pid()) - cpu;
    let by_thread = per_thread(&thread_cpu_since(server.pid(), &threads), n);
    // How much of the work behind ingest ran during the burst.
    let behind = (
        server.metric("notifications_dispatched_total").await,
        received(&fakes) - before,
    );
    drained(&fakes, before + 3 * n, &server).await;
    let burst_held = server.metric("dispatch_held_milliseconds_total").await - held;

    // Then the same for 5 seconds at least: dispatch holds back for 2 seconds at most, then the
    // work behind ingest runs beside it.
    let sustained = sustained_run(&server, &fakes, fresh(), ingest.rate(), conc, None).await;

    // 3. Latency paced at 80% of the burst's peak: for as long as the burst (dispatch held
    //    back), then for 5 seconds at least (`LOAD_PACED_RATE` sets another rate for this one).
    let rate = 0.8 * ingest.rate();
    let before = received(&fakes);
    let short = blast(&url, fresh(), n, conc, Some(rate)).await;
    drained(&fakes, before + 3 * n, &server).await;
    let long_rate = std::env::var("LOAD_PACED_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(rate);
    let long = sustained_run(&server, &fakes, fresh(), long_rate, conc, Some(long_rate)).await;

    // 4. End to end, the relay and Switchboard in turns: webhooks per second until every call
    //    has reached the fakes.
    let mut rounds = Vec::new();
    let mut e2e_cpu = [0.0; 2];
    let mut e2e_threads = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let mut round = [0.0; 2];
        for (i, (target, pid)) in [(&relay_url, relay.pid()), (&url, server.pid())]
            .into_iter()
            .enumerate()
        {
            let (before, started, cpu) = (received(&fakes), Instant::now(), cpu_seconds(pid));
            let threads = thread_cpu(server.pid());
            blast(target, fresh(), n, conc, None).await;
            drained(&fakes, before + 3 * n, &server).await;
            round[i] = n as f64 / started.elapsed().as_secs_f64();
            e2e_cpu[i] += cpu_seconds(pid) - cpu;
            if pid == server.pid() {
                for (name, secs) in thread_cpu_since(pid, &threads) {
                    *e2e_threads.entry(name).or_insert(0.0) += secs;
                }
            }
        }
        rounds.push(round);
    }
    let rss = peak_rss_mb(server.pid());
    drop(relay);

    println!("{}", reference.line("burst ingest, reference handler"));
    println!("{}", ingest.line("burst ingest, switchboard"));
    println!(
        "  switchboard / reference handler: {:.0}%",
        100.0 * ingest.rate() / reference.rate()
    );
    println!(
        "  when the last POST was answered: {} of {n} notifications dispatched in all so far, {} of {} calls delivered; dispatch held back {burst_held} ms",
        behind.0,
        behind.1,
        3 * n,
    );
    let (stats, held) = &sustained;
    println!(
        "{}",
        stats.line(&format!("sustained, {:.1} s", stats.seconds))
    );
    println!(
        "  switchboard / reference handler: {:.0}%; dispatch held back {held} ms",
        100.0 * stats.rate() / reference.rate()
    );
    println!(
        "{}",
        short.line(&format!(
            "paced at {rate:.0}/s (80% of burst), {:.1} s",
            short.seconds
        ))
    );
    let (stats, held) = &long;
    println!(
        "{}",
        stats.line(&format!(
            "paced at {long_rate:.0}/s, {:.1} s",
            stats.seconds
        ))
    );
    println!("  dispatch held back {held} ms");
    for [relay_rate, sb_rate] in rounds {
        println!(
            "end to end: reference relay {relay_rate:>7.0}/s, switchboard {sb_rate:>7.0}/s: {:.0}%",
            100.0 * sb_rate / relay_rate
        );
    }
    println!(
        "CPU per webhook during the burst: reference handler {:.0} us, switchboard {:.0} us",
        us_per_webhook(handler_cpu, n),
        us_per_webhook(ingest_cpu, n)
    );
    println!("  by thread (us): {by_thread}");
    println!(
        "CPU per webhook, end to end: reference relay {:.0} us, switchboard {:.0} us",
        us_per_webhook(e2e_cpu[0], 2 * n),
        us_per_webhook(e2e_cpu[1], 2 * n)
    );
    println!("  by thread (us): {}", per_thread(&e2e_threads, 2 * n));
    println!("switchboard peak resident memory: {rss:.1} MB");
    println!(
        "deliveries retried in all: {}",
        server.metric("deliveries_retried_total").await
    );
    drop(server);
    compare_backends(n, conc, &fakes, &mut fresh).await;
}

/// The fake Coreapp and the three destinations (`fakes` in that order) in `setup`.
fn with_fakes(setup: &mut ServerSetup, fakes: &[&Fake; 4]) {
    let [coreapp, sales, support, crm] = fakes;
    setup.coreapp = Some(coreapp.url());
    setup.destinations = vec![
        ("sales".into(), format!("{}/sales", sales.url())),
        ("support".into(), format!("{}/support", support.url())),
        ("crm".into(), format!("{}/crm", crm.url())),
    ];
    // The fake Coreapp has no throughput limit: Switchboard's own pace is measured, not
    // WhatsApp's (80 messages/s per number by default).
    setup.extra += "[whatsapp.rates]\nonprem = 1000000\n";
    // Some of the example plugins only, to compare with a run of an older chain.
    if let Ok(names) = std::env::var("LOAD_PLUGINS") {
        setup.example_plugins = false;
        let dir = setup.plugins_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for name in names.split(',').map(str::trim) {
            for ext in ["wasm", "toml"] {
                let file = format!("{name}.{ext}");
                std::fs::copy(target_dir().join("plugins").join(&file), dir.join(&file))
                    .unwrap_or_else(|e| panic!("LOAD_PLUGINS: no example plugin {file}: {e}"));
            }
        }
    }
}

/// What one backend did in one round: burst ingest, end to end, CPU.
struct Figures {
    burst: Stats,
    burst_cpu_us: f64,
    /// PostgreSQL's own processes (the server's CPU, on the same cores).
    burst_pg_us: f64,
    /// This process: the load generator (and the fakes), on the same cores too.
    burst_bench_us: f64,
    e2e_rate: f64,
    e2e_cpu_us: f64,
    e2e_pg_us: f64,
    e2e_bench_us: f64,
}

/// The hosts of one backend, on storage of their own.
struct Cluster {
    name: String,
    servers: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
    _db: Option<switchboard_tests::PostgresDatabase>,
    rounds: Vec<Figures>,
}

/// The same runs on each backend of `LOAD_BACKENDS` (default `sqlite,postgres,postgres-2`):
/// SQLite, PostgreSQL with one host, PostgreSQL with two hosts sharing the database (webhooks
/// round-robin over them), each on fresh storage; PostgreSQL from `SWITCHBOARD_TEST_POSTGRES`.
/// All of them are started first, then run in turns, `LOAD_ROUNDS` times (default 3): this
/// machine's speed drifts by more than the differences measured, and backends run back to back
/// in each round are compared in that round.
async fn compare_backends(
    n: usize,
    conc: usize,
    fakes: &[&Fake; 4],
    fresh: &mut impl FnMut() -> usize,
) {
    let wanted =
        std::env::var("LOAD_BACKENDS").unwrap_or_else(|_| "sqlite,postgres,postgres-2".into());
    let rounds = env("LOAD_ROUNDS", 3).max(1);
    let mut clusters = Vec::new();
    for backend in wanted.split(',').map(str::trim) {
        let (hosts, postgres) = match backend {
            "sqlite" => (1, false),
            "postgres" => (1, true),
            "postgres-2" => (2, true),
            other => panic!("unknown backend {other:?} in LOAD_BACKENDS"),
        };
        let db = if postgres {
            match switchboard_tests::postgres_database("the PostgreSQL load runs").await {
                Some(db) => Some(db),
                None => continue,
            }
        } else {
            None
        };
        let cluster = start_cluster(backend, hosts, db, fakes).await;
        // Warm up: plugins compiled and instantiated, connections open.
        let before = received(fakes);
        blast_to(&cluster.urls(), fresh(), n / 10, conc, None).await;
        drained(fakes, before + 3 * (n / 10), &cluster.servers[0]).await;
        clusters.push(cluster);
    }
    for _ in 0..rounds {
        for cluster in &mut clusters {
            let figures = burst_and_end_to_end(cluster, n, conc, fakes, fresh).await;
            cluster.rounds.push(figures);
        }
    }

    println!("\nbackends, {n} webhooks per run, {conc} connections, {rounds} rounds in turns:");
    println!(
        "(the median of the rounds; CPU: microseconds per webhook of Switchboard's processes, of PostgreSQL's, and of this bench's load generator and fakes)"
    );
    println!(
        "{:<12} {:>9} {:>8} {:>7} {:>7} {:>7} {:>9} {:>7} {:>7} {:>7} {:>8}",
        "backend",
        "burst/s",
        "p99 ms",
        "CPU",
        "PG CPU",
        "bench",
        "e2e/s",
        "CPU",
        "PG CPU",
        "bench",
        "peak MB"
    );
    for c in &clusters {
        let m = |f: &dyn Fn(&Figures) -> f64| median(c.rounds.iter().map(f).collect());
        println!(
            "{:<12} {:>9.0} {:>8.2} {:>7.0} {:>7.0} {:>7.0} {:>9.0} {:>7.0} {:>7.0} {:>7.0} {:>8.1}",
            c.name,
            m(&|f| f.burst.rate()),
            m(&|f| f.burst.pct(0.99).as_secs_f64() * 1e3),
            m(&|f| f.burst_cpu_us),
            m(&|f| f.burst_pg_us),
            m(&|f| f.burst_bench_us),
            m(&|f| f.e2e_rate),
            m(&|f| f.e2e_cpu_us),
            m(&|f| f.e2e_pg_us),
            m(&|f| f.e2e_bench_us),
            c.servers.iter().map(|s| peak_rss_mb(s.pid())).sum::<f64>(),
        );
    }
    println!("per round, burst/s and end to end/s:");
    for c in &clusters {
        let each: Vec<String> = c
            .rounds
            .iter()
            .map(|f| format!("{:.0} / {:.0}", f.burst.rate(), f.e2e_rate))
            .collect();
        println!("  {:<12} {}", c.name, each.join(", "));
    }
    let find = |name: &str| clusters.iter().find(|c| c.name == name);
    for (what, of, against) in [
        ("PostgreSQL (one host) against SQLite", "postgres", "sqlite"),
        ("two hosts against one", "postgres-2", "postgres"),
    ] {
        if let (Some(a), Some(b)) = (find(of), find(against)) {
            let ratios = |f: &dyn Fn(&Figures) -> f64| -> Vec<f64> {
                a.rounds
                    .iter()
                    .zip(&b.rounds)
                    .map(|(a, b)| 100.0 * f(a) / f(b))
                    .collect()
            };
            let burst = ratios(&|f| f.burst.rate());
            let e2e = ratios(&|f| f.e2e_rate);
            let show = |r: &[f64]| {
                r.iter()
                    .map(|p| format!("{p:.0} %"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "{what}, round by round: burst {} (median {:.0} %); end to end {} (median {:.0} %)",
                show(&burst),
                median(burst.clone()),
                show(&e2e),
                median(e2e.clone())
            );
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Requests the fakes have received in all.
fn received(fakes: &[&Fake]) -> usize {
    fakes.iter().map(|f| f.count()).sum()
}

impl Cluster {
    fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url("/webhook")).collect()
    }
}

/// Start `hosts` servers on one storage (the PostgreSQL database `postgres`, or SQLite); with
/// several, wait until each holds its share of the partitions.
async fn start_cluster(
    name: &str,
    hosts: usize,
    postgres: Option<(String, switchboard_tests::PostgresDatabase)>,
    fakes: &[&Fake; 4],
) -> Cluster {
    let dirs: Vec<tempfile::TempDir> = (0..hosts).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut setup = ServerSetup::new(dir.path());
        with_fakes(&mut setup, fakes);
        if let Some((url, _)) = &postgres {
            setup.storage_url = url.clone();
            setup.extra += &format!("[cluster]\nhost_id = \"{name}-{i}\"\n");
        }
        servers.push(setup.start().await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    if hosts > 1 {
        loop {
            let mut held = Vec::new();
            for s in &servers {
                held.push(s.metric("partitions_held").await);
            }
            if held.iter().all(|&h| h > 0) && held.iter().sum::<u64>() == 32 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the hosts never shared the partitions: {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Cluster {
        name: name.to_string(),
        servers,
        _dirs: dirs,
        _db: postgres.map(|(_, db)| db),
        rounds: Vec::new(),
    }
}

/// One round on `cluster`: a burst of `n` webhooks (figures until the last is answered), its
/// work drained, then `n` more end to end (until every call has reached the fakes).
async fn burst_and_end_to_end(
    cluster: &Cluster,
    n: usize,
    conc: usize,
    fakes: &[&Fake; 4],
    fresh: &mut impl FnMut() -> usize,
) -> Figures {
    let (urls, servers) = (cluster.urls(), &cluster.servers);
    let cpu = || servers.iter().map(|s| cpu_seconds(s.pid())).sum::<f64>();
    let pg = postgres_cpu;
    let bench = || cpu_seconds(std::process::id());
    let perf = |command: &str| {
        if let Ok(fifo) = std::env::var("LOAD_PERF_CTL") {
            std::fs::write(&fifo, command)
                .unwrap_or_else(|e| panic!("LOAD_PERF_CTL: cannot write to {fifo}: {e}"));
        }
    };

    let (before, cpu0, pg0, bench0) = (received(fakes), cpu(), pg(), bench());
    perf("enable\n");
    let burst = blast_to(&urls, fresh(), n, conc, None).await;
    perf("disable\n");
    let (burst_cpu, burst_pg, burst_bench) = (cpu() - cpu0, pg() - pg0, bench() - bench0);
    drained(fakes, before + 3 * n, &servers[0]).await;

    let (before, started) = (received(fakes), Instant::now());
    let (cpu0, pg0, bench0) = (cpu(), pg(), bench());
    blast_to(&urls, fresh(), n, conc, None).await;
    drained(fakes, before + 3 * n, &servers[0]).await;
    let e2e_rate = n as f64 / started.elapsed().as_secs_f64();
    let (e2e_cpu, e2e_pg, e2e_bench) = (cpu() - cpu0, pg() - pg0, bench() - bench0);
    Figures {
        burst,
        burst_cpu_us: us_per_webhook(burst_cpu, n),
        burst_pg_us: us_per_webhook(burst_pg, n),
        burst_bench_us: us_per_webhook(burst_bench, n),
        e2e_rate,
        e2e_cpu_us: us_per_webhook(e2e_cpu, n),
        e2e_pg_us: us_per_webhook(e2e_pg, n),
        e2e_bench_us: us_per_webhook(e2e_bench, n),
    }
}
