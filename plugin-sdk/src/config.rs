use serde::de::DeserializeOwned;

/// The `[config]` table of a plugin's manifest (`NAME.toml` beside `NAME.wasm`), as JSON.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config(serde_json::Value);

impl Config {
    /// Parse the JSON text the host hands to `init`. Empty text is an empty table.
    pub fn from_json(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Config(serde_json::Value::Object(Default::default())));
        }
        serde_json::from_str(text)
            .map(Config)
            .map_err(|e| format!("config is not valid JSON: {e}"))
    }

    /// Wrap a JSON value, as the test harness does.
    pub fn from_value(value: serde_json::Value) -> Self {
        Config(value)
    }

    /// The config as a JSON value.
    pub fn value(&self) -> &serde_json::Value {
        &self.0
    }

    /// Deserialise the config into the plugin's own type, with an error that names the field.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.0.clone()).map_err(|e| format!("invalid [config]: {e}"))
    }
}
