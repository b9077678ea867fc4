//! The console's page in a real browser: the distribution's Chromium (`/usr/bin/chromium`),
//! headless, driven over the DevTools protocol. Each test writes a screenshot of its page under
//! `target/console-screenshots/`. Without Chromium the tests say they were skipped and pass.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use switchboard_tests::{Fake, Server, eventually, install, target_dir, test_plugin};

use super::console::{TOKEN, message, setup, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium, or None (and a note that the test is skipped) when it is not installed.
fn chromium(test: &str) -> Option<Browser> {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "SKIPPED {test}: {CHROMIUM} is missing (apt-get install chromium); the browser test did not run"
        );
        return None;
    }
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        // Tests may run as root, where Chromium's sandbox refuses to start.
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("Chromium options");
    Some(Browser::new(options).expect("start Chromium"))
}

/// The console of `server` in a new tab, signed in through the address.
fn open(browser: &Browser, server: &Server) -> std::sync::Arc<Tab> {
    let tab = browser.new_tab().expect("a tab");
    tab.navigate_to(&server.url(&format!("/admin/#token={TOKEN}")))
        .and_then(|t| t.wait_until_navigated())
        .expect("open the console");
    tab
}

/// Evaluate `js` until it gives something true (not false, null, 0 or ""); that value.
fn until(tab: &Tab, js: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(r) = tab.evaluate(js, false) {
            last = r.value.unwrap_or(Value::Null);
            let truthy = match &last {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = tab
        .evaluate("document.body.innerText", false)
        .ok()
        .and_then(|r| r.value)
        .unwrap_or_default();
    panic!("the page never satisfied {js} (last {last}); it shows:\n{body}");
}

fn text(tab: &Tab, selector: &str) -> String {
    let js = format!("(document.querySelector({selector:?}) || {{}}).textContent || ''");
    tab.evaluate(&js, false)
        .ok()
        .and_then(|r| r.value)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn click(tab: &Tab, selector: &str) {
    tab.wait_for_element(selector)
        .and_then(|e| e.click().map(|_| ()))
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

fn type_into(tab: &Tab, selector: &str, value: &str) {
    click(tab, selector);
    tab.type_str(value)
        .unwrap_or_else(|e| panic!("type into {selector}: {e}"));
}

/// On the search page, search with `value` in the field `selector`, expect one result and open
/// its timeline.
fn search_and_open(tab: &Tab, selector: &str, value: &str) {
    click(tab, "button[data-tab=search]");
    type_into(tab, selector, value);
    click(tab, "#search-go");
    until(
        tab,
        "document.querySelectorAll('#results tbody tr').length === 1",
    );
    click(tab, "#results tbody tr");
}

/// Write a screenshot of the tab to `target/console-screenshots/{name}.png`.
fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    let dir = target_dir().join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("a screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_loads_with_live_figures() {
    let Some(browser) = chromium("the_overview_loads_with_live_figures") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = setup(dir.path(), &sink, false).start().await;
    for i in 0..3 {
        server
            .post(&message("5511000000001", &format!("wamid.o{i}"), "hi"))
            .await;
    }
    let tab = tokio::task::block_in_place(|| {
        let tab = open(&browser, &server);
        until(
            &tab,
            "document.getElementById('figure-received').textContent === '3'",
        );
        until(
            &tab,
            "document.getElementById('figure-delivered').textContent === '3'",
        );
        tab
    });
    // Two more arrive while the page is open: it refreshes itself.
    for i in 3..5 {
        server
            .post(&message("5511000000002", &format!("wamid.o{i}"), "hi"))
            .await;
    }
    tokio::task::block_in_place(|| {
        until(
            &tab,
            "document.getElementById('figure-received').textContent === '5'",
        );
        until(
            &tab,
            "document.getElementById('figure-accepted').textContent === '5'",
        );
        assert!(text(&tab, "#history-since").starts_with("History since"));
        until(
            &tab,
            "document.querySelector('#destinations tr[data-destination=sink]') !== null",
        );
        assert!(text(&tab, "#destinations tr[data-destination=sink]").contains("100.0 %"));
        assert_eq!(
            text(&tab, "#plugin-health tr[data-plugin=echo] .status"),
            "ok"
        );
        let lines = until(
            &tab,
            "document.querySelectorAll('#rates-chart polyline').length",
        );
        assert_eq!(lines, 5, "one line a series");
        // The received line has drawn points (the interval since the start, at least).
        until(
            &tab,
            "document.querySelector('#rates-chart polyline[data-series=received]').getAttribute('points').split(' ').length >= 2",
        );
        screenshot(&tab, "overview");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_a_message_and_its_timeline_shows_the_plugin_action_and_attempts() {
    let test = "a_search_finds_a_message_and_its_timeline_shows_the_plugin_action_and_attempts";
    let Some(browser) = chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The first attempt gets a 503, the second goes through.
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let sink = Fake::with(move |_| {
        if attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            (StatusCode::SERVICE_UNAVAILABLE, "try later".into())
        } else {
            (StatusCode::OK, "{}".into())
        }
    })
    .await;
    let server = setup(dir.path(), &sink, false).start().await;
    server
        .post(&message("5511000000042", "wamid.other", "not this one"))
        .await;
    server
        .post(&message(
            "5511000000099",
            "wamid.wanted",
            "where is my order?",
        ))
        .await;
    let wanted = wait_for(&server, "deliveries?state=delivered", |d| {
        d["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert!(!wanted["items"].as_array().unwrap().is_empty());
    tokio::task::block_in_place(|| {
        let tab = open(&browser, &server);
        click(&tab, "button[data-tab=search]");
        type_into(&tab, "#q-wa_id", "5511000000099");
        click(&tab, "#search-go");
        until(
            &tab,
            "document.querySelectorAll('#results tbody tr').length === 1",
        );
        assert!(text(&tab, "#results tbody tr").contains("where is my order?"));
        click(&tab, "#results tbody tr");
        until(
            &tab,
            "document.querySelectorAll('#timeline .attempt').length >= 1",
        );
        let timeline = text(&tab, "#timeline");
        assert!(
            timeline.contains("Received message wamid.wanted"),
            "{timeline}"
        );
        assert!(timeline.contains("Plugin echo: forward"), "{timeline}");
        assert!(timeline.contains("delivered"), "{timeline}");
        screenshot(&tab, "search-timeline");
        // Which of the two messages got the failed first attempt depends on the order of
        // delivery; the page shows every attempt of each.
        let rows = until(
            &tab,
            "document.querySelectorAll('#timeline .attempt').length",
        );
        assert!(rows.as_u64().unwrap() >= 1);
    });
    // The message that met the 503 shows both attempts in its timeline.
    let page = super::console::get_ok(&server, "notifications").await;
    let mut found_retry = false;
    for n in page["items"].as_array().unwrap() {
        let id = n["inbox_id"].as_i64().unwrap();
        let t = super::console::get_ok(&server, &format!("notifications/{id}")).await;
        let a = t["deliveries"][0]["attempts"].as_array().unwrap().clone();
        if a.len() == 2 {
            found_retry = true;
            tokio::task::block_in_place(|| {
                let tab = open(&browser, &server);
                search_and_open(&tab, "#q-id", t["notification"]["id"].as_str().unwrap());
                until(
                    &tab,
                    "document.querySelectorAll('#timeline .attempt').length === 2",
                );
                let timeline = text(&tab, "#timeline");
                assert!(timeline.contains("503"), "{timeline}");
                assert!(timeline.contains("retry"), "{timeline}");
                assert!(timeline.contains("try later"), "{timeline}");
                screenshot(&tab, "search-timeline-retried");
            });
        }
    }
    assert!(found_retry, "one delivery was attempted twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_retried_by_filter_from_the_page_arrives() {
    let Some(browser) = chromium("a_dead_letter_retried_by_filter_from_the_page_arrives") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::with(|_| (StatusCode::BAD_REQUEST, r#"{"error":"outage"}"#.into())).await;
    let server = setup(dir.path(), &sink, false).start().await;
    server
        .post(&message("5511000000007", "wamid.lost", "please deliver me"))
        .await;
    wait_for(&server, "dead-letters", |d| {
        d["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    // The outage ends.
    sink.respond(|_| (StatusCode::OK, "{}".into()));
    let before = sink.received().len();
    tokio::task::block_in_place(|| {
        let tab = open(&browser, &server);
        click(&tab, "button[data-tab=dead]");
        until(
            &tab,
            "document.querySelectorAll('#dead-list tbody tr').length === 1",
        );
        assert!(text(&tab, "#dead-list tbody tr").contains("outage"));
        type_into(&tab, "#dead-destination", "sink");
        type_into(&tab, "#dead-error", "outage");
        click(&tab, "#dead-count");
        until(
            &tab,
            "document.getElementById('dead-result').textContent.startsWith('1 dead letters match')",
        );
        screenshot(&tab, "dead-letters");
        click(&tab, "#dead-retry");
        until(
            &tab,
            "document.getElementById('dead-result').textContent === 'Retried 1 of 1 matching'",
        );
        until(
            &tab,
            "document.querySelectorAll('#audit tbody tr').length === 1",
        );
        assert!(text(&tab, "#audit tbody tr").contains("retry-dead"));
        until(
            &tab,
            "document.querySelectorAll('#dead-list tbody tr').length === 0",
        );
        screenshot(&tab, "dead-letters-retried");
    });
    let arrived = eventually(Duration::from_secs(10), || {
        sink.received()[before..]
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("wamid.lost"))
    })
    .await;
    assert!(arrived, "the retried dead letter arrives at the sink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_shows_as_failing() {
    let Some(browser) = chromium("a_failing_plugin_shows_as_failing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let setup = setup(dir.path(), &sink, false);
    install(
        &setup.plugins_dir(),
        "20-fail",
        &test_plugin("misbehave.wasm"),
        "[config]\nmode = \"error\"\n",
    );
    let server = setup.start().await;
    server
        .post(&message("5511000000005", "wamid.f1", "hi"))
        .await;
    wait_for(&server, "plugins", |p| {
        p["loaded"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["status"] == "failing"))
    })
    .await;
    tokio::task::block_in_place(|| {
        let tab = open(&browser, &server);
        until(
            &tab,
            "document.querySelector('#plugin-health tr[data-plugin=\"20-fail\"] .status')?.textContent === 'failing'",
        );
        click(&tab, "button[data-tab=plugins]");
        until(
            &tab,
            "document.querySelector('#plugins-table tr[data-plugin=\"20-fail\"] .status')?.textContent === 'failing'",
        );
        assert_eq!(
            text(&tab, "#plugins-table tr[data-plugin=echo] .status"),
            "ok"
        );
        let row = text(&tab, "#plugins-table tr[data-plugin=\"20-fail\"]");
        assert!(row.contains("error"), "the latest error is shown: {row}");
        screenshot(&tab, "plugins");
        // The notification's timeline shows the failure, and the next plugin's action.
        search_and_open(&tab, "#q-id", "wamid.f1");
        until(
            &tab,
            "document.querySelectorAll('#timeline .plugin-error').length === 1",
        );
        let timeline = text(&tab, "#timeline");
        assert!(timeline.contains("Plugin 20-fail failed"), "{timeline}");
        assert!(timeline.contains("Plugin echo: forward"), "{timeline}");
        screenshot(&tab, "timeline-plugin-error");
    });
}
