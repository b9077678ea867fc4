//! Conversions between [`Send`] and the `send` of the 0.2.0 contract's generated bindings.
//!
//! The guest (wit-bindgen) and the host (wasmtime) generate types of the same names and shapes
//! from `wit/v0.2.0`, so one macro, [`__send_wire!`](crate::__send_wire), writes the
//! conversions for either. The structs of [`crate::send`] are `#[non_exhaustive]`, which keeps
//! other crates from building them field by field: the macro goes through the constructors
//! below instead. Not part of the public API.

use serde_json::Value;

use super::{
    Buttons, Contact, ContactEmail, ContactPhone, CtaUrl, Flow, FlowAction, Header, List, Location,
    Media, MediaKind, MediaSource, OutgoingMessage, Reaction, ReplyButton, Row, Section, Send,
    Template, TemplateComponent, Text,
};
use super::{ComponentKind, TemplateParameter};

pub fn send(
    to: String,
    message: OutgoingMessage,
    reply_to: Option<String>,
    fallback: Option<Template>,
) -> Send {
    Send {
        to,
        message,
        reply_to,
        fallback,
    }
}

pub fn text(body: String, preview_url: bool) -> Text {
    Text { body, preview_url }
}

pub fn template(
    name: String,
    language: String,
    namespace: Option<String>,
    components: Vec<TemplateComponent>,
) -> Template {
    Template {
        name,
        language,
        namespace,
        components,
    }
}

pub fn component(kind: ComponentKind, parameters: Vec<TemplateParameter>) -> TemplateComponent {
    TemplateComponent { kind, parameters }
}

pub fn buttons(
    header: Option<Header>,
    body: String,
    footer: Option<String>,
    buttons: Vec<ReplyButton>,
) -> Buttons {
    Buttons {
        header,
        body,
        footer,
        buttons,
    }
}

pub fn reply_button(id: String, title: String) -> ReplyButton {
    ReplyButton { id, title }
}

pub fn list(
    header: Option<String>,
    body: String,
    footer: Option<String>,
    button: String,
    sections: Vec<Section>,
) -> List {
    List {
        header,
        body,
        footer,
        button,
        sections,
    }
}

pub fn section(title: Option<String>, rows: Vec<Row>) -> Section {
    Section { title, rows }
}

pub fn row(id: String, title: String, description: Option<String>) -> Row {
    Row {
        id,
        title,
        description,
    }
}

