//! `menu-bot`: answers a greeting with a menu (a list, or reply buttons for up to three
//! options), routes the customer's choice to the destination of that option, and when the
//! customer's 24-hour window has closed sends an approved template instead (the menu's
//! fallback template, which the host sends in its place).
//!
//! Built for contract 0.2.0: it uses typed sends and the window the host reports.
//!
//! Config:
//! - `greetings`: words that open the menu (default `hi`, `hello`, `menu`, `oi`, `olá`);
//! - `body`: the menu's text; `button`: the label of a list's button (default `Options`);
//! - `style`: `list` (default) or `buttons` (at most three options);
//! - `options`: `[[config.options]]` tables of `id`, `title`, optional `description`, and the
//!   `destination` the choice is forwarded to;
//! - `confirm`: the text sent back once a choice is routed (optional);
//! - `template` and `template_language`: the template sent when the window is closed: the
//!   menu's fallback, and the answer to a menu of this plugin that failed for the window.

use serde::Deserialize;
use switchboard_sdk::send::{Draft, Row, Section, Send, Template};
use switchboard_sdk::whatsapp::{Message, Status};
use switchboard_sdk::{Action, Config, Kind, Notification, Plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_greetings")]
    greetings: Vec<String>,
    body: String,
    #[serde(default = "default_button")]
    button: String,
    #[serde(default)]
    style: Style,
    options: Vec<MenuOption>,
    confirm: Option<String>,
    template: String,
    #[serde(default = "default_language")]
    template_language: String,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Style {
    #[default]
    List,
    Buttons,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MenuOption {
    id: String,
    title: String,
    description: Option<String>,
    destination: String,
}

fn default_greetings() -> Vec<String> {
    ["hi", "hello", "menu", "oi", "olá"]
        .map(String::from)
        .to_vec()
}

fn default_button() -> String {
    "Options".into()
}

fn default_language() -> String {
    "en_US".into()
}

/// The plugin.
pub struct MenuBot {
    s: Settings,
}

impl Plugin for MenuBot {
    fn init(config: Config) -> Result<Self, String> {
        let mut s: Settings = config.parse()?;
        // Compared with each message's text in lower case: lowered once here, not per message.
        for g in &mut s.greetings {
            *g = g.trim().to_lowercase();
        }
        if s.options.is_empty() {
            return Err("`options` must list at least one option".into());
        }
        let bot = MenuBot { s };
        // The menu is checked against WhatsApp's limits once, here, rather than refused by the
        // host at every greeting.
        bot.menu("0")
            .validate()
            .map_err(|e| format!("the menu breaks a WhatsApp limit: {e}"))?;
        Ok(bot)
    }

    /// Only an interactive answer is parsed: a greeting is told by the text the host extracted.
    fn handle(&self, n: &Notification) -> Result<Vec<Action>, String> {
        match n.kind {
            Kind::Message if n.message_type.as_deref() == Some("interactive") => {
                self.on_message(n, &n.message()?)
            }
            Kind::Message => Ok(self.greeted(n)),
            Kind::Status => self.on_status(n, &n.status()?),
            Kind::Error => Ok(vec![]),
        }
    }

    fn on_message(&self, n: &Notification, message: &Message) -> Result<Vec<Action>, String> {
        let Some(from) = n.sender.as_deref() else {
            return Ok(vec![]);
        };
        if let Some(chosen) = message.interactive.as_ref().and_then(|i| {
            i.button_reply
                .as_ref()
                .or(i.list_reply.as_ref())
                .map(|c| c.id.as_str())
        }) {
            return Ok(self.route(n, from, chosen));
        }
        Ok(self.greeted(n))
    }

    /// A menu of this plugin that failed because the window had closed: re-engage with the
    /// template.
    fn on_status(&self, n: &Notification, status: &Status) -> Result<Vec<Action>, String> {
        let mine = n.sent_by.as_ref().is_some_and(|s| s.plugin == "menu-bot");
        let window_error = status
            .errors
            .iter()
            .flatten()
            .any(|e| matches!(e.code, 470 | 131047));
        match n.sender.as_deref() {
            Some(to) if mine && status.status == "failed" && window_error && !n.window_open => {
                Ok(vec![Action::send(self.template(to))])
            }
            _ => Ok(vec![]),
        }
    }
}

impl MenuBot {
    /// The menu for a greeting; nothing for other texts.
    fn greeted(&self, n: &Notification) -> Vec<Action> {
        let Some(from) = n.sender.as_deref() else {
            return vec![];
        };
        let greeted = n.text.as_deref().is_some_and(|t| {
            let t = t.trim().to_lowercase();
            self.s.greetings.contains(&t)
        });
        if !greeted {
            return vec![];
        }
        vec![Action::send(self.menu(from))]
    }

    /// The menu, with the template as its fallback: the host sends the template instead if
    /// the customer's window is closed when it checks.
    fn menu(&self, to: &str) -> Send {
        let fallback = self.template(to);
        match self.s.style {
            Style::Buttons => {
                let mut draft = Send::buttons(to, &self.s.body);
                for o in &self.s.options {
                    draft = draft.button(&o.id, &o.title);
                }
                draft.or_template(fallback).build()
            }
            Style::List => {
                let mut section = Section::untitled();
                for o in &self.s.options {
                    let mut row = Row::new(&o.id, &o.title);
                    if let Some(d) = &o.description {
                        row = row.description(d);
                    }
                    section = section.row(row);
                }
                Send::list(to, &self.s.body, &self.s.button)
                    .section(section)
                    .or_template(fallback)
                    .build()
            }
        }
    }

    fn template(&self, to: &str) -> Draft<Template> {
        Send::template(to, &self.s.template, &self.s.template_language)
    }

    /// Forward the choice to its option's destination, and confirm it to the customer.
    fn route(&self, n: &Notification, from: &str, chosen: &str) -> Vec<Action> {
        let Some(option) = self.s.options.iter().find(|o| o.id == chosen) else {
            return vec![];
        };
        let mut actions = vec![Action::forward_json(
            &option.destination,
            &serde_json::json!({
                "customer": from,
                "name": n.contact_name,
                "choice": option.id,
                "title": option.title,
                "message_id": n.id,
            }),
        )];
        if let Some(text) = &self.s.confirm {
            actions.push(Action::send(Send::text(from, text).reply_to(&n.id)));
        }
        actions
    }
}

switchboard_sdk::register_plugin!(MenuBot);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_sdk::testing::Harness;

    const TEXT: &str = include_str!("../../../tests/fixtures/onprem/e1-text.json");
    const BUTTON_REPLY: &str =
        include_str!("../../../tests/fixtures/onprem/e10-interactive-button-reply.json");
    const LIST_REPLY: &str =
        include_str!("../../../tests/fixtures/onprem/message-interactive-list-reply.json");
    const FAILED: &str = include_str!("../../../tests/fixtures/onprem/e19-status-failed.json");

    fn config(style: &str) -> serde_json::Value {
        json!({
            "body": "How can we help?",
            "style": style,
            "options": [
                { "id": "confirm_yes", "title": "Sales", "destination": "sales" },
                { "id": "slot_sat_10", "title": "Support", "description": "Orders and returns", "destination": "support" },
            ],
            "confirm": "Thanks, passing you on.",
            "template": "welcome_back",
        })
    }

    fn greeting() -> String {
        TEXT.replace(
            "\"body\": \"Hi, is the store open on Sunday?\"",
            "\"body\": \" Hello \"",
        )
    }

    #[test]
    fn a_greeting_gets_the_menu_as_a_list_or_buttons() {
        let h = Harness::<MenuBot>::new(config("list")).unwrap();
        let body = greeting();
        assert!(body.contains("Hello"), "the fixture's text changed");
        let actions = h.handle_body(&body).unwrap();
        let [Action::Send(send)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        let cloud = send.to_cloud();
        assert_eq!(cloud["interactive"]["type"], "list");
        assert_eq!(cloud["interactive"]["action"]["button"], "Options");
        assert_eq!(
            cloud["interactive"]["action"]["sections"][0]["rows"][1]["description"],
            "Orders and returns"
        );
        let h = Harness::<MenuBot>::new(config("buttons")).unwrap();
        let actions = h.handle_body(&body).unwrap();
        let [Action::Send(send)] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            send.to_cloud()["interactive"]["action"]["buttons"][1]["reply"]["title"],
            "Support"
        );
        assert_eq!(h.handle_body(TEXT).unwrap(), vec![], "not a greeting");
    }

    #[test]
    fn configured_greetings_match_in_any_case() {
        let mut c = config("list");
        c["greetings"] = json!([" OLÁ ", "Bom dia"]);
        let h = Harness::<MenuBot>::new(c).unwrap();
        for (text, menu) in [("olá", true), ("BOM DIA ", true), (" Hello ", false)] {
            let body = greeting().replace(" Hello ", text);
            let actions = h.handle_body(&body).unwrap();
            assert_eq!(actions.len(), usize::from(menu), "{text:?}: {actions:?}");
        }
    }

    #[test]
    fn a_choice_is_routed_to_its_destination_and_confirmed() {
        let h = Harness::<MenuBot>::new(config("list")).unwrap();
        for (body, destination) in [(BUTTON_REPLY, "sales"), (LIST_REPLY, "support")] {
            let actions = h.handle_body(body).unwrap();
            let Action::Forward {
                destination: d,
                body: Some(forwarded),
            } = &actions[0]
            else {
                panic!("{actions:?}")
            };
            assert_eq!(d, destination);
            let forwarded: serde_json::Value = serde_json::from_str(forwarded).unwrap();
            assert_eq!(forwarded["customer"], "5511987650001");
            let Action::Send(confirm) = &actions[1] else {
                panic!("{actions:?}")
            };
            assert_eq!(
                confirm.to_cloud()["text"]["body"],
                "Thanks, passing you on."
            );
            assert!(confirm.reply_to.is_some());
        }
    }

    #[test]
    fn a_closed_window_gets_the_template() {
        let h = Harness::<MenuBot>::new(config("list")).unwrap();
        let mut n = h.notifications(&greeting()).unwrap().remove(0);
        let actions = h.handle(&n).unwrap();
        let [sent] = h.sends(&n, &actions).try_into().unwrap();
        assert_eq!(
            sent.to_cloud()["interactive"]["type"],
            "list",
            "the window is open"
        );
        // Closed by the time the host checks: the menu's fallback goes instead.
        n.window_open = false;
        n.window_until = None;
        assert_eq!(h.refusals(&n, &actions), vec![]);
        let [sent] = h.sends(&n, &actions).try_into().unwrap();
        assert!(!sent.needs_open_window());
        assert_eq!(sent.to_cloud()["template"]["name"], "welcome_back");
        // Its own menu failed for the window: re-engage with the template.
        let mut failed = h.notifications(FAILED).unwrap().remove(0);
        assert_eq!(h.handle(&failed).unwrap(), vec![], "not its send");
        failed.sent_by = Some(switchboard_sdk::SentBy::new("menu-bot", "wamid.X", 7));
        let actions = h.handle(&failed).unwrap();
        assert!(
            matches!(&actions[..], [Action::Send(s)] if s.to == "5511987650003" && !s.needs_open_window()),
            "{actions:?}"
        );
    }

    #[test]
    fn a_menu_over_whatsapps_limits_is_refused_at_init() {
        let mut c = config("buttons");
        c["options"] = json!(
            (0..4)
                .map(|i| json!({ "id": format!("o{i}"), "title": "T", "destination": "d" }))
                .collect::<Vec<_>>()
        );
        let error = Harness::<MenuBot>::new(c).err().unwrap();
        assert!(error.contains("WhatsApp limit"), "{error}");
    }
}
