//! Load benchmark: Switchboard (three example plugins, SQLite) side by side with the two
//! reference programs of DESIGN.md, in one run on this machine.
//!
//! 1. Burst ingest: webhooks per second until every POST got its 200, and p50/p99 latency;
//!    Switchboard against `reference-handler` (parse JSON, answer 200).
//! 2. Sustained end to end: webhooks per second counted until every reply, mark-read and
//!    forward has reached the fake Coreapp and destination; Switchboard against
//!    `reference-relay` (the three calls synchronously, then 200).
//! 3. Latency at 80% of Switchboard's burst peak, paced (open loop).
//! 4. Switchboard's peak resident memory (VmHWM).
//!
//! Run with `cargo xtask test` once (it builds the plugins), then
//! `cargo bench -p switchboard-tests --bench load`. `LOAD_N` sets the webhooks per run
//! (default 20000), `LOAD_CONCURRENCY` the client connections (default 64). `LOAD_INGEST_ONLY=1`
//! measures burst ingest with no plugins loaded, so nothing runs behind it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use switchboard_tests::{Fake, Server, ServerSetup, free_port, http, target_dir};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A text message from its own customer, so every one gets an auto-reply.
fn body(i: usize) -> String {
    format!(
        r#"{{"contacts":[{{"profile":{{"name":"Load {i}"}},"wa_id":"55119{i:08}"}}],"messages":[{{"from":"55119{i:08}","id":"ABEGload{i:010}","timestamp":"1736330400","type":"text","text":{{"body":"Is my order ready? ({i})"}}}}]}}"#
    )
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
    let client = http();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return latencies;
                }
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body(first + i))
                    .send()
                    .await;
                let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
                assert_eq!(status, 200, "webhook {} got {status}", first + i);
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

/// Wait until the fakes have received `expected` requests in all (bounded: 10 minutes).
async fn drained(fakes: &[&Fake], expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while fakes.iter().map(|f| f.count()).sum::<usize>() < expected {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn spawn(bin: &str, args: &[String]) -> std::process::Child {
    std::process::Command::new(target_dir().join("release").join(bin))
        .args(args)
        .spawn()
        .expect("start reference")
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
    let coreapp = Fake::coreapp().await;
    let (sales, support, crm) = (
        Fake::start().await,
        Fake::start().await,
        Fake::start().await,
    );
    let fakes = [&coreapp, &sales, &support, &crm];

    // 1. Burst ingest.
    let handler_addr = format!("127.0.0.1:{}", free_port());
    let mut handler = spawn("reference-handler", &[handler_addr.clone()]);
    wait_up(&handler_addr).await;
    blast(
        &format!("http://{handler_addr}/webhook"),
        0,
        n / 10,
        conc,
        None,
    )
    .await; // warm-up
    let reference = blast(&format!("http://{handler_addr}/webhook"), 0, n, conc, None).await;
    let _ = handler.kill();

    let dir = tempfile::tempdir().unwrap();
    let mut setup = ServerSetup::new(dir.path());
    if std::env::var("LOAD_INGEST_ONLY").is_ok() {
        // No plugins: what ingest alone costs, with nothing behind it.
        setup.example_plugins = false;
        let server = setup.start().await;
        let ingest = blast(&server.url("/webhook"), 0, n, conc, None).await;
        println!("{}", reference.line("burst ingest, reference handler"));
        println!("{}", ingest.line("burst ingest, switchboard, no plugins"));
        return;
    }
    setup.coreapp = Some(coreapp.url());
    setup.destinations = vec![
        ("sales".into(), format!("{}/sales", sales.url())),
        ("support".into(), format!("{}/support", support.url())),
        ("crm".into(), format!("{}/crm", crm.url())),
    ];
    let server: Server = setup.start().await;
    let url = server.url("/webhook");
    let warm = n / 10;
    blast(&url, 10_000_000, warm, conc, None).await;
    drained(&fakes, 3 * warm + 1).await; // +1: the login
    let before = fakes.iter().map(|f| f.count()).sum::<usize>();
    let started = Instant::now();
    let ingest = blast(&url, 0, n, conc, None).await;
    drained(&fakes, before + 3 * n).await;
    let sb_end_to_end = n as f64 / started.elapsed().as_secs_f64();

    // 3. Latency at 80% of the burst peak.
    let paced_rate = 0.8 * ingest.rate();
    let before = fakes.iter().map(|f| f.count()).sum::<usize>();
    let paced = blast(&url, 20_000_000, n, conc, Some(paced_rate)).await;
    drained(&fakes, before + 3 * n).await;
    let rss = peak_rss_mb(server.pid());
    drop(server);

    // 2. The relay, end to end.
    let relay_addr = format!("127.0.0.1:{}", free_port());
    let mut relay = spawn(
        "reference-relay",
        &[
            relay_addr.clone(),
            coreapp.url(),
            format!("{}/support", support.url()),
        ],
    );
    wait_up(&relay_addr).await;
    blast(
        &format!("http://{relay_addr}/webhook"),
        30_000_000,
        warm,
        conc,
        None,
    )
    .await;
    let started = Instant::now();
    blast(
        &format!("http://{relay_addr}/webhook"),
        40_000_000,
        n,
        conc,
        None,
    )
    .await;
    let relay_rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = relay.kill();

    println!("{}", reference.line("burst ingest, reference handler"));
    println!("{}", ingest.line("burst ingest, switchboard"));
    println!(
        "  switchboard / reference handler: {:.0}%",
        100.0 * ingest.rate() / reference.rate()
    );
    println!(
        "{}",
        paced.line(&format!("paced at {paced_rate:.0}/s (80% of peak)"))
    );
    println!("end to end, reference relay              {relay_rate:>8.0} webhooks/s");
    println!("end to end, switchboard                  {sb_end_to_end:>8.0} webhooks/s");
    println!(
        "  switchboard / reference relay: {:.0}%",
        100.0 * sb_end_to_end / relay_rate
    );
    println!("switchboard peak resident memory: {rss:.1} MB");
    let _ = StatusCode::OK;
}
