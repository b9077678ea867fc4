//! `auto-reply`: answers every inbound text message with a fixed text (or, with `buttons`, the
//! text with reply buttons under it), and marks it read.
//!
//! Config: `text` (required), `buttons` (optional: up to three `{ id, title }` tables),
//! `mark_read` (default true), `once_per_hours` (optional: at most one auto-reply per customer
//! in that window, remembered in the key-value store).

use std::time::Duration;

use serde::Deserialize;
use switchboard_sdk::send::Send;
use switchboard_sdk::{Action, Config, Notification, Plugin, kv, whatsapp::Message};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    text: String,
    #[serde(default)]
    buttons: Vec<Button>,
    #[serde(default = "yes")]
    mark_read: bool,
    once_per_hours: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Button {
    id: String,
    title: String,
}

fn yes() -> bool {
    true
}

/// The plugin.
pub struct AutoReply {
    settings: Settings,
}

impl Plugin for AutoReply {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.text.trim().is_empty() {
            return Err("`text` must not be empty".into());
        }
        if settings
            .once_per_hours
            .is_some_and(|h| h.is_nan() || h <= 0.0)
        {
            return Err("`once_per_hours` must be a positive number of hours".into());
        }
        let plugin = AutoReply { settings };
        if let Some(send) = plugin.buttons("0") {
            send.validate()
                .map_err(|e| format!("`buttons` break a WhatsApp limit: {e}"))?;
        }
        Ok(plugin)
    }

    fn on_message(&self, n: &Notification, message: &Message) -> Result<Vec<Action>, String> {
        let Some(from) = n.sender.as_deref() else {
            return Ok(vec![]);
        };
        if message.kind != "text" {
            return Ok(vec![]);
        }
        let mut actions = Vec::new();
        if self.first_in_window(from) {
            actions.push(match self.buttons(from) {
                Some(send) => Action::send(send),
                None => Action::reply(from, &self.settings.text),
            });
        }
        if self.settings.mark_read {
            actions.push(Action::mark_read(&n.id));
        }
        Ok(actions)
    }
}

impl AutoReply {
    /// The reply with buttons, when configured.
    fn buttons(&self, to: &str) -> Option<Send> {
        if self.settings.buttons.is_empty() {
            return None;
        }
        let mut draft = Send::buttons(to, &self.settings.text);
        for b in &self.settings.buttons {
            draft = draft.button(&b.id, &b.title);
        }
        Some(draft.build())
    }

    /// Whether to reply to `customer` now, remembering the reply for the window.
    fn first_in_window(&self, customer: &str) -> bool {
        let Some(hours) = self.settings.once_per_hours else {
            return true;
        };
        let key = format!("replied:{customer}");
        if kv::get(&key).is_some() {
            return false;
        }
        kv::set(&key, b"1", Some(Duration::from_secs_f64(hours * 3600.0)));
        true
    }
}

switchboard_sdk::register_plugin!(AutoReply);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_sdk::testing::Harness;

    const TEXT: &str = include_str!("../../../tests/fixtures/onprem/e1-text.json");
    const IMAGE: &str = include_str!("../../../tests/fixtures/onprem/e2-image.json");

    #[test]
    fn replies_and_marks_read() {
        let h = Harness::<AutoReply>::new(json!({ "text": "Thanks!" })).unwrap();
        assert_eq!(
            h.handle_body(TEXT).unwrap(),
            vec![
                Action::reply("5511987650001", "Thanks!"),
                Action::mark_read("ABEGVRGYdlABAgo-sKq3Yc7rN2Tz")
            ]
        );
    }

    #[test]
    fn ignores_other_types_and_statuses() {
        let h = Harness::<AutoReply>::new(json!({ "text": "Thanks!" })).unwrap();
        assert_eq!(h.handle_body(IMAGE).unwrap(), vec![]);
        let status = include_str!("../../../tests/fixtures/onprem/e16-status-sent-pricing.json");
        assert_eq!(h.handle_body(status).unwrap(), vec![]);
    }

    #[test]
    fn mark_read_can_be_turned_off() {
        let h =
            Harness::<AutoReply>::new(json!({ "text": "Thanks!", "mark_read": false })).unwrap();
        assert_eq!(
            h.handle_body(TEXT).unwrap(),
            vec![Action::reply("5511987650001", "Thanks!")]
        );
    }

    #[test]
    fn replies_once_per_window() {
        let h = Harness::<AutoReply>::new(
            json!({ "text": "Thanks!", "once_per_hours": 2, "mark_read": false }),
        )
        .unwrap();
        assert_eq!(h.handle_body(TEXT).unwrap().len(), 1);
        h.advance(Duration::from_secs(3600));
        assert_eq!(
            h.handle_body(TEXT).unwrap(),
            vec![],
            "a second message within the window gets no reply"
        );
        let other = TEXT.replace("5511987650001", "5511987650002");
        assert_eq!(
            h.handle_body(&other).unwrap().len(),
            1,
            "the window is per customer"
        );
        h.advance(Duration::from_secs(3601));
        assert_eq!(
            h.handle_body(TEXT).unwrap().len(),
            1,
            "after the window it replies again"
        );
    }

    #[test]
    fn replies_with_buttons_when_configured() {
        let h = Harness::<AutoReply>::new(json!({
            "text": "Thanks! Anything else?",
            "mark_read": false,
            "buttons": [{ "id": "human", "title": "Talk to a person" }, { "id": "done", "title": "No, thanks" }],
        }))
        .unwrap();
        let actions = h.handle_body(TEXT).unwrap();
        let [Action::Send(send)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        let body = send.to_onprem(None).unwrap();
        assert_eq!(
            body["interactive"]["body"]["text"],
            "Thanks! Anything else?"
        );
        assert_eq!(
            body["interactive"]["action"]["buttons"][0]["reply"]["id"],
            "human"
        );
        let too_long = json!({ "text": "x", "buttons": [{ "id": "a", "title": "a title over twenty characters" }] });
        let refused = Harness::<AutoReply>::new(too_long).err().unwrap();
        assert!(refused.contains("WhatsApp limit"), "{refused}");
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Harness::<AutoReply>::new(json!({})).is_err());
        assert!(Harness::<AutoReply>::new(json!({ "text": " " })).is_err());
        assert!(Harness::<AutoReply>::new(json!({ "text": "x", "once_per_hours": -1 })).is_err());
        assert!(Harness::<AutoReply>::new(json!({ "text": "x", "typo": 1 })).is_err());
    }
}
