//! `keyword-router`: forwards each inbound message to the destination of the first route whose
//! keyword its text contains (case-insensitive), and any other message to `default`.
//!
//! The text is the text body, a media caption, or the title of the button or list row chosen.
//! Config: `routes = [{ keyword, destination }]`, `default` (optional).

use serde::Deserialize;
use switchboard_sdk::{Action, Config, Notification, Plugin, whatsapp::Message};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    keyword: String,
    destination: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    routes: Vec<Route>,
    default: Option<String>,
}

/// The plugin.
pub struct KeywordRouter {
    routes: Vec<Route>,
    default: Option<String>,
}

impl Plugin for KeywordRouter {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        let mut routes = settings.routes;
        for r in &mut routes {
            if r.keyword.trim().is_empty() {
                return Err(format!(
                    "a route to {:?} has an empty keyword",
                    r.destination
                ));
            }
            r.keyword = r.keyword.to_lowercase();
        }
        Ok(KeywordRouter {
            routes,
            default: settings.default,
        })
    }

    fn on_message(&self, n: &Notification, _message: &Message) -> Result<Vec<Action>, String> {
        let text = n.text.as_deref().unwrap_or("").to_lowercase();
        let route = self.routes.iter().find(|r| text.contains(&r.keyword));
        let destination = route.map(|r| &r.destination).or(self.default.as_ref());
        Ok(destination.map(Action::forward).into_iter().collect())
    }
}

switchboard_sdk::register_plugin!(KeywordRouter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_sdk::testing::Harness;

    fn router() -> Harness<KeywordRouter> {
        Harness::new(json!({
            "routes": [
                { "keyword": "Sunday", "destination": "store" },
                { "keyword": "broken", "destination": "support" },
                { "keyword": "confirm", "destination": "sales" },
            ],
            "default": "inbox",
        }))
        .unwrap()
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/onprem/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn routes_text_case_insensitively() {
        assert_eq!(
            router().handle_body(&fixture("e1-text.json")).unwrap(),
            vec![Action::forward("store")]
        );
    }

    #[test]
    fn routes_on_a_caption() {
        assert_eq!(
            router().handle_body(&fixture("e2-image.json")).unwrap(),
            vec![Action::forward("support")]
        );
    }

    #[test]
    fn routes_on_a_button_title() {
        let body = fixture("e10-interactive-button-reply.json");
        assert_eq!(
            router().handle_body(&body).unwrap(),
            vec![Action::forward("sales")]
        );
    }

    #[test]
    fn sends_the_rest_to_default() {
        assert_eq!(
            router().handle_body(&fixture("e8-location.json")).unwrap(),
            vec![Action::forward("inbox")]
        );
        let no_default = Harness::<KeywordRouter>::new(json!({ "routes": [] })).unwrap();
        assert_eq!(
            no_default
                .handle_body(&fixture("e8-location.json"))
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn leaves_statuses_alone() {
        assert_eq!(
            router()
                .handle_body(&fixture("e19-status-failed.json"))
                .unwrap(),
            vec![]
        );
    }
}
