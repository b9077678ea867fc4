//! Splitting a webhook body into notifications, one per item.
//!
//! The host does this on every POST; the [test harness](crate::testing) does the same, so a
//! plugin's tests see exactly what the server would hand it.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Kind, Notification};

/// Why a body could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// The body is not JSON.
    Syntax(String),
    /// The body is JSON, but not a webhook of the expected shape.
    Shape(String),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Syntax(e) => write!(f, "malformed JSON: {e}"),
            SplitError::Shape(e) => write!(f, "unexpected webhook shape: {e}"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Malformed JSON, or JSON of the wrong shape: one parse tells both apart.
fn classify(e: serde_json::Error) -> SplitError {
    match e.classify() {
        serde_json::error::Category::Data => SplitError::Shape(e.to_string()),
        _ => SplitError::Syntax(e.to_string()),
    }
}

#[derive(Deserialize)]
struct OnPremBody<'a> {
    #[serde(borrow, default)]
    contacts: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    statuses: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct ContactKey {
    #[serde(default)]
    wa_id: String,
}

/// Split an On-Premises webhook body (`contacts`, `messages`, `statuses`, `errors`) into
/// notifications: messages first, then statuses, then errors, each in body order. Each item
/// keeps its exact JSON text and gets the `contacts` entry whose `wa_id` matches its sender
/// (or the only contact, when there is one).
pub fn split_onprem(body: &[u8], source: &str) -> Result<Vec<Notification>, SplitError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| SplitError::Syntax(format!("body is not UTF-8: {e}")))?;
    let parsed: OnPremBody<'_> = serde_json::from_str(text).map_err(classify)?;
    split_parts(&parsed, source, None)
}

fn split_parts(
    body: &OnPremBody<'_>,
    source: &str,
    phone_number_id: Option<&str>,
) -> Result<Vec<Notification>, SplitError> {
    let contacts: Vec<(String, &RawValue)> = body
        .contacts
        .iter()
        .map(|c| {
            let key: ContactKey = serde_json::from_str(c.get())
                .map_err(|e| SplitError::Shape(format!("contacts: {e}")))?;
            Ok((key.wa_id, *c))
        })
        .collect::<Result<_, SplitError>>()?;
    let contact_for = |sender: Option<&str>| -> Option<&str> {
        let by_id = sender.and_then(|s| contacts.iter().find(|(id, _)| id == s));
        match (by_id, contacts.as_slice()) {
            (Some((_, c)), _) => Some(c.get()),
            (None, [(_, only)]) if sender.is_none() => Some(only.get()),
            _ => None,
        }
    };
    let items = body
        .messages
        .iter()
        .map(|i| (Kind::Message, i))
        .chain(body.statuses.iter().map(|i| (Kind::Status, i)))
        .chain(body.errors.iter().map(|i| (Kind::Error, i)));
    let mut out = Vec::new();
    for (index, (kind, item)) in items.enumerate() {
        let mut n = Notification::from_item(kind, item.get(), None, source)
            .map_err(|e| SplitError::Shape(format!("{} #{index}: {e}", kind.as_str())))?;
        let contact = match kind {
            Kind::Message => contact_for(n.sender.as_deref()),
            Kind::Status => contacts
                .iter()
                .find(|(id, _)| Some(id.as_str()) == n.sender.as_deref())
                .map(|(_, c)| c.get()),
            Kind::Error => None,
        };
        if let Some(contact) = contact {
            n.set_contact(contact)
                .map_err(|e| SplitError::Shape(format!("contacts: {e}")))?;
        }
        n.phone_number_id = phone_number_id.map(str::to_string);
        out.push(n);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct CloudEnvelope<'a> {
    #[serde(default)]
    object: String,
    #[serde(borrow, default)]
    entry: Vec<CloudEntry<'a>>,
}

#[derive(Deserialize)]
struct CloudEntry<'a> {
    #[serde(borrow, default)]
    changes: Vec<CloudChange<'a>>,
}

#[derive(Deserialize)]
struct CloudChange<'a> {
    #[serde(default)]
    field: String,
    #[serde(borrow)]
    value: &'a RawValue,
}

#[derive(Deserialize)]
struct CloudValueMetadata {
    #[serde(default)]
    metadata: Option<CloudMetadata>,
}

#[derive(Deserialize)]
struct CloudMetadata {
    #[serde(default)]
    phone_number_id: Option<String>,
}

