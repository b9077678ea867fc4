//! The fixtures of `tests/fixtures/` (On-Premises and Cloud): each splits into the notifications
//! it holds.

use std::collections::BTreeMap;

use switchboard_sdk::split::{split_cloud, split_onprem};
use switchboard_sdk::{Kind, Notification};

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
                let typed = match n.kind {
                    Kind::Message => n.message().map(drop),
                    Kind::Status => n.status().map(drop),
                    Kind::Error => n.error().map(drop),
                };
                assert_eq!(typed, Ok(()), "{name}");
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
