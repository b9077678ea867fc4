//! A typed send as the request body of either API. The two differ in little: the Cloud API
//! wants `messaging_product` and takes `preview_url` inside `text`; the On-Premises API takes
//! `preview_url` beside it, and a template's namespace and `language.policy`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{ButtonSubType, Location, Reaction};
use super::{
    Buttons, ComponentKind, Contact, CtaUrl, Flow, FlowAction, Header, Interactive, List, Media,
    MediaSource, OutgoingMessage, Send, SendError, Template, TemplateParameter,
};

/// Which API a body is for; On-Premises with the namespace of a template.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api<'a> {
    OnPrem { namespace: Option<&'a str> },
    Cloud,
}

impl Send {
    /// The body of the On-Premises API's `POST /v1/messages`. A template takes its own
    /// namespace, else `namespace` (the host's configured one); without either it is an error.
    /// Validate first ([`Send::validate`]): rendering does not check limits.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let body = Send::text("5511987650001", "Hi").build().to_onprem(None).unwrap();
    /// assert_eq!(body, serde_json::json!({
    ///     "recipient_type": "individual", "to": "5511987650001", "type": "text",
    ///     "preview_url": false, "text": { "body": "Hi" }
    /// }));
    /// ```
    pub fn to_onprem(&self, namespace: Option<&str>) -> Result<Value, SendError> {
        let namespace = match &self.message {
            OutgoingMessage::Template(template) => {
                let namespace = template.namespace.as_deref().or(namespace);
                Some(namespace.ok_or_else(|| SendError::MissingNamespace {
                    template: template.name.clone(),
                })?)
            }
            _ => None,
        };
        Ok(render(self, Api::OnPrem { namespace }))
    }

    /// The body of the Cloud API's `POST /{phone-number-id}/messages`. Validate first
    /// ([`Send::validate`]): rendering does not check limits.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let body = Send::text("5511987650001", "Hi").build().to_cloud();
    /// assert_eq!(body, serde_json::json!({
    ///     "messaging_product": "whatsapp", "recipient_type": "individual",
    ///     "to": "5511987650001", "type": "text", "text": { "preview_url": false, "body": "Hi" }
    /// }));
    /// ```
    pub fn to_cloud(&self) -> Value {
        render(self, Api::Cloud)
    }
}

fn render(send: &Send, api: Api) -> Value {
    let mut body = Map::new();
    if let OutgoingMessage::Raw(raw) = &send.message {
        if let Some(raw) = raw.as_object() {
            body.clone_from(raw);
        }
        if api == Api::Cloud && !body.contains_key("messaging_product") {
            body.insert("messaging_product".into(), json!("whatsapp"));
        }
        body.insert("to".into(), json!(send.to));
    } else {
        if api == Api::Cloud {
            body.insert("messaging_product".into(), json!("whatsapp"));
        }
        body.insert("recipient_type".into(), json!("individual"));
        body.insert("to".into(), json!(send.to));
        let (kind, content) = content(&send.message, api);
        body.insert("type".into(), json!(kind));
        if let (Api::OnPrem { .. }, OutgoingMessage::Text(text)) = (api, &send.message) {
            body.insert("preview_url".into(), json!(text.preview_url));
        }
        body.insert(kind.into(), content);
    }
    if let Some(id) = &send.reply_to {
        body.insert("context".into(), json!({ "message_id": id }));
    }
    Value::Object(body)
}

/// The message's `type` and the object under it.
fn content(message: &OutgoingMessage, api: Api) -> (&'static str, Value) {
    match message {
        OutgoingMessage::Text(text) => match api {
            Api::Cloud => (
                "text",
                json!({ "preview_url": text.preview_url, "body": text.body }),
            ),
            Api::OnPrem { .. } => ("text", json!({ "body": text.body })),
        },
        OutgoingMessage::Template(template) => ("template", template_body(template, api)),
        OutgoingMessage::Interactive(interactive) => ("interactive", interactive_body(interactive)),
        OutgoingMessage::Media(media) => (media.kind.as_str(), media_body(media)),
        OutgoingMessage::Location(location) => ("location", location_body(location)),
        OutgoingMessage::Contacts(contacts) => (
            "contacts",
            Value::Array(contacts.iter().map(contact_body).collect()),
        ),
        OutgoingMessage::Reaction(Reaction { message_id, emoji }) => (
            "reaction",
            json!({ "message_id": message_id, "emoji": emoji }),
        ),
        // Rendered whole by `render`.
        OutgoingMessage::Raw(raw) => ("raw", raw.clone()),
    }
}

/// Insert `value` under `key` when there is one.
fn put(object: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        object.insert(key.into(), value.into());
    }
}

