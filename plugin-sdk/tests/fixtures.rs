//! The fixtures of `tests/fixtures/` (On-Premises and Cloud): each splits into the notifications
//! it holds; and with the type of any field changed, added or removed, a body still splits into
//! the same notifications, each item kept byte for byte.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard_sdk::split::{split_cloud, split_onprem};
use switchboard_sdk::{Action, Config, Kind, Notification, Plugin, testing::Harness};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    OnPrem,
    Cloud,
}

impl Api {
    fn dir(self) -> &'static str {
        match self {
            Api::OnPrem => "onprem",
            Api::Cloud => "cloud",
        }
    }

    fn split(self, body: &[u8]) -> Result<Vec<Notification>, String> {
        match self {
            Api::OnPrem => split_onprem(body, "t"),
            Api::Cloud => split_cloud(body, "t"),
        }
        .map_err(|e| e.to_string())
    }
}

/// The fixtures of one API: file name and text.
fn fixtures(api: Api) -> BTreeMap<String, String> {
    let dir = format!(
        "{}/../tests/fixtures/{}",
        env!("CARGO_MANIFEST_DIR"),
        api.dir()
    );
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// `kind:what` of a notification: the message type, the status, or the error code.
fn summary(n: &Notification) -> String {
    let what = match n.kind {
        Kind::Message => n.message_type.clone().unwrap_or_default(),
        Kind::Status => n.status.clone().unwrap_or_default(),
        Kind::Error => n.id.clone(),
    };
    format!("{}:{what}", n.kind.as_str())
}

const ERROR_CODES: [u32; 29] = [
    400, 402, 408, 410, 429, 430, 432, 433, 470, 471, 472, 480, 500, 501, 1000, 1001, 1002, 1005,
    1006, 1007, 1008, 1009, 1011, 1013, 1014, 1015, 1016, 1017, 1018,
];

fn expected(api: Api) -> BTreeMap<String, Vec<String>> {
    let m = |t: &str| format!("message:{t}");
    let s = |t: &str| format!("status:{t}");
    let e = |c: u32| format!("error:{c}");
    let one = |file: &str, what: String| (file.to_string(), vec![what]);
    match api {
        Api::OnPrem => [
            (
                "body-mixed.json".to_string(),
                vec![m("text"), m("text"), s("read"), e(1011)],
            ),
            one("e1-text.json", m("text")),
            one("e2-image.json", m("image")),
            one("e8-location.json", m("location")),
            one("e10-interactive-button-reply.json", m("interactive")),
            one("e16-status-sent-pricing.json", s("sent")),
            one("e19-status-failed.json", s("failed")),
            one("e21-errors.json", e(400)),
            (
                "errors-all-codes.json".to_string(),
                ERROR_CODES.iter().map(|c| e(*c)).collect(),
            ),
            one("message-audio.json", m("audio")),
            one("message-button.json", m("button")),
            one("message-contacts.json", m("contacts")),
            one("message-document.json", m("document")),
            one("message-ephemeral.json", m("ephemeral")),
            one("message-interactive-list-reply.json", m("interactive")),
            one("message-order.json", m("order")),
            one("message-reaction.json", m("reaction")),
            one("message-sticker.json", m("sticker")),
            one("message-system-customer-changed-number.json", m("system")),
            one("message-system-customer-identity-changed.json", m("system")),
            (
                "message-system-groups.json".to_string(),
                vec![m("system"); 4],
            ),
            one("message-system-user-changed-number.json", m("system")),
            one("message-system-user-identity-changed.json", m("system")),
            one("message-text-context.json", m("text")),
            one("message-text-identity.json", m("text")),
            one("message-text-referral.json", m("text")),
            one("message-unknown.json", m("unknown")),
            one("message-video.json", m("video")),
            one("message-voice.json", m("voice")),
            one("status-deleted.json", s("deleted")),
            one("status-delivered.json", s("delivered")),
            one("status-message-recipient.json", s("delivered")),
            one("status-read.json", s("read")),
            one("status-warning.json", s("warning")),
        ]
        .into_iter()
        .collect(),
        Api::Cloud => [
            one("audio-voice.json", m("audio")),
            one("audio.json", m("audio")),
            one("button.json", m("button")),
            one("contacts.json", m("contacts")),
            one("document.json", m("document")),
            (
                "entries-mixed.json".to_string(),
                vec![m("text"), s("delivered")],
            ),
            one("errors.json", e(131000)),
            one("image.json", m("image")),
            one("interactive-button-reply.json", m("interactive")),
            one("interactive-list-reply.json", m("interactive")),
            one("location.json", m("location")),
            one("order.json", m("order")),
            one("reaction-removed.json", m("reaction")),
            one("reaction.json", m("reaction")),
            one("status-deleted.json", s("deleted")),
            one("status-delivered.json", s("delivered")),
            one("status-failed.json", s("failed")),
            one("status-read.json", s("read")),
            one("status-sent.json", s("sent")),
            one("status-warning.json", s("warning")),
            one("sticker.json", m("sticker")),
            one("system-user-changed-number.json", m("system")),
            one("text-context.json", m("text")),
            one("text-referral.json", m("text")),
            one("text.json", m("text")),
            one("unknown.json", m("unknown")),
            one("unsupported.json", m("unsupported")),
            one("video.json", m("video")),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn every_fixture_splits_into_the_notifications_it_holds() {
    for api in [Api::OnPrem, Api::Cloud] {
        let files = fixtures(api);
        let expected = expected(api);
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{api:?}: every fixture file has its expectation"
        );
        for (name, text) in &files {
            let ns = api
                .split(text.as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Vec<String> = ns.iter().map(summary).collect();
            assert_eq!(&got, &expected[name], "{api:?} {name}");
            for n in &ns {
                assert!(
                    text.contains(&n.item_json) && n.item_json.starts_with('{'),
                    "{name}: the item as it is in the file"
                );
                assert!(n.message().is_ok() && n.status().is_ok() && n.error().is_ok());
                if n.kind != Kind::Error {
                    assert!(!n.id.is_empty() && n.timestamp.is_some(), "{name}: {n:?}");
                }
                if n.kind == Kind::Status {
                    assert!(n.sender.is_some(), "{name}: the recipient");
                }
                if api == Api::Cloud {
                    assert!(n.phone_number_id.is_some(), "{name}: the business number");
                }
            }
            let with_contact = ns.iter().filter(|n| n.contact_name.is_some()).count();
            assert_eq!(
                with_contact > 0,
                text.contains("\"profile\"") && ns.iter().any(|n| n.kind == Kind::Message),
                "{name}: messages get their contact"
            );
        }
    }
}

// ---- Mutations -------------------------------------------------------------------------------

/// A path of keys and indexes into a JSON value.
type Path = Vec<Step>;

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Keys that hold the structure a notification is taken from (not fields of an item).
const STRUCTURE: [&str; 8] = [
    "entry", "changes", "value", "field", "messages", "statuses", "errors", "contacts",
];

/// Every field of a body but the structure notifications are taken from: the paths a mutation
/// may touch.
fn field_paths(v: &Value) -> Vec<Path> {
    fn walk(v: &Value, path: &mut Path, in_field: bool, out: &mut Vec<Path>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(Step::Key(k.clone()));
                    let field = in_field || !STRUCTURE.contains(&k.as_str());
                    if field {
                        out.push(path.clone());
                    }
                    walk(child, path, field, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                // The elements of the item arrays are the items: their fields are fields.
                let items = matches!(path.last(), Some(Step::Key(k))
                    if ["messages", "statuses", "errors", "contacts"].contains(&k.as_str()));
                for (i, child) in a.iter().enumerate() {
                    path.push(Step::Index(i));
                    if in_field {
                        out.push(path.clone());
                    }
                    walk(child, path, in_field || items, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), false, &mut out);
    out
}

fn get_mut<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// What a mutation does to a field.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    /// The same value in the other type: a number as its text, a string of digits as a number.
    SameValue,
    Placeholder,
    Number,
    Float,
    Object,
    Array,
    Null,
    Bool,
    Remove,
    /// Add a field beside it.
    Sibling,
}

const MUTATIONS: [Mutation; 10] = [
    Mutation::SameValue,
    Mutation::Placeholder,
    Mutation::Number,
    Mutation::Float,
    Mutation::Object,
    Mutation::Array,
    Mutation::Null,
    Mutation::Bool,
    Mutation::Remove,
    Mutation::Sibling,
];

/// Apply `m` at `path`; false when it does not apply (the value would not change).
fn mutate(body: &mut Value, path: &[Step], m: Mutation) -> bool {
    let (last, parent) = path.split_last().expect("a field");
    let Some(parent) = get_mut(body, parent) else {
        return false;
    };
    let new = match m {
        Mutation::Remove | Mutation::Sibling => {
            return match (parent, last, m) {
                (Value::Object(o), Step::Key(k), Mutation::Remove) => o.remove(k).is_some(),
                (Value::Object(o), Step::Key(_), _) => {
                    o.insert("x_unexpected".into(), json!({ "nested": [1, "two", null] }));
                    true
                }
                (Value::Array(a), Step::Index(i), Mutation::Remove) if *i < a.len() => {
                    a.remove(*i);
                    true
                }
                (Value::Array(a), _, _) => {
                    a.push(json!("x_unexpected"));
                    true
                }
                _ => false,
            };
        }
        Mutation::SameValue => match get_mut(parent, std::slice::from_ref(last)) {
            Some(Value::Number(n)) => Value::String(n.to_string()),
            Some(Value::String(s)) => match serde_json::from_str::<serde_json::Number>(s) {
                Ok(n) => Value::Number(n),
                Err(_) => return false,
            },
            _ => return false,
        },
        Mutation::Placeholder => json!("n/a"),
        Mutation::Number => json!(12345),
        Mutation::Float => json!(-1.5e300),
        Mutation::Object => json!({ "unexpected": true }),
        Mutation::Array => json!([1, "x", {}]),
        Mutation::Null => Value::Null,
        Mutation::Bool => json!(true),
    };
    match get_mut(parent, std::slice::from_ref(last)) {
        Some(old) if *old != new => {
            *old = new;
            true
        }
        _ => false,
    }
}

/// The item a path lies in (its path), and the key of the item's field it is in.
fn item_of(path: &[Step]) -> Option<(Path, String)> {
    let at = path.iter().position(
        |s| matches!(s, Step::Key(k) if ["messages", "statuses", "errors"].contains(&k.as_str())),
    )?;
    let item = path.get(..at + 2)?.to_vec();
    match path.get(at + 2) {
        Some(Step::Key(k)) => Some((item, k.clone())),
        _ => Some((item, String::new())),
    }
}

/// What a notification's typed fields hold, leaving out those read from `except` (a key of
/// its item).
fn typed(n: &Notification, except: &str) -> Vec<(&'static str, Option<String>)> {
    let from = |keys: &[&str]| keys.contains(&except);
    let mut out = vec![("kind", Some(n.kind.as_str().to_string()))];
    if !from(&["id", "code"]) {
        out.push(("id", Some(n.id.clone())));
    }
    if !from(&["from", "recipient_id", "message"]) {
        out.push(("sender", n.sender.clone()));
    }
    if !from(&["timestamp"]) {
        out.push(("timestamp", n.timestamp.map(|t| t.to_string())));
    }
    if !from(&["type"]) {
        out.push(("type", n.message_type.clone()));
    }
    if !from(&["status"]) {
        out.push(("status", n.status.clone()));
    }
    out
}

/// A plugin that reads every item through the typed accessors, as the default `handle` does.
struct Reader;

impl Plugin for Reader {
    fn init(_: Config) -> Result<Self, String> {
        Ok(Reader)
    }

    fn on_message(
        &self,
        n: &Notification,
        m: &switchboard_sdk::whatsapp::Message,
    ) -> Result<Vec<Action>, String> {
        let _ = (m.content(), m.text_content(), m.is_voice(), n.contact());
        Ok(vec![Action::tag("m")])
    }

    fn on_status(
        &self,
        _: &Notification,
        s: &switchboard_sdk::whatsapp::Status,
    ) -> Result<Vec<Action>, String> {
        let _ = (s.state(), s.recipient());
        Ok(vec![Action::tag("s")])
    }

    fn on_error(
        &self,
        _: &Notification,
        _: &switchboard_sdk::whatsapp::WhatsAppError,
    ) -> Result<Vec<Action>, String> {
        Ok(vec![Action::tag("e")])
    }
}

/// Check a mutated body against the original's notifications; `touched` are the mutated paths.
fn check(api: Api, name: &str, original: &[Notification], body: &Value, touched: &[Path]) {
    let text = serde_json::to_string(body).unwrap();
    let what = format!("{api:?} {name} with {touched:?}");
    let ns = api
        .split(text.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: refused: {e}"));
    assert_eq!(ns.len(), original.len(), "{what}: as many notifications");
    // The items of the mutated body with their paths, in split order.
    let mut items: Vec<(Path, &Value)> = Vec::new();
    fn take<'v>(value: &'v Value, at: Path, items: &mut Vec<(Path, &'v Value)>) {
        for key in ["messages", "statuses", "errors"] {
            if let Some(Value::Array(a)) = value.get(key) {
                for (i, item) in a.iter().enumerate() {
                    let mut p = at.clone();
                    p.extend([Step::Key(key.into()), Step::Index(i)]);
                    items.push((p, item));
                }
            }
        }
    }
    match api {
        Api::OnPrem => take(body, Vec::new(), &mut items),
        Api::Cloud => {
            for (e, entry) in body["entry"].as_array().unwrap().iter().enumerate() {
                for (c, change) in entry["changes"].as_array().unwrap().iter().enumerate() {
                    if change["field"] == "messages" {
                        let at = vec![
                            Step::Key("entry".into()),
                            Step::Index(e),
                            Step::Key("changes".into()),
                            Step::Index(c),
                            Step::Key("value".into()),
                        ];
                        take(&change["value"], at, &mut items);
                    }
                }
            }
        }
    }
    assert_eq!(items.len(), ns.len(), "{what}");
    let reader = Harness::<Reader>::new(json!({})).unwrap();
    for ((path, item), (n, before)) in items.iter().zip(ns.iter().zip(original)) {
        let exact = serde_json::to_string(item).unwrap();
        assert_eq!(n.item_json, exact, "{what}: the item as received");
        assert_eq!(n.kind, before.kind, "{what}");
        assert!(
            n.message().is_ok() && n.status().is_ok() && n.error().is_ok(),
            "{what}"
        );
        assert_eq!(
            reader.handle(n).map(|a| a.len()),
            Ok(1),
            "{what}: a plugin sees it"
        );
        let mine: Vec<&Path> = touched.iter().filter(|t| t.starts_with(path)).collect();
        let except = match mine.as_slice() {
            [] => String::new(),
            [one] => item_of(one).map(|(_, k)| k).unwrap_or_default(),
            // Several fields of this item changed: its text is checked above.
            _ => continue,
        };
        assert_eq!(
            typed(n, &except),
            typed(before, &except),
            "{what}: the fields not touched keep their values"
        );
    }
}

/// A fixture: its API, file name, body, and the notifications of its compact text.
type Original = (Api, String, Value, Vec<Notification>);

/// The fixtures of both APIs.
fn originals() -> &'static [Original] {
    static ORIGINALS: std::sync::OnceLock<Vec<Original>> = std::sync::OnceLock::new();
    ORIGINALS.get_or_init(|| {
        let mut out = Vec::new();
        for api in [Api::OnPrem, Api::Cloud] {
            for (name, text) in fixtures(api) {
                let value: Value = serde_json::from_str(&text).unwrap();
                let compact = serde_json::to_string(&value).unwrap();
                let ns = api.split(compact.as_bytes()).unwrap();
                out.push((api, name, value, ns));
            }
        }
        out
    })
}

/// Every mutation of every field of every fixture, one at a time.
#[test]
fn no_single_field_of_any_fixture_gets_a_body_refused() {
    let mut cases = 0;
    for (api, name, value, ns) in originals() {
        for path in field_paths(value) {
            for m in MUTATIONS {
                let mut body = value.clone();
                if mutate(&mut body, &path, m) {
                    check(*api, name, ns, &body, std::slice::from_ref(&path));
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 5000, "{cases} cases");
}

/// Ids, timestamps and codes are read from numbers and strings alike: the same value in the
/// other type gives the same notification.
#[test]
fn the_same_value_in_the_other_type_reads_the_same() {
    for (api, name, value, ns) in originals() {
        for path in field_paths(value) {
            let mut body = value.clone();
            if !mutate(&mut body, &path, Mutation::SameValue) {
                continue;
            }
            let text = serde_json::to_string(&body).unwrap();
            let got = api.split(text.as_bytes()).unwrap();
            for (n, before) in got.iter().zip(ns.iter()) {
                assert_eq!(typed(n, ""), typed(before, ""), "{name} with {path:?}");
                assert_eq!(
                    (&n.text, &n.phone_number_id, &n.contact_name),
                    (&before.text, &before.phone_number_id, &before.contact_name),
                    "{name} with {path:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Several fields of one fixture at once.
    #[test]
    fn several_mutated_fields_never_get_a_body_refused(
        which in any::<prop::sample::Index>(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), 0..MUTATIONS.len()), 1..6),
    ) {
        let (api, name, value, ns) = which.get(originals());
        let paths = field_paths(value);
        let mut body = value.clone();
        let mut touched = Vec::new();
        for (p, m) in picks {
            let path = p.get(&paths);
            // A path may be gone after an earlier removal; then the mutation does not apply.
            if mutate(&mut body, path, MUTATIONS[m]) {
                touched.push(path.clone());
            }
        }
        check(*api, name, ns, &body, &touched);
    }
}
