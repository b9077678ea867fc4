//! The operator console's API (`/admin/api/`): its token, read-only mode, search, timeline,
//! dead letters retried by filter, its OpenAPI document checked against the running server,
//! and its bounds on a database of 100,000 notifications.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_tests::{
    Fake, Server, ServerSetup, eventually, free_port, http, postgres_database, root, target_dir,
};

pub const TOKEN: &str = "console-token-for-tests";

/// A server whose only plugin forwards every notification to the fake `sink`, with the console
/// on (`read_only` as given).
pub fn setup(dir: &Path, sink: &Fake, read_only: bool) -> ServerSetup {
    let mut setup = ServerSetup::echo(dir, sink);
    setup.extra += &format!(
        "[admin]\ntoken_env = \"SWITCHBOARD_ADMIN_TOKEN\"\nread_only = {read_only}\nmax_retry = 50\n"
    );
    setup
        .env
        .push(("SWITCHBOARD_ADMIN_TOKEN".into(), TOKEN.into()));
    setup
}

/// An On-Premises webhook with one text message.
pub fn message(from: &str, id: &str, body: &str) -> String {
    json!({
        "contacts": [{ "profile": { "name": "Test" }, "wa_id": from }],
        "messages": [{ "from": from, "id": id, "timestamp": "1736330400", "type": "text",
                       "text": { "body": body } }],
    })
    .to_string()
}