/// `{"id": ...}` or `{"link": ...}`.
fn source(source: &MediaSource) -> Map<String, Value> {
    let mut object = Map::new();
    match source {
        MediaSource::Id(id) => object.insert("id".into(), json!(id)),
        MediaSource::Link(link) => object.insert("link".into(), json!(link)),
    };
    object
}

fn template_body(template: &Template, api: Api) -> Value {
    let mut body = Map::new();
    if let Api::OnPrem { namespace } = api {
        put(&mut body, "namespace", namespace);
    }
    body.insert("name".into(), json!(template.name));
    let language = match api {
        Api::OnPrem { .. } => json!({ "policy": "deterministic", "code": template.language }),
        Api::Cloud => json!({ "code": template.language }),
    };
    body.insert("language".into(), language);
    if !template.components.is_empty() {
        let components = template.components.iter().map(|component| {
            let mut object = Map::new();
            match component.kind {
                ComponentKind::Header => {
                    object.insert("type".into(), json!("header"));
                }
                ComponentKind::Body => {
                    object.insert("type".into(), json!("body"));
                }
                ComponentKind::Button { sub_type, index } => {
                    object.insert("type".into(), json!("button"));
                    let sub_type = match sub_type {
                        ButtonSubType::QuickReply => "quick_reply",
                        ButtonSubType::Url => "url",
                    };
                    object.insert("sub_type".into(), json!(sub_type));
                    // The API's examples give the index as a string.
                    object.insert("index".into(), json!(index.to_string()));
                }
            }
            let parameters = component.parameters.iter().map(parameter_body).collect();
            object.insert("parameters".into(), Value::Array(parameters));
            Value::Object(object)
        });
        body.insert("components".into(), Value::Array(components.collect()));
    }
    Value::Object(body)
}

fn parameter_body(parameter: &TemplateParameter) -> Value {
    match parameter {
        TemplateParameter::Text(text) => json!({ "type": "text", "text": text }),
        TemplateParameter::Currency {
            fallback_value,
            code,
            amount_1000,
        } => json!({
            "type": "currency",
            "currency": { "fallback_value": fallback_value, "code": code, "amount_1000": amount_1000 }
        }),
        TemplateParameter::DateTime(fallback_value) => {
            json!({ "type": "date_time", "date_time": { "fallback_value": fallback_value } })
        }
        TemplateParameter::Image(image) => json!({ "type": "image", "image": source(image) }),
        TemplateParameter::Document {
            source: document,
            filename,
        } => {
            let mut object = source(document);
            put(&mut object, "filename", filename.as_deref());
            json!({ "type": "document", "document": object })
        }
        TemplateParameter::Video(video) => json!({ "type": "video", "video": source(video) }),
        TemplateParameter::Payload(payload) => json!({ "type": "payload", "payload": payload }),
    }
}

fn header_body(header: &Header) -> Value {
    match header {
        Header::Text(text) => json!({ "type": "text", "text": text }),
        Header::Image(image) => json!({ "type": "image", "image": source(image) }),
        Header::Video(video) => json!({ "type": "video", "video": source(video) }),
        Header::Document(document) => {
            json!({ "type": "document", "document": source(document) })
        }
    }
}

fn interactive_body(interactive: &Interactive) -> Value {
    let (kind, header, body, footer, action) = match interactive {
        Interactive::Buttons(Buttons {
            header,
            body,
            footer,
            buttons,
        }) => {
            let buttons: Vec<Value> = buttons
                .iter()
                .map(|b| json!({ "type": "reply", "reply": { "id": b.id, "title": b.title } }))
                .collect();
            (
                "button",
                header.as_ref().map(header_body),
                body,
                footer,
                json!({ "buttons": buttons }),
            )
        }
        Interactive::List(List {
            header,
            body,
            footer,
            button,
            sections,
        }) => {
            let sections: Vec<Value> = sections
                .iter()
                .map(|section| {
                    let mut object = Map::new();
                    put(&mut object, "title", section.title.as_deref());
                    let rows = section.rows.iter().map(|row| {
                        let mut object = Map::new();
                        object.insert("id".into(), json!(row.id));
                        object.insert("title".into(), json!(row.title));
                        put(&mut object, "description", row.description.as_deref());
                        Value::Object(object)
                    });
                    object.insert("rows".into(), Value::Array(rows.collect()));
                    Value::Object(object)
                })
                .collect();
            (
                "list",
                header
                    .as_ref()
                    .map(|text| json!({ "type": "text", "text": text })),
                body,
                footer,
                json!({ "button": button, "sections": sections }),
            )
        }
        Interactive::CtaUrl(CtaUrl {
            header,
            body,
            footer,
            display_text,
            url,
        }) => (
            "cta_url",
            header.as_ref().map(header_body),
            body,
            footer,
            json!({
                "name": "cta_url",
                "parameters": { "display_text": display_text, "url": url }
            }),
        ),
        Interactive::Flow(Flow {
            header,
            body,
            footer,
            flow_id,
            flow_cta,
            flow_token,
            action,
        }) => {
            let mut parameters = Map::new();
            parameters.insert("flow_message_version".into(), json!("3"));
            parameters.insert("flow_id".into(), json!(flow_id));
            parameters.insert("flow_cta".into(), json!(flow_cta));
            put(&mut parameters, "flow_token", flow_token.as_deref());
            match action {
                FlowAction::Navigate { screen, data } => {
                    parameters.insert("flow_action".into(), json!("navigate"));
                    let mut payload = Map::new();
                    payload.insert("screen".into(), json!(screen));
                    put(&mut payload, "data", data.clone());
                    parameters.insert("flow_action_payload".into(), Value::Object(payload));
                }
                FlowAction::DataExchange => {
                    parameters.insert("flow_action".into(), json!("data_exchange"));
                }
            }
            (
                "flow",
                header.as_ref().map(header_body),
                body,
                footer,
                json!({ "name": "flow", "parameters": parameters }),
            )
        }
    };
    let mut object = Map::new();
    object.insert("type".into(), json!(kind));
    put(&mut object, "header", header);
    object.insert("body".into(), json!({ "text": body }));
    put(
        &mut object,
        "footer",
        footer.as_ref().map(|text| json!({ "text": text })),
    );
    object.insert("action".into(), action);
    Value::Object(object)
}