pub fn cta_url(
    header: Option<Header>,
    body: String,
    footer: Option<String>,
    display_text: String,
    url: String,
) -> CtaUrl {
    CtaUrl {
        header,
        body,
        footer,
        display_text,
        url,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn flow(
    header: Option<Header>,
    body: String,
    footer: Option<String>,
    flow_id: String,
    flow_cta: String,
    flow_token: Option<String>,
    action: FlowAction,
) -> Flow {
    Flow {
        header,
        body,
        footer,
        flow_id,
        flow_cta,
        flow_token,
        action,
    }
}

pub fn media(
    kind: MediaKind,
    source: MediaSource,
    caption: Option<String>,
    filename: Option<String>,
) -> Media {
    Media {
        kind,
        source,
        caption,
        filename,
    }
}

pub fn location(
    latitude: f64,
    longitude: f64,
    name: Option<String>,
    address: Option<String>,
) -> Location {
    Location {
        latitude,
        longitude,
        name,
        address,
    }
}

pub fn contact(
    formatted_name: String,
    first_name: Option<String>,
    last_name: Option<String>,
    phones: Vec<ContactPhone>,
    emails: Vec<ContactEmail>,
) -> Contact {
    Contact {
        formatted_name,
        first_name,
        last_name,
        phones,
        emails,
    }
}

pub fn phone(phone: String, kind: Option<String>, wa_id: Option<String>) -> ContactPhone {
    ContactPhone { phone, kind, wa_id }
}

pub fn email(email: String, kind: Option<String>) -> ContactEmail {
    ContactEmail { email, kind }
}

pub fn reaction(message_id: String, emoji: String) -> Reaction {
    Reaction { message_id, emoji }
}

/// JSON text as a value; text that is not JSON stays a string, which validation refuses with
/// its reason.
pub fn json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// A value as JSON text.
pub fn json_text(value: &Value) -> String {
    value.to_string()
}

/// Write `send_from_wit` and `send_to_wit` for the `types` module of bindings of
/// `wit/v0.2.0`, named by the identifier `$w` (a `use ... as w;` at the call site).
#[doc(hidden)]
#[macro_export]
macro_rules! __send_wire {
    ($w:ident) => {
        /// The SDK's form of a `send` a plugin returned.
        pub fn send_from_wit(s: $w::Send) -> $crate::send::Send {
            use $crate::send::wire as c;
            use $crate::send::{ButtonSubType, ComponentKind, FlowAction, Header, Interactive};
            use $crate::send::{MediaKind, MediaSource, OutgoingMessage, TemplateParameter};
            fn source(s: $w::MediaSource) -> MediaSource {
                match s {
                    $w::MediaSource::Id(id) => MediaSource::Id(id),
                    $w::MediaSource::Link(link) => MediaSource::Link(link),
                }
            }
            fn header(h: $w::Header) -> Header {
                match h {
                    $w::Header::Text(t) => Header::Text(t),
                    $w::Header::Image(s) => Header::Image(source(s)),
                    $w::Header::Video(s) => Header::Video(source(s)),
                    $w::Header::Document(s) => Header::Document(source(s)),
                }
            }
            fn parameter(p: $w::TemplateParameter) -> TemplateParameter {
                match p {
                    $w::TemplateParameter::Text(t) => TemplateParameter::Text(t),
                    $w::TemplateParameter::Currency(c) => TemplateParameter::Currency {
                        fallback_value: c.fallback_value,
                        code: c.code,
                        amount_1000: c.amount_1000,
                    },
                    $w::TemplateParameter::DateTime(t) => TemplateParameter::DateTime(t),
                    $w::TemplateParameter::Image(s) => TemplateParameter::Image(source(s)),
                    $w::TemplateParameter::Document(d) => TemplateParameter::Document {
                        source: source(d.source),
                        filename: d.filename,
                    },
                    $w::TemplateParameter::Video(s) => TemplateParameter::Video(source(s)),
                    $w::TemplateParameter::Payload(p) => TemplateParameter::Payload(p),
                }
            }
            fn component(c: $w::TemplateComponent) -> $crate::send::TemplateComponent {
                let kind = match c.kind {
                    $w::ComponentKind::Header => ComponentKind::Header,
                    $w::ComponentKind::Body => ComponentKind::Body,
                    $w::ComponentKind::Button(b) => ComponentKind::Button {
                        sub_type: match b.sub_type {
                            $w::ButtonSubType::QuickReply => ButtonSubType::QuickReply,
                            $w::ButtonSubType::Url => ButtonSubType::Url,
                        },
                        index: b.index,
                    },
                };
                c::component(kind, c.parameters.into_iter().map(parameter).collect())
            }
            fn template(t: $w::Template) -> $crate::send::Template {
                c::template(
                    t.name,
                    t.language,
                    t.namespace,
                    t.components.into_iter().map(component).collect(),
                )
            }
            fn interactive(i: $w::Interactive) -> Interactive {
                match i {
                    $w::Interactive::Buttons(b) => Interactive::Buttons(c::buttons(
                        b.header.map(header),
                        b.body,
                        b.footer,
                        b.buttons
                            .into_iter()
                            .map(|b| c::reply_button(b.id, b.title))
                            .collect(),
                    )),
                    $w::Interactive::List(l) => Interactive::List(c::list(
                        l.header,
                        l.body,
                        l.footer,
                        l.button,
                        l.sections
                            .into_iter()
                            .map(|s| {
                                c::section(
                                    s.title,
                                    s.rows
                                        .into_iter()
                                        .map(|r| c::row(r.id, r.title, r.description))
                                        .collect(),
                                )
                            })
                            .collect(),
                    )),
                    $w::Interactive::CtaUrl(u) => Interactive::CtaUrl(c::cta_url(
                        u.header.map(header),
                        u.body,
                        u.footer,
                        u.display_text,
                        u.url,
                    )),
                    $w::Interactive::Flow(f) => Interactive::Flow(c::flow(
                        f.header.map(header),
                        f.body,
                        f.footer,
                        f.flow_id,
                        f.flow_cta,
                        f.flow_token,
                        match f.action {
                            $w::FlowAction::Navigate(s) => FlowAction::Navigate {
                                screen: s.screen,
                                data: s.data.map(c::json),
                            },
                            $w::FlowAction::DataExchange => FlowAction::DataExchange,
                        },
                    )),
                }
            }
            let message = match s.message {
                $w::OutgoingMessage::Text(t) => {
                    OutgoingMessage::Text(c::text(t.body, t.preview_url))
                }
                $w::OutgoingMessage::Template(t) => OutgoingMessage::Template(template(t)),
                $w::OutgoingMessage::Interactive(i) => OutgoingMessage::Interactive(interactive(i)),
                $w::OutgoingMessage::Media(m) => OutgoingMessage::Media(c::media(
                    match m.kind {
                        $w::MediaKind::Image => MediaKind::Image,
                        $w::MediaKind::Video => MediaKind::Video,
                        $w::MediaKind::Audio => MediaKind::Audio,
                        $w::MediaKind::Document => MediaKind::Document,
                        $w::MediaKind::Sticker => MediaKind::Sticker,
                    },
                    source(m.source),
                    m.caption,
                    m.filename,
                )),
                $w::OutgoingMessage::Location(l) => OutgoingMessage::Location(c::location(
                    l.latitude,
                    l.longitude,
                    l.name,
                    l.address,
                )),
                $w::OutgoingMessage::Contacts(cards) => OutgoingMessage::Contacts(
                    cards
                        .into_iter()
                        .map(|k| {
                            c::contact(
                                k.formatted_name,
                                k.first_name,
                                k.last_name,
                                k.phones
                                    .into_iter()
                                    .map(|p| c::phone(p.phone, p.kind, p.wa_id))
                                    .collect(),
                                k.emails
                                    .into_iter()
                                    .map(|e| c::email(e.email, e.kind))
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
                $w::OutgoingMessage::Reaction(r) => {
                    OutgoingMessage::Reaction(c::reaction(r.message_id, r.emoji))
                }
                $w::OutgoingMessage::Raw(raw) => OutgoingMessage::Raw(c::json(raw)),
            };
            c::send(s.to, message, s.reply_to, s.fallback.map(template))
        }

        /// The contract's form of a send, for the plugins after the one that made it. A kind
        /// of a later SDK that the contract lacks goes as raw JSON.
        #[allow(unreachable_patterns)]
        pub fn send_to_wit(s: $crate::send::Send) -> $w::Send {
            use $crate::send::wire as c;
            use $crate::send::{ButtonSubType, ComponentKind, FlowAction, Header, Interactive};
            use $crate::send::{MediaKind, MediaSource, OutgoingMessage, TemplateParameter};
            fn source(s: MediaSource) -> $w::MediaSource {
                match s {
                    MediaSource::Id(id) => $w::MediaSource::Id(id),
                    MediaSource::Link(link) => $w::MediaSource::Link(link),
                    _ => $w::MediaSource::Id(String::new()),
                }
            }
            fn header(h: Header) -> $w::Header {
                match h {
                    Header::Text(t) => $w::Header::Text(t),
                    Header::Image(s) => $w::Header::Image(source(s)),
                    Header::Video(s) => $w::Header::Video(source(s)),
                    Header::Document(s) => $w::Header::Document(source(s)),
                    _ => $w::Header::Text(String::new()),
                }
            }
            fn parameter(p: TemplateParameter) -> $w::TemplateParameter {
                match p {
                    TemplateParameter::Text(t) => $w::TemplateParameter::Text(t),
                    TemplateParameter::Currency {
                        fallback_value,
                        code,
                        amount_1000,
                    } => $w::TemplateParameter::Currency($w::Currency {
                        fallback_value,
                        code,
                        amount_1000,
                    }),
                    TemplateParameter::DateTime(t) => $w::TemplateParameter::DateTime(t),
                    TemplateParameter::Image(s) => $w::TemplateParameter::Image(source(s)),
                    TemplateParameter::Document {
                        source: s,
                        filename,
                    } => $w::TemplateParameter::Document($w::TemplateDocument {
                        source: source(s),
                        filename,
                    }),
                    TemplateParameter::Video(s) => $w::TemplateParameter::Video(source(s)),
                    TemplateParameter::Payload(p) => $w::TemplateParameter::Payload(p),
                    _ => $w::TemplateParameter::Text(String::new()),
                }
            }
            fn component(c: $crate::send::TemplateComponent) -> $w::TemplateComponent {
                $w::TemplateComponent {
                    kind: match c.kind {
                        ComponentKind::Header => $w::ComponentKind::Header,
                        ComponentKind::Body => $w::ComponentKind::Body,
                        ComponentKind::Button { sub_type, index } => {
                            $w::ComponentKind::Button($w::TemplateButton {
                                sub_type: match sub_type {
                                    ButtonSubType::Url => $w::ButtonSubType::Url,
                                    _ => $w::ButtonSubType::QuickReply,
                                },
                                index,
                            })
                        }
                        _ => $w::ComponentKind::Body,
                    },
                    parameters: c.parameters.into_iter().map(parameter).collect(),
                }
            }
            fn template(t: $crate::send::Template) -> $w::Template {
                $w::Template {
                    name: t.name,
                    language: t.language,
                    namespace: t.namespace,
                    components: t.components.into_iter().map(component).collect(),
                }
            }
            let message = match s.message {
                OutgoingMessage::Text(t) => $w::OutgoingMessage::Text($w::Text {
                    body: t.body,
                    preview_url: t.preview_url,
                }),
                OutgoingMessage::Template(t) => $w::OutgoingMessage::Template(template(t)),
                OutgoingMessage::Interactive(Interactive::Buttons(b)) => {
                    $w::OutgoingMessage::Interactive($w::Interactive::Buttons($w::Buttons {
                        header: b.header.map(header),
                        body: b.body,
                        footer: b.footer,
                        buttons: b
                            .buttons
                            .into_iter()
                            .map(|b| $w::ReplyButton {
                                id: b.id,
                                title: b.title,
                            })
                            .collect(),
                    }))
                }
                OutgoingMessage::Interactive(Interactive::List(l)) => {
                    $w::OutgoingMessage::Interactive($w::Interactive::List($w::ListMessage {
                        header: l.header,
                        body: l.body,
                        footer: l.footer,
                        button: l.button,
                        sections: l
                            .sections
                            .into_iter()
                            .map(|s| $w::ListSection {
                                title: s.title,
                                rows: s
                                    .rows
                                    .into_iter()
                                    .map(|r| $w::ListRow {
                                        id: r.id,
                                        title: r.title,
                                        description: r.description,
                                    })
                                    .collect(),
                            })
                            .collect(),
                    }))
                }
                OutgoingMessage::Interactive(Interactive::CtaUrl(u)) => {
                    $w::OutgoingMessage::Interactive($w::Interactive::CtaUrl($w::CtaUrl {
                        header: u.header.map(header),
                        body: u.body,
                        footer: u.footer,
                        display_text: u.display_text,
                        url: u.url,
                    }))
                }
                OutgoingMessage::Interactive(Interactive::Flow(f)) => {
                    $w::OutgoingMessage::Interactive($w::Interactive::Flow($w::Flow {
                        header: f.header.map(header),
                        body: f.body,
                        footer: f.footer,
                        flow_id: f.flow_id,
                        flow_cta: f.flow_cta,
                        flow_token: f.flow_token,
                        action: match f.action {
                            FlowAction::Navigate { screen, data } => {
                                $w::FlowAction::Navigate($w::FlowScreen {
                                    screen,
                                    data: data.as_ref().map(c::json_text),
                                })
                            }
                            _ => $w::FlowAction::DataExchange,
                        },
                    }))
                }
                OutgoingMessage::Media(m) => $w::OutgoingMessage::Media($w::Media {
                    kind: match m.kind {
                        MediaKind::Image => $w::MediaKind::Image,
                        MediaKind::Video => $w::MediaKind::Video,
                        MediaKind::Audio => $w::MediaKind::Audio,
                        MediaKind::Document => $w::MediaKind::Document,
                        _ => $w::MediaKind::Sticker,
                    },
                    source: source(m.source),
                    caption: m.caption,
                    filename: m.filename,
                }),
                OutgoingMessage::Location(l) => $w::OutgoingMessage::Location($w::Location {
                    latitude: l.latitude,
                    longitude: l.longitude,
                    name: l.name,
                    address: l.address,
                }),
                OutgoingMessage::Contacts(cards) => $w::OutgoingMessage::Contacts(
                    cards
                        .into_iter()
                        .map(|k| $w::Contact {
                            formatted_name: k.formatted_name,
                            first_name: k.first_name,
                            last_name: k.last_name,
                            phones: k
                                .phones
                                .into_iter()
                                .map(|p| $w::ContactPhone {
                                    phone: p.phone,
                                    kind: p.kind,
                                    wa_id: p.wa_id,
                                })
                                .collect(),
                            emails: k
                                .emails
                                .into_iter()
                                .map(|e| $w::ContactEmail {
                                    email: e.email,
                                    kind: e.kind,
                                })
                                .collect(),
                        })
                        .collect(),
                ),
                OutgoingMessage::Reaction(r) => $w::OutgoingMessage::Reaction($w::Reaction {
                    message_id: r.message_id,
                    emoji: r.emoji,
                }),
                OutgoingMessage::Raw(raw) => $w::OutgoingMessage::Raw(c::json_text(&raw)),
                other => $w::OutgoingMessage::Raw(c::json_text(
                    &c::send(String::new(), other, None, None).to_cloud(),
                )),
            };
            $w::Send {
                to: s.to,
                message,
                reply_to: s.reply_to,
                fallback: s.fallback.map(template),
            }
        }
    };
}
