//! Splitting a webhook body into notifications, one per item.
//!
//! The host does this on every POST; the [test harness](crate::testing) does the same, so a
//! plugin's tests see exactly what the server would hand it.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::whatsapp::{CloudMetadata, lenient};
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

/// Read a body's top level as `T`. Only three things can fail there: a body that is not an
/// object, JSON syntax, and a key given twice (serde_json's message for that one would quote
/// the body).
fn top_level<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, SplitError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| SplitError::Syntax(format!("body is not UTF-8: {e}")))?;
    // A struct would also take its fields from an array, in order.
    if !text.trim_start().starts_with('{') {
        return Err(SplitError::Shape("the body is not a JSON object".into()));
    }
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => SplitError::Shape("the body repeats a key".into()),
        _ => SplitError::Syntax(e.to_string()),
    })
}

/// `raw` read as `T` if it is an object (a struct would also take its fields from an array).
fn object<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    let text = raw.get();
    text.starts_with('{')
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

/// The arrays of an On-Premises body or of a Cloud `value`, each taken as raw JSON: one of
/// them of an unexpected type must not cost the others.
#[derive(Deserialize)]
struct Parts<'a> {
    #[serde(borrow, default)]
    contacts: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    statuses: Option<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
    /// Cloud: the business number.
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

/// The elements of `raw` if it is an array, each as received.
fn elements(raw: Option<&RawValue>) -> Option<Vec<&RawValue>> {
    serde_json::from_str(raw?.get()).ok()
}

#[derive(Deserialize)]
struct ContactKey {
    #[serde(default, deserialize_with = "lenient::string")]
    wa_id: String,
}

/// Split an On-Premises webhook body (`contacts`, `messages`, `statuses`, `errors`) into
/// notifications: messages first, then statuses, then errors, each in body order. Each item
/// keeps its exact JSON text and gets the `contacts` entry whose `wa_id` matches its sender
/// (or the only contact, when there is one).
///
/// Fails only for what cannot be a webhook: not JSON, not an object, or none of the three
/// arrays. Every element of the arrays becomes a notification, whatever the types of its
/// fields (see [`crate::whatsapp`]); a key of another type than an array is ignored.
pub fn split_onprem(body: &[u8], source: &str) -> Result<Vec<Notification>, SplitError> {
    let parts: Parts<'_> = top_level(body)?;
    split_parts(&parts, source, None)?.ok_or_else(|| {
        SplitError::Shape(
            "no `messages`, `statuses` or `errors` array: nothing to take notifications from"
                .into(),
        )
    })
}

/// The notifications of `body`, or `None` when it has no array to take them from.
fn split_parts(
    body: &Parts<'_>,
    source: &str,
    phone_number_id: Option<&str>,
) -> Result<Option<Vec<Notification>>, SplitError> {
    let lists = [
        (Kind::Message, elements(body.messages)),
        (Kind::Status, elements(body.statuses)),
        (Kind::Error, elements(body.errors)),
    ];
    if lists.iter().all(|(_, list)| list.is_none()) {
        return Ok(None);
    }
    let contacts: Vec<(String, &RawValue)> = elements(body.contacts)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((object::<ContactKey>(c)?.wa_id, c)))
        .collect();
    let contact_for = |sender: Option<&str>| -> Option<&str> {
        let by_id = sender.and_then(|s| contacts.iter().find(|(id, _)| id == s));
        match (by_id, contacts.as_slice()) {
            (Some((_, c)), _) => Some(c.get()),
            (None, [(_, only)]) if sender.is_none() => Some(only.get()),
            _ => None,
        }
    };
    let items = lists
        .into_iter()
        .flat_map(|(kind, list)| list.unwrap_or_default().into_iter().map(move |i| (kind, i)));
    let mut out = Vec::new();
    // The items are JSON (they were parsed out of the body), so neither call below can fail.
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
    Ok(Some(out))
}

#[derive(Deserialize)]
struct CloudEnvelope<'a> {
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CloudEntry<'a> {
    #[serde(borrow, default)]
    changes: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CloudChange<'a> {
    #[serde(borrow, default)]
    field: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
}