fn media_body(media: &Media) -> Value {
    let mut object = source(&media.source);
    put(&mut object, "caption", media.caption.as_deref());
    put(&mut object, "filename", media.filename.as_deref());
    Value::Object(object)
}

fn location_body(location: &Location) -> Value {
    let mut object = Map::new();
    object.insert("latitude".into(), json!(location.latitude));
    object.insert("longitude".into(), json!(location.longitude));
    put(&mut object, "name", location.name.as_deref());
    put(&mut object, "address", location.address.as_deref());
    Value::Object(object)
}

fn contact_body(contact: &Contact) -> Value {
    let mut name = Map::new();
    name.insert("formatted_name".into(), json!(contact.formatted_name));
    put(&mut name, "first_name", contact.first_name.as_deref());
    put(&mut name, "last_name", contact.last_name.as_deref());
    let mut object = Map::new();
    object.insert("name".into(), Value::Object(name));
    if !contact.phones.is_empty() {
        let phones = contact.phones.iter().map(|phone| {
            let mut object = Map::new();
            object.insert("phone".into(), json!(phone.phone));
            put(&mut object, "type", phone.kind.as_deref());
            put(&mut object, "wa_id", phone.wa_id.as_deref());
            Value::Object(object)
        });
        object.insert("phones".into(), Value::Array(phones.collect()));
    }
    if !contact.emails.is_empty() {
        let emails = contact.emails.iter().map(|email| {
            let mut object = Map::new();
            object.insert("email".into(), json!(email.email));
            put(&mut object, "type", email.kind.as_deref());
            Value::Object(object)
        });
        object.insert("emails".into(), Value::Array(emails.collect()));
    }
    Value::Object(object)
}

/// Mark an inbound message read, optionally showing "typing…" until the reply (Cloud API only;
/// the indicator lasts up to 25 seconds, so ask for it only when a reply follows).
///
/// ```
/// use switchboard_sdk::send::MarkRead;
///
/// let read = MarkRead::new("wamid.M1").typing_indicator();
/// assert_eq!(read.to_cloud()["typing_indicator"]["type"], "text");
/// assert_eq!(read.to_onprem(), serde_json::json!({ "status": "read" }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MarkRead {
    /// The inbound message id.
    pub message_id: String,
    /// Also show the typing indicator (Cloud API).
    #[serde(default)]
    pub typing_indicator: bool,
}

impl MarkRead {
    /// Mark `message_id` read.
    pub fn new(message_id: impl Into<String>) -> Self {
        MarkRead {
            message_id: message_id.into(),
            typing_indicator: false,
        }
    }

    /// Also show "typing…" until the reply.
    pub fn typing_indicator(mut self) -> Self {
        self.typing_indicator = true;
        self
    }

    /// The body of the On-Premises API's `PUT /v1/messages/{message_id}`; that API has no
    /// typing indicator.
    pub fn to_onprem(&self) -> Value {
        json!({ "status": "read" })
    }

    /// The body of the Cloud API's `POST /{phone-number-id}/messages`.
    pub fn to_cloud(&self) -> Value {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": self.message_id,
        });
        if self.typing_indicator {
            body["typing_indicator"] = json!({ "type": "text" });
        }
        body
    }
}