/// `GET /admin/api/{path}` with `token`; returns the status and the JSON body.
pub async fn get(server: &Server, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut r = http().get(server.url(&format!("/admin/api/{path}")));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.expect("GET the console API");
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `GET` with the right token, expecting 200.
pub async fn get_ok(server: &Server, path: &str) -> Value {
    let (status, body) = get(server, path, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// `POST /admin/api/{path}` with the right token.
pub async fn post(server: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let r = http()
        .post(server.url(&format!("/admin/api/{path}")))
        .bearer_auth(TOKEN)
        .header("x-operator", "tester")
        .json(&body)
        .send()
        .await
        .expect("POST to the console API");
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `GET` until `done` holds of the answer (for at most 15 s); returns that answer.
pub async fn wait_for(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = get(server, path, Some(TOKEN)).await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never came to what was awaited: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The inbox id of the notification with message id `id`, once searchable.
pub async fn find(server: &Server, id: &str) -> i64 {
    let page = get_ok(server, &format!("notifications?id={id}")).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one notification has id {id}: {page}");
    items[0]["inbox_id"].as_i64().unwrap()
}

#[tokio::test]
async fn the_console_api_needs_the_token_and_read_only_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = setup(dir.path(), &sink, true).start().await;
    for path in ["overview", "notifications", "dead-letters", "plugins"] {
        let (status, body) = get(&server, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert!(body["error"].as_str().unwrap().contains("token"));
        let (status, _) = get(&server, path, Some("wrong-token")).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        let (status, _) = get(&server, path, Some(&TOKEN[..TOKEN.len() - 1])).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a prefix of the token"
        );
        get_ok(&server, path).await;
    }
    let r = http()
        .post(server.url("/admin/api/dead-letters/retry"))
        .json(&json!({ "dry_run": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a change without a token");
    let (status, body) = post(&server, "dead-letters/retry", json!({ "dry_run": false })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("read-only"));
    // Read-only refuses even a dry run: it is a POST, and nothing is recorded.
    let (status, _) = post(&server, "dead-letters/retry", json!({ "dry_run": true })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(get_ok(&server, "audit").await, json!([]));
    assert_eq!(get_ok(&server, "overview").await["read_only"], json!(true));
}

#[tokio::test]
async fn without_an_admin_section_there_is_no_console_and_a_missing_token_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = ServerSetup::echo(dir.path(), &sink).start().await;
    let (status, _) = get(&server, "overview", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(server);

    // With [admin] but its token unset, the server does not start, and says why.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("switchboard.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[admin]\ntoken_env = \"SWITCHBOARD_TEST_UNSET_TOKEN\"\n",
            free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(target_dir().join("release/switchboard"))
        .current_dir(dir.path())
        .args(["serve", "--config", "switchboard.toml"])
        .env_remove("SWITCHBOARD_TEST_UNSET_TOKEN")
        .output()
        .unwrap();
    let (ok, out) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!ok);
    assert!(
        out.contains("SWITCHBOARD_TEST_UNSET_TOKEN, which is not set"),
        "{out}"
    );
}

#[tokio::test]
async fn the_console_can_listen_on_an_address_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let mut setup = setup(dir.path(), &sink, false);
    let port = free_port();
    setup.extra = setup.extra.replace(
        "[admin]\n",
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let server = setup.start().await;
    let (status, _) = get(&server, "overview", Some(TOKEN)).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "not on the webhooks' address"
    );
    let own = format!("http://127.0.0.1:{port}");
    let r = http()
        .get(format!("{own}/admin/api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http()
        .get(format!("{own}/admin/api/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let page = http().get(format!("{own}/admin/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("/admin/app.js"));
}

#[tokio::test]
async fn search_timeline_and_retry_of_dead_letters_by_filter() {
    search_timeline_and_retry(None).await;
}

/// The same on PostgreSQL: the console reads and changes the shared database alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_timeline_and_retry_of_dead_letters_by_filter_on_postgresql() {
    let _one = crate::postgres::ONE_AT_A_TIME.lock().await;
    let Some((url, _db)) = postgres_database("the console on PostgreSQL").await else {
        return;
    };
    search_timeline_and_retry(Some(url)).await;
}

/// Post messages, find them by customer and text, read a timeline (the plugin's forward with
/// a failed attempt and a good one), and retry dead letters by filter until they arrive; on
/// the storage at `storage_url` (SQLite's default without).
async fn search_timeline_and_retry(storage_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    // The sink fails the first attempt of each forward with a 503, then accepts; anything
    // saying "refuse" gets a 400 (dead at once) while `refusing` holds.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let sink = Fake::with(move |r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if body.contains("refuse") {
            return (
                StatusCode::BAD_REQUEST,
                r#"{"error":"refused by the test"}"#.into(),
            );
        }
        if seen.lock().unwrap().insert(body) {
            (StatusCode::SERVICE_UNAVAILABLE, "busy".into())
        } else {
            (StatusCode::OK, "{}".into())
        }
    })
    .await;
    let mut setup = setup(dir.path(), &sink, false);
    if let Some(url) = storage_url {
        setup.storage_url = url;
    }
    let server = setup.start().await;
    let (status, _) = server
        .post(&message("5511000000001", "wamid.first", "hello there"))
        .await;
    assert_eq!(status, 200);
    server
        .post(&message("5511000000002", "wamid.second", "other customer"))
        .await;
    for i in 0..3 {
        let (status, _) = server
            .post(&message(
                "5511000000003",
                &format!("wamid.refuse{i}"),
                "please refuse me",
            ))
            .await;
        assert_eq!(status, 200);
    }

    // By customer: only theirs. By text: case-insensitive, anywhere in the item.
    let page = get_ok(&server, "notifications?wa_id=5511000000001").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["id"], "wamid.first");
    assert_eq!(items[0]["endpoint"], "default");
    assert_eq!(items[0]["text"], "hello there");
    let page = get_ok(&server, "notifications?q=HELLO").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let page = get_ok(&server, "notifications?kind=status").await;
    assert_eq!(page["items"], json!([]));
    let page = get_ok(
        &server,
        "notifications?kind=message&endpoint=default&message_type=text",
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5, "{page}");
    let page = get_ok(&server, "notifications?endpoint=elsewhere").await;
    assert_eq!(page["items"], json!([]));
    // Pages of one, newest first, with a cursor.
    let first = get_ok(&server, "notifications?limit=1").await;
    assert_eq!(first["items"][0]["id"], "wamid.refuse2");
    let next = first["next"].as_i64().expect("a cursor");
    let second = get_ok(&server, &format!("notifications?limit=1&before={next}")).await;
    assert_eq!(second["items"][0]["id"], "wamid.refuse1");
    let (status, _) = get(&server, "notifications?nonsense=1", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The timeline: received, then the plugin's forward with a failed attempt and a good one.
    let inbox_id = find(&server, "wamid.first").await;
    let timeline = wait_for(&server, &format!("notifications/{inbox_id}"), |t| {
        t["deliveries"][0]["state"] == "delivered"
    })
    .await;
    assert_eq!(timeline["received"]["endpoint"], "default");
    assert_eq!(timeline["dispatched"], true);
    let d = &timeline["deliveries"][0];
    assert_eq!(d["plugin"], "echo");
    assert_eq!(d["kind"], "forward");
    assert_eq!(d["destination"], "sink");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{d}");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[0]["outcome"], "retry");
    assert!(attempts[0]["error"].as_str().unwrap().contains("busy"));
    assert_eq!(attempts[1]["status"], 200);
    assert_eq!(attempts[1]["outcome"], "delivered");
    assert!(attempts[1]["at"].as_i64() >= attempts[0]["at"].as_i64());
    let (status, _) = get(&server, "notifications/999999", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Deliveries by state; the dead letters with their last response.
    wait_for(&server, "dead-letters", |d| {
        d["items"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let dead = get_ok(&server, "dead-letters?destination=sink").await;
    let last = &dead["items"][0];
    assert_eq!(last["state"], "dead");
    assert_eq!(last["attempts"][0]["status"], 400);
    assert!(
        last["last_error"]
            .as_str()
            .unwrap()
            .contains("refused by the test")
    );
    // The second customer's forward is delivered at its own retry, which may come after the
    // first's timeline and the dead letters.
    wait_for(&server, "deliveries?state=delivered", |d| {
        d["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(
        get_ok(&server, "deliveries?destination=nowhere").await["items"],
        json!([])
    );

    // A dry run counts and changes nothing; a bounded run retries the oldest two and says so.
    sink.respond(|_| (StatusCode::OK, "{}".into()));
    let filter = json!({ "destination": "sink", "error": "refused" });
    let (status, dry) = post(&server, "dead-letters/retry", json!({ "filter": filter })).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(
        (
            dry["dry_run"].clone(),
            dry["matched"].clone(),
            dry["retried"].clone()
        ),
        (json!(true), json!(3), json!(0))
    );
    let (_, none) = post(
        &server,
        "dead-letters/retry",
        json!({ "filter": { "destination": "other" } }),
    )
    .await;
    assert_eq!(none["matched"], 0);
    let before = sink.received().len();
    let (status, run) = post(
        &server,
        "dead-letters/retry",
        json!({ "filter": filter, "dry_run": false, "limit": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(
        (run["matched"].clone(), run["retried"].clone()),
        (json!(3), json!(2))
    );
    let arrived = eventually(Duration::from_secs(10), || {
        sink.received().len() >= before + 2
    })
    .await;
    assert!(arrived, "the two retried dead letters arrive");
    wait_for(&server, "dead-letters", |d| {
        d["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let audit = get_ok(&server, "audit").await;
    assert_eq!(audit.as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit[0]["action"], "retry-dead");
    assert_eq!(audit[0]["count"], 2);
    assert!(
        audit[0]["who"]
            .as_str()
            .unwrap()
            .starts_with("tester (127.0.0.1)")
    );
    assert!(audit[0]["detail"].as_str().unwrap().contains("refused"));

    // Ingress by endpoint and outcome, and destination health.
    server.post("{not json").await;
    let ingress = get_ok(&server, "ingress").await;
    let statuses = &ingress["endpoints"][0]["statuses"];
    assert_eq!(ingress["endpoints"][0]["endpoint"], "default");
    assert_eq!(statuses["200"], 5, "{ingress}");
    assert_eq!(statuses["400"], 1, "{ingress}");
    let destinations = wait_for(&server, "destinations", |d| d[0]["delivered"] == 4).await;
    let sink = &destinations[0];
    assert_eq!(sink["destination"], "sink");
    assert_eq!(sink["dead"], 1, "{sink}");
    assert_eq!(sink["success_rate"], 0.8, "{sink}");
    assert_eq!(sink["pending"], 0, "{sink}");
}

/// Whether `value` fits `schema` (the OpenAPI subset the document uses: `$ref`, `type`,
/// `properties`, `required`, `items`, `enum`, `nullable`, `additionalProperties`); the first
/// misfit, with where it is.
fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return fits(doc, &doc["components"]["schemas"][name], value, at);
    }
    if value.is_null() {
        return if schema["nullable"] == true || schema.get("type").is_none() {
            Ok(())
        } else {
            Err(format!("{at}: null where {schema} is not nullable"))
        };
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {value} is not a {ty}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let Some(required) = schema["required"].as_array() {
        for key in required {
            let key = key.as_str().unwrap();
            if value.get(key).is_none() {
                return Err(format!("{at}: no {key} in {value}"));
            }
        }
    }
    if let Some(props) = schema["properties"].as_object() {
        for (key, v) in value.as_object().unwrap() {
            match props.get(key) {
                Some(s) => fits(doc, s, v, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == false => {
                    return Err(format!("{at}: {key} is not in the document"));
                }
                None if schema.get("additionalProperties").is_none() => {
                    return Err(format!("{at}: {key} is not in the document"));
                }
                None => {}
            }
        }
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object())
        && schema.get("properties").is_none()
    {
        for (key, v) in value.as_object().unwrap() {
            fits(doc, extra, v, &format!("{at}.{key}"))?;
        }
    }
    if let Some(items) = schema.get("items") {
        for (i, v) in value.as_array().unwrap().iter().enumerate() {
            fits(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_describes_the_running_server() {
    let checked_in: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("host/src/admin/openapi.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::with(|r| {
        if String::from_utf8_lossy(&r.body).contains("refuse") {
            (StatusCode::BAD_REQUEST, "no".into())
        } else {
            (StatusCode::OK, "{}".into())
        }
    })
    .await;
    let server = setup(dir.path(), &sink, false).start().await;
    let served: Value = http()
        .get(server.url("/admin/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served, checked_in,
        "the server serves the checked-in document"
    );

    server
        .post(&message("5511000000001", "wamid.ok", "fine"))
        .await;
    server
        .post(&message("5511000000002", "wamid.refuse", "refuse it"))
        .await;
    wait_for(&server, "dead-letters", |d| {
        d["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let inbox_id = find(&server, "wamid.ok").await;

    let paths = checked_in["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 10, "every route is documented, and only those");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let url = path
                .trim_start_matches("/admin/api/")
                .replace("{inbox_id}", &inbox_id.to_string());
            // Without the token, every operation answers as documented for 401.
            let r = http()
                .request(
                    method.parse().unwrap(),
                    server.url(&format!("/admin/api/{url}")),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 401, "{method} {path}");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} documents 401"
            );
            let (status, body) = match method.as_str() {
                "get" => get(&server, &url, Some(TOKEN)).await,
                "post" => post(&server, &url, json!({ "filter": {}, "dry_run": true })).await,
                other => panic!("undocumented method {other}"),
            };
            assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
            let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
            if let Err(e) = fits(&checked_in, schema, &body, &format!("{method} {path}")) {
                panic!("the answer does not fit the document: {e}\n{body:#}");
            }
            // Every documented query parameter is accepted.
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] != "query" {
                    continue;
                }
                let name = p["name"].as_str().unwrap();
                let value = match p["schema"]["type"].as_str() {
                    Some("integer") => "1".to_string(),
                    _ => p["schema"]["enum"][0].as_str().unwrap_or("x").to_string(),
                };
                let (status, body) =
                    get(&server, &format!("{url}?{name}={value}"), Some(TOKEN)).await;
                assert_eq!(status, StatusCode::OK, "{path}?{name}={value}: {body}");
            }
        }
    }
}

/// How long each endpoint may take on 100,000 notifications.
const BOUND: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn every_endpoint_answers_within_its_bound_on_100_000_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let mut server = setup(dir.path(), &sink, false).start().await;
    server.terminate();
    let started = Instant::now();
    fill(&dir.path().join("data"), 100_000);
    eprintln!(
        "filled 100,000 notifications and their deliveries in {:?}",
        started.elapsed()
    );
    server.restart().await;

    let last = 100_000;
    let paths = [
        "overview".to_string(),
        "notifications".into(),
        "notifications?wa_id=5511000000777".into(),
        "notifications?id=wamid.50000".into(),
        "notifications?q=order%2099999".into(),
        // Nothing matches: the whole window is read.
        "notifications?q=no-such-text-anywhere".into(),
        "notifications?kind=status&message_type=image".into(),
        format!("notifications/{last}"),
        "deliveries".into(),
        "deliveries?state=delivered&destination=sink&kind=forward".into(),
        "deliveries?state=pending".into(),
        "dead-letters".into(),
        "dead-letters?destination=sink".into(),
        "audit".into(),
        "plugins".into(),
        "destinations".into(),
        "ingress".into(),
    ];
    let mut report = String::new();
    for path in &paths {
        // The first read warms the page cache; the bound holds for the second.
        get_ok(&server, path).await;
        let t = Instant::now();
        let body = get_ok(&server, path).await;
        let took = t.elapsed();
        report += &format!("{took:>10.1?}  GET /admin/api/{path}\n");
        assert!(took < BOUND, "GET {path} took {took:?}, above {BOUND:?}");
        if path.starts_with("notifications?wa_id") {
            assert_eq!(
                body["items"].as_array().unwrap().len(),
                50,
                "a page of that customer's"
            );
            assert!(
                body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["wa_id"] == "5511000000777")
            );
        }
        if path.starts_with("notifications?id=") {
            assert_eq!(body["items"][0]["inbox_id"], 50_000);
        }
        if path.starts_with("notifications/") {
            assert_eq!(
                body["deliveries"][0]["attempts"].as_array().unwrap().len(),
                1
            );
        }
    }
    let t = Instant::now();
    let (status, dry) = post(&server, "dead-letters/retry", json!({ "filter": {} })).await;
    report += &format!(
        "{:>10.1?}  POST /admin/api/dead-letters/retry (dry run)\n",
        t.elapsed()
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dry["matched"], 1000);
    assert!(t.elapsed() < BOUND);
    let t = Instant::now();
    let (_, run) = post(
        &server,
        "dead-letters/retry",
        json!({ "filter": {}, "dry_run": false }),
    )
    .await;
    report += &format!(
        "{:>10.1?}  POST /admin/api/dead-letters/retry (50 retried)\n",
        t.elapsed()
    );
    assert_eq!(run["retried"], 50, "bounded by max_retry");
    assert!(t.elapsed() < BOUND);
    eprintln!("on 100,000 notifications:\n{report}");
}

/// Fill the databases in `data` (made by a server that stopped) with `n` handled
/// notifications, each forwarded once to `sink` and delivered, except every hundredth, dead.
/// Customers repeat every 1000 notifications.
fn fill(data: &Path, n: i64) {
    let inbox = rusqlite::Connection::open(data.join("switchboard-inbox.db")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    inbox.execute_batch("BEGIN").unwrap();
    {
        let mut insert = inbox
            .prepare("INSERT INTO inbox (id, received_at, dedup_key, notification) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for i in 1..=n {
            let from = format!("5511000000{:03}", i % 1000);
            let item = json!({ "from": from, "id": format!("wamid.{i}"), "timestamp": "1736330400",
                               "type": "text", "text": { "body": format!("order {i} please") } });
            let stored = json!({ "kind": "message", "source": "default", "item": item,
                                 "contact": { "profile": { "name": "Customer" }, "wa_id": from } });
            insert
                .execute(rusqlite::params![
                    i,
                    now - (n - i) * 10,
                    format!("m:wamid.{i}"),
                    stored.to_string()
                ])
                .unwrap();
        }
    }
    inbox.execute_batch("COMMIT").unwrap();
    let work = rusqlite::Connection::open(data.join("switchboard.db")).unwrap();
    work.execute_batch("BEGIN").unwrap();
    {
        let mut insert = work
            .prepare(
                "INSERT INTO outbox (id, kind, target, lane, webhook_id, request, state, attempts, created_at, next_at, finished_at, last_error, inbox_id, plugin, attempt_log)
                 VALUES (?1, 'forward', 'sink', ?2, ?3, '{\"kind\":\"forward\",\"body\":\"{}\"}', ?4, 1, ?5, ?5, ?5, ?6, ?1, 'echo', ?7)",
            )
            .unwrap();
        for i in 1..=n {
            let dead = i % 100 == 0;
            let at = now - (n - i) * 10;
            let log = format!(
                "{{\"at\":{at},\"duration_ms\":3,\"status\":{},\"outcome\":\"{}\",\"error\":null}}\n",
                if dead { 400 } else { 200 },
                if dead { "dead" } else { "delivered" }
            );
            insert
                .execute(rusqlite::params![
                    i,
                    format!("sink/5511000000{:03}", i % 1000),
                    format!("msg_{i}"),
                    if dead { 2 } else { 1 },
                    at,
                    dead.then_some("400 Bad Request: no"),
                    log
                ])
                .unwrap();
        }
    }
    work.execute("UPDATE dispatch_cursor SET inbox_id = ?1", [n])
        .unwrap();
    work.execute_batch("COMMIT").unwrap();
}
