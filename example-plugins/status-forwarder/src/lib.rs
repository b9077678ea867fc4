//! `status-forwarder`: forwards the statuses you care about, and error notifications, to one
//! destination (a CRM, an alerting hook).
//!
//! Config: `destination` (required), `statuses` (default `["delivered", "read", "failed"]`),
//! `errors` (default true).

use serde::Deserialize;
use switchboard_sdk::whatsapp::{Status, WhatsAppError};
use switchboard_sdk::{Action, Config, Notification, Plugin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    destination: String,
    #[serde(default = "default_statuses")]
    statuses: Vec<String>,
    #[serde(default = "yes")]
    errors: bool,
}

fn default_statuses() -> Vec<String> {
    ["delivered", "read", "failed"].map(String::from).to_vec()
}

fn yes() -> bool {
    true
}

/// The plugin.
pub struct StatusForwarder {
    settings: Settings,
}

impl Plugin for StatusForwarder {
    fn init(config: Config) -> Result<Self, String> {
        Ok(StatusForwarder {
            settings: config.parse()?,
        })
    }

    fn on_status(&self, _n: &Notification, status: &Status) -> Result<Vec<Action>, String> {
        let wanted = self.settings.statuses.iter().any(|s| s == &status.status);
        Ok(wanted
            .then(|| Action::forward(&self.settings.destination))
            .into_iter()
            .collect())
    }

    fn on_error(&self, _n: &Notification, _error: &WhatsAppError) -> Result<Vec<Action>, String> {
        Ok(self
            .settings
            .errors
            .then(|| Action::forward(&self.settings.destination))
            .into_iter()
            .collect())
    }
}

switchboard_sdk::register_plugin!(StatusForwarder);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_sdk::testing::Harness;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/onprem/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn forwards_default_statuses_only() {
        let h = Harness::<StatusForwarder>::new(json!({ "destination": "crm" })).unwrap();
        assert_eq!(
            h.handle_body(&fixture("e19-status-failed.json")).unwrap(),
            vec![Action::forward("crm")]
        );
        assert_eq!(
            h.handle_body(&fixture("e16-status-sent-pricing.json"))
                .unwrap(),
            vec![],
            "sent is not a default"
        );
        let delivered =
            fixture("e16-status-sent-pricing.json").replace("\"sent\"", "\"delivered\"");
        assert_eq!(
            h.handle_body(&delivered).unwrap(),
            vec![Action::forward("crm")]
        );
    }

    #[test]
    fn statuses_are_configurable() {
        let h =
            Harness::<StatusForwarder>::new(json!({ "destination": "crm", "statuses": ["sent"] }))
                .unwrap();
        assert_eq!(
            h.handle_body(&fixture("e16-status-sent-pricing.json"))
                .unwrap(),
            vec![Action::forward("crm")]
        );
        assert_eq!(
            h.handle_body(&fixture("e19-status-failed.json")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn forwards_errors_unless_turned_off() {
        let on = Harness::<StatusForwarder>::new(json!({ "destination": "alerts" })).unwrap();
        assert_eq!(
            on.handle_body(&fixture("e21-errors.json")).unwrap(),
            vec![Action::forward("alerts")]
        );
        let off =
            Harness::<StatusForwarder>::new(json!({ "destination": "alerts", "errors": false }))
                .unwrap();
        assert_eq!(
            off.handle_body(&fixture("e21-errors.json")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn ignores_messages_and_needs_a_destination() {
        let h = Harness::<StatusForwarder>::new(json!({ "destination": "crm" })).unwrap();
        assert_eq!(h.handle_body(&fixture("e1-text.json")).unwrap(), vec![]);
        assert!(Harness::<StatusForwarder>::new(json!({})).is_err());
    }
}
