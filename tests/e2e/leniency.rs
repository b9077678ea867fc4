//! A webhook is never refused for the shape of a field: every fixture of both APIs, with the
//! types of its fields changed, fields removed and others added, is answered 200 by the real
//! server, and every item reaches a plugin and its forward byte for byte.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::{Fake, ServerSetup, eventually, http, install, root, test_plugin};

use crate::ingress::sign;

const ITEM_KEYS: [&str; 3] = ["messages", "statuses", "errors"];

/// A small deterministic generator (xorshift64): the same bodies on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Change, remove or add fields of `item` at random (about one field in three, at any depth);
/// `unique` makes the values that replace a field unique to this item.
fn mutate(v: &mut Value, rng: &mut Rng, unique: u64) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().filter(|k| *k != "x_variant").cloned().collect();
            for k in keys {
                match rng.below(12) {
                    0 => m[&k] = json!(format!("n/a-{unique}")),
                    1 => m[&k] = json!(900_000_000 + unique),
                    2 => m[&k] = json!({ "unexpected": unique }),
                    3 => m[&k] = Value::Null,
                    4 => {
                        m.remove(&k);
                    }
                    5 => m[&k] = json!(-0.5 - unique as f64),
                    6 => {
                        m.insert(format!("x_new_{k}"), json!([true, {}]));
                    }
                    7 => {
                        let same = match &m[&k] {
                            Value::Number(n) => json!(n.to_string()),
                            Value::String(s) => {
                                s.parse::<u64>().map(Value::from).unwrap_or(json!(s))
                            }
                            other => other.clone(),
                        };
                        m[&k] = same;
                    }
                    _ => mutate(&mut m[&k], rng, unique),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|i| mutate(i, rng, unique)),
        _ => {}
    }
}

/// Make every item of the body unique (a made-up field, and its id if it has one), then mutate
/// its fields and those of its contacts.
fn variant(body: &mut Value, rng: &mut Rng, unique: u64) {
    let Value::Object(m) = body else { return };
    for (k, v) in m.iter_mut() {
        match (k.as_str(), v) {
            (k, Value::Array(items)) if ITEM_KEYS.contains(&k) || k == "contacts" => {
                for (i, item) in items.iter_mut().enumerate() {
                    let unique = unique * 1000 + i as u64;
                    if let Some(id) = item.get("id").and_then(Value::as_str) {
                        item["id"] = json!(format!("{id}-{unique}"));
                    }
                    if k != "contacts" {
                        item["x_variant"] = json!(unique);
                    }
                    mutate(item, rng, unique);
                }
            }
            (_, Value::Array(a)) => a.iter_mut().for_each(|i| variant(i, rng, unique)),
            (_, v @ Value::Object(_)) => variant(v, rng, unique),
            _ => {}
        }
    }
}

/// The body's text: compact, but each item pretty-printed, so that an item passed on as
/// anything but the bytes received would show. Pushes each item's text to `items`.
fn render(v: &Value, items: &mut Vec<String>) -> String {
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::Array(a) if ITEM_KEYS.contains(&k.as_str()) => {
                            let texts: Vec<String> = a
                                .iter()
                                .map(|i| {
                                    let t = serde_json::to_string_pretty(i).unwrap();
                                    items.push(t.clone());
                                    t
                                })
                                .collect();
                            format!("[ {} ]", texts.join(" ,\n"))
                        }
                        _ => render(v, items),
                    };
                    format!("{}: {value}", serde_json::to_string(k).unwrap())
                })
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::Array(a) => {
            let texts: Vec<String> = a.iter().map(|i| render(i, items)).collect();
            format!("[{}]", texts.join(","))
        }
        other => other.to_string(),
    }
}

fn fixtures(api: &str) -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures").join(api);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn mutated_fixtures_are_answered_200_and_forwarded_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.destinations = vec![("sink".into(), sink.url())];
    setup.extra = "[[server.endpoints]]\nname = \"cloud\"\npath = \"/cloud\"\nkind = \"cloud\"\n\
                   app_secret_env = \"APP_SECRET\"\n"
        .into();
    setup.env = vec![("APP_SECRET".into(), "app-secret".into())];
    std::fs::create_dir_all(setup.plugins_dir()).unwrap();
    install(
        &setup.plugins_dir(),
        "forward",
        &test_plugin("misbehave.wasm"),
        "[config]\nmode = \"forward\"\ndestination = \"sink\"\n[permissions]\ndestinations = [\"sink\"]\n",
    );
    let server = setup.start().await;

    let mut rng = Rng(0x5eed_2026_1201);
    let mut expected: Vec<String> = Vec::new();
    let mut posts = 0u64;
    for (api, path) in [("onprem", "/webhook"), ("cloud", "/cloud")] {
        for (name, fixture) in fixtures(api) {
            for _ in 0..3 {
                posts += 1;
                let mut body = fixture.clone();
                variant(&mut body, &mut rng, posts);
                let mut items = Vec::new();
                let text = render(&body, &mut items);
                let mut request = http()
                    .post(server.url(path))
                    .header("content-type", "application/json")
                    .body(text.clone());
                if api == "cloud" {
                    request = request.header("x-hub-signature-256", sign("app-secret", &text));
                }
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                assert_eq!(
                    status,
                    200,
                    "{api} {name}: {}\n{text}",
                    r.text().await.unwrap_or_default()
                );
                expected.extend(items);
            }
        }
    }
    assert!(expected.len() > 150, "{} items", expected.len());
    let arrived = eventually(Duration::from_secs(60), || {
        sink.received().len() >= expected.len()
    })
    .await;
    if !arrived {
        let bodies: Vec<String> = sink
            .received()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|e| !bodies.iter().any(|b| b.contains(e.as_str())))
            .collect();
        panic!(
            "{} of {} forwards arrived ({} duplicates); missing: {missing:#?}\n{}",
            bodies.len(),
            expected.len(),
            server.metric("notifications_duplicate_total").await,
            server.log()
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut forwarded: Vec<String> = sink
        .received()
        .iter()
        .map(|r| {
            let body = String::from_utf8(r.body.to_vec()).unwrap();
            let at = body.find(",\"item\":").expect("an item") + ",\"item\":".len();
            let item = expected
                .iter()
                .find(|e| {
                    body[at..].starts_with(e.as_str())
                        && body[at + e.len()..].starts_with([',', '}'])
                })
                .unwrap_or_else(|| panic!("a forwarded item not as posted: {body}"));
            item.clone()
        })
        .collect();
    forwarded.sort();
    expected.sort();
    assert_eq!(
        forwarded, expected,
        "every item forwarded once, byte for byte"
    );
    assert_eq!(server.metric("webhooks_rejected_total").await, 0);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