/// Split a Cloud API webhook (`object` / `entry[]` / `changes[]` / `value`) into the same
/// notifications as the On-Premises format, each carrying the business phone number id of its
/// `value.metadata`. Changes whose `field` is a string other than `messages` are skipped.
///
/// Fails only for what cannot be a webhook: not JSON, not an object, or no `entry` array. An
/// entry, change or value of an unexpected type holds nothing to take and is skipped; the items
/// of a `value` are taken as [`split_onprem`] takes them.
pub fn split_cloud(body: &[u8], source: &str) -> Result<Vec<Notification>, SplitError> {
    let envelope: CloudEnvelope<'_> = top_level(body)?;
    let entries = elements(envelope.entry).ok_or_else(|| {
        SplitError::Shape("no `entry` array: nothing to take notifications from".into())
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let Some(entry) = object::<CloudEntry<'_>>(entry) else {
            continue;
        };
        for change in elements(entry.changes).unwrap_or_default() {
            let Some(change) = object::<CloudChange<'_>>(change) else {
                continue;
            };
            let field = change
                .field
                .and_then(|f| serde_json::from_str::<String>(f.get()).ok());
            if field.is_some_and(|f| f != "messages") {
                continue;
            }
            let Some(value) = change.value.and_then(object::<Parts<'_>>) else {
                continue;
            };
            let number = value
                .metadata
                .and_then(object::<CloudMetadata>)
                .and_then(|m| m.phone_number_id);
            out.extend(split_parts(&value, source, number.as_deref())?.unwrap_or_default());
        }
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
    fn refuses_only_what_is_not_a_webhook() {
        let shape = |r: Result<Vec<Notification>, SplitError>| match r {
            Err(SplitError::Shape(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            split_onprem(b"{", "s"),
            Err(SplitError::Syntax(_))
        ));
        assert!(matches!(
            split_onprem(b"\xff", "s"),
            Err(SplitError::Syntax(_))
        ));
        assert!(shape(split_onprem(br#"[{"messages":[]}]"#, "s")).contains("not a JSON object"));
        assert!(shape(split_onprem(br#""secret""#, "s")).contains("not a JSON object"));
        assert!(shape(split_onprem(br#"{"messages":[],"messages":[]}"#, "s")).contains("repeats"));
        for nothing in [
            &br#"{}"#[..],
            br#"{"unknown":[1]}"#,
            br#"{"contacts":[{"wa_id":"1"}]}"#,
            br#"{"messages":{},"statuses":"x","errors":null}"#,
        ] {
            assert!(shape(split_onprem(nothing, "s")).contains("nothing to take"));
        }
        assert!(
            shape(split_cloud(
                br#"{"object":"whatsapp_business_account"}"#,
                "s"
            ))
            .contains("no `entry`")
        );
        assert!(shape(split_cloud(br#"{"entry":{}}"#, "s")).contains("no `entry`"));
    }

    #[test]
    fn an_array_of_another_type_does_not_cost_the_others() {
        let ns = split_onprem(
            br#"{"messages":{"id":"m"},"statuses":[7,{"id":"s1","status":"read"}],"errors":"none","contacts":5}"#,
            "s",
        )
        .unwrap();
        let got: Vec<_> = ns
            .iter()
            .map(|n| (n.kind, n.item_json.as_str(), n.id.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Status, "7", ""),
                (Kind::Status, r#"{"id":"s1","status":"read"}"#, "s1"),
            ]
        );
        assert_eq!(split_onprem(br#"{"messages":[]}"#, "s"), Ok(vec![]));
    }

    #[test]
    fn cloud_skips_what_holds_nothing_and_takes_the_rest() {
        let body = br#"{"object":"page","entry":[7,{"changes":"x"},{"changes":[null,{"field":"messages","value":[]},
            {"value":{"metadata":{"phone_number_id":106540352242922},"messages":[{"id":"a"}]}},
            {"field":3,"value":{"metadata":"x","errors":[{"code":"131000"}]}},
            {"field":"statuses","value":{"statuses":[{"id":"b"}]}}]}]}"#;
        let got: Vec<_> = split_cloud(body, "c")
            .unwrap()
            .into_iter()
            .map(|n| (n.kind, n.id, n.phone_number_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    Kind::Message,
                    "a".to_string(),
                    Some("106540352242922".to_string())
                ),
                (Kind::Error, "131000".to_string(), None),
            ]
        );
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
                    prop_assert!(text.contains(&n.item_json));
                }
            }
            let cloud = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]});
            let _ = split_cloud(cloud.to_string().as_bytes(), "f");
        }
    }
}
