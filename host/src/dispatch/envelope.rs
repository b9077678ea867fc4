//! The standard body of a forward: the item exactly as received, with its kind, contact, tags.

use serde::Serialize;
use serde_json::value::RawValue;
use switchboard_sdk::Notification;

#[derive(Serialize)]
struct Envelope<'a> {
    kind: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number_id: Option<&'a str>,
    item: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<&'a RawValue>,
    tags: &'a [&'a str],
}

/// The JSON text of the envelope for `n`.
pub fn build(n: &Notification, tags: &[&str]) -> String {
    let item: Option<&RawValue> = serde_json::from_str(&n.item_json).ok();
    let contact: Option<&RawValue> = n
        .contact_json
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok());
    let null: &RawValue = serde_json::from_str("null").expect("null is JSON");
    let envelope = Envelope {
        kind: n.kind.as_str(),
        source: &n.source,
        phone_number_id: n.phone_number_id.as_deref(),
        item: item.unwrap_or(null),
        contact,
        tags,
    };
    serde_json::to_string(&envelope).unwrap_or_default()
}