/// Split a Cloud API webhook (`object` / `entry[]` / `changes[]` / `value`) into the same
/// notifications as the On-Premises format, each carrying the business phone number id of its
/// `value.metadata`. Changes of a `field` other than `messages` are skipped.
pub fn split_cloud(body: &[u8], source: &str) -> Result<Vec<Notification>, SplitError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| SplitError::Syntax(format!("body is not UTF-8: {e}")))?;
    let envelope: CloudEnvelope<'_> = serde_json::from_str(text).map_err(classify)?;
    if envelope.object != "whatsapp_business_account" {
        return Err(SplitError::Shape(format!(
            "object is {:?}, expected \"whatsapp_business_account\"",
            envelope.object
        )));
    }
    let mut out = Vec::new();
    for change in envelope.entry.iter().flat_map(|e| &e.changes) {
        if change.field != "messages" {
            continue;
        }
        // `value` holds the arrays of an On-Premises body, beside `metadata`.
        let shape = |e: serde_json::Error| SplitError::Shape(format!("value: {e}"));
        let body: OnPremBody<'_> = serde_json::from_str(change.value.get()).map_err(shape)?;
        let meta: CloudValueMetadata = serde_json::from_str(change.value.get()).map_err(shape)?;
        let number = meta.metadata.and_then(|m| m.phone_number_id);
        out.extend(split_parts(&body, source, number.as_deref())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn items_come_out_in_order_with_their_contacts() {
        let body = br#"{
            "contacts": [{"wa_id": "1", "profile": {"name": "One"}}, {"wa_id": "2", "profile": {"name": "Two"}}],
            "messages": [
                {"from": "2", "id": "m2", "timestamp": "5", "type": "text", "text": {"body": "hi"}},
                {"from": "1", "id": "m1", "timestamp": "6", "type": "image", "image": {"id": "i", "caption": "cap"}}
            ],
            "statuses": [{"id": "s1", "status": "read", "timestamp": "7", "recipient_id": "2"}],
            "errors": [{"code": 500, "title": "Generic"}]
        }"#;
        let ns = split_onprem(body, "src").unwrap();
        let got: Vec<_> = ns
            .iter()
            .map(|n| (n.kind, n.id.as_str(), n.contact_name.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Message, "m2", Some("Two")),
                (Kind::Message, "m1", Some("One")),
                (Kind::Status, "s1", Some("Two")),
                (Kind::Error, "500", None),
            ]
        );
        assert_eq!(
            (
                ns[1].text.as_deref(),
                ns[1].message_type.as_deref(),
                ns[1].timestamp
            ),
            (Some("cap"), Some("image"), Some(6))
        );
        assert_eq!(
            (ns[2].status.as_deref(), ns[2].sender.as_deref()),
            (Some("read"), Some("2"))
        );
        assert!(
            ns.iter()
                .all(|n| n.source == "src" && n.phone_number_id.is_none())
        );
        let item: serde_json::Value = serde_json::from_str(&ns[0].item_json).unwrap();
        assert_eq!(item["text"]["body"], "hi");
    }

    #[test]
    fn a_lone_contact_goes_with_a_message_that_names_no_sender() {
        let body = br#"{"contacts":[{"wa_id":"9"}],"messages":[{"id":"m","timestamp":"1","type":"system","system":{"body":"x"}}]}"#;
        let ns = split_onprem(body, "s").unwrap();
        assert!(
            ns[0]
                .contact_json
                .as_deref()
                .is_some_and(|c| c.contains("\"9\""))
        );
    }

    #[test]
    fn refuses_what_is_not_a_webhook() {
        assert!(matches!(
            split_onprem(b"{", "s"),
            Err(SplitError::Syntax(_))
        ));
        assert!(matches!(
            split_onprem(b"\xff", "s"),
            Err(SplitError::Syntax(_))
        ));
        assert!(matches!(
            split_onprem(br#"{"messages":{}}"#, "s"),
            Err(SplitError::Shape(_))
        ));
        assert!(matches!(
            split_onprem(br#"{"statuses":[7]}"#, "s"),
            Err(SplitError::Shape(_))
        ));
        assert_eq!(split_onprem(br#"{"unknown":[1]}"#, "s"), Ok(vec![]));
    }

    #[test]
    fn cloud_changes_carry_their_phone_number_id() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"w","changes":[
            {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"P1"},
              "messages":[{"from":"1","id":"wamid.1","timestamp":"1","type":"text","text":{"body":"a"}}]}},
            {"field":"account_update","value":{"event":"x"}},
            {"field":"messages","value":{"metadata":{"phone_number_id":"P2"},
              "statuses":[{"id":"wamid.2","status":"sent","timestamp":"1","recipient_id":"1"}]}}]}]}"#;
        let ns = split_cloud(body, "cloud").unwrap();
        let got: Vec<_> = ns
            .iter()
            .map(|n| (n.id.as_str(), n.phone_number_id.as_deref()))
            .collect();
        assert_eq!(got, vec![("wamid.1", Some("P1")), ("wamid.2", Some("P2"))]);
        assert!(matches!(
            split_cloud(br#"{"object":"page","entry":[]}"#, "c"),
            Err(SplitError::Shape(_))
        ));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z0-9 ]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("messages".to_string()),
                        Just("statuses".to_string()),
                        Just("errors".to_string()),
                        Just("contacts".to_string()),
                        Just("id".to_string()),
                        Just("type".to_string()),
                        Just("from".to_string()),
                        Just("text".to_string()),
                        Just("entry".to_string()),
                        Just("changes".to_string()),
                        Just("value".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // The parser faces the internet: no input may make it panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = split_onprem(&bytes, "f");
            let _ = split_cloud(&bytes, "f");
        }

        #[test]
        fn arbitrary_json_never_panics_and_items_keep_their_text(value in json_value()) {
            let text = value.to_string();
            if let Ok(ns) = split_onprem(text.as_bytes(), "f") {
                for n in ns {
                    let item: serde_json::Value = serde_json::from_str(&n.item_json).unwrap();
                    prop_assert!(item.is_object());
                }
            }
            let cloud = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]});
            let _ = split_cloud(cloud.to_string().as_bytes(), "f");
        }
    }
}
