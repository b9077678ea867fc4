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
    let value: &RawValue =
        serde_json::from_str(text).map_err(|e| SplitError::Syntax(e.to_string()))?;
    let parsed: OnPremBody<'_> =
        serde_json::from_str(value.get()).map_err(|e| SplitError::Shape(e.to_string()))?;
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
    value: CloudValue<'a>,
}

#[derive(Deserialize)]
struct CloudValue<'a> {
    #[serde(default)]
    metadata: Option<CloudMetadata>,
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
    let _: &RawValue = serde_json::from_str(text).map_err(|e| SplitError::Syntax(e.to_string()))?;
    let envelope: CloudEnvelope<'_> =
        serde_json::from_str(text).map_err(|e| SplitError::Shape(e.to_string()))?;
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
        let value = &change.value;
        let number = value
            .metadata
            .as_ref()
            .and_then(|m| m.phone_number_id.as_deref());
        let body = OnPremBody {
            contacts: value.contacts.clone(),
            messages: value.messages.clone(),
            statuses: value.statuses.clone(),
            errors: value.errors.clone(),
        };
        out.extend(split_parts(&body, source, number)?);
    }
    Ok(out)
}
