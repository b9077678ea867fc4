//! WhatsApp's limits, checked before a send is queued, so an invalid one is refused at once
//! with its reason instead of by the API later.

use std::collections::HashSet;
use std::fmt;

use super::limits;
use super::{
    Buttons, Contact, CtaUrl, Flow, FlowAction, Header, Interactive, List, Media, MediaKind,
    MediaSource, OutgoingMessage, Reaction, Send, Template, TemplateParameter,
};

/// Why a send is refused. The text says what is wrong and what WhatsApp allows.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SendError {
    /// A required field is empty.
    Missing {
        /// Which one, as `button title`.
        field: &'static str,
    },
    /// A field is longer than WhatsApp allows (in characters).
    TooLong {
        /// Which one, as `button title`.
        field: &'static str,
        /// The limit.
        max: usize,
        /// Its length.
        got: usize,
    },
    /// A buttons message without buttons.
    NoButtons,
    /// More reply buttons than WhatsApp allows.
    TooManyButtons {
        /// The limit.
        max: usize,
        /// How many there are.
        got: usize,
    },
    /// Two buttons, or two rows of a list, with the same id.
    DuplicateId {
        /// The id.
        id: String,
    },
    /// A list without rows.
    NoRows,
    /// More list sections than WhatsApp allows.
    TooManySections {
        /// The limit.
        max: usize,
        /// How many there are.
        got: usize,
    },
    /// More list rows, all sections together, than WhatsApp allows.
    TooManyRows {
        /// The limit.
        max: usize,
        /// How many there are.
        got: usize,
    },
    /// A list section without rows.
    EmptySection {
        /// Its position, from 1.
        section: usize,
    },
    /// A list of several sections where one has no title.
    SectionTitleMissing {
        /// Its position, from 1.
        section: usize,
    },
    /// A caption on audio or a sticker.
    CaptionNotAllowed {
        /// The media's kind.
        kind: MediaKind,
    },
    /// A file name on media other than a document.
    FilenameNotAllowed {
        /// The media's kind.
        kind: MediaKind,
    },
    /// A link or URL that is not `http://` or `https://`.
    NotAUrl {
        /// Which field.
        field: &'static str,
        /// What it holds.
        got: String,
    },
    /// A reaction that is not a single emoji (nor empty, which removes the reaction).
    NotAnEmoji {
        /// What it holds.
        got: String,
    },
    /// A latitude outside -90 to 90.
    LatitudeOutOfRange {
        /// The latitude.
        got: f64,
    },
    /// A longitude outside -180 to 180.
    LongitudeOutOfRange {
        /// The longitude.
        got: f64,
    },
    /// A contacts message without contact cards.
    NoContacts,
    /// A flow's initial data that is not a JSON object.
    FlowDataNotAnObject,
    /// A raw message that is not a JSON object with a string `type`.
    RawNotAMessage,
    /// A reply-to on a reaction, which names the message it reacts to instead.
    ReplyToNotAllowed,
    /// A template to be sent through the On-Premises API without a namespace.
    MissingNamespace {
        /// The template's name.
        template: String,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Missing { field } => write!(f, "the send has no {field}: it is required"),
            SendError::TooLong { field, max, got } => write!(
                f,
                "the {field} is {got} characters long: WhatsApp allows at most {max}"
            ),
            SendError::NoButtons => {
                write!(f, "the buttons message has no buttons: add at least one")
            }
            SendError::TooManyButtons { max, got } => write!(
                f,
                "the buttons message has {got} buttons: WhatsApp allows at most {max} (send a list for more choices)"
            ),
            SendError::DuplicateId { id } => write!(
                f,
                "the id {id:?} is used twice: the buttons or rows of a message need different ids"
            ),
            SendError::NoRows => write!(f, "the list has no rows: add at least one"),
            SendError::TooManySections { max, got } => write!(
                f,
                "the list has {got} sections: WhatsApp allows at most {max}"
            ),
            SendError::TooManyRows { max, got } => write!(
                f,
                "the list has {got} rows: WhatsApp allows at most {max}, all sections together"
            ),
            SendError::EmptySection { section } => write!(
                f,
                "section {section} of the list has no rows: add one or remove the section"
            ),
            SendError::SectionTitleMissing { section } => write!(
                f,
                "section {section} of the list has no title: a list of several sections needs a title on each"
            ),
            SendError::CaptionNotAllowed { kind } => write!(
                f,
                "a {} cannot have a caption: only images, videos and documents can",
                kind.as_str()
            ),
            SendError::FilenameNotAllowed { kind } => write!(
                f,
                "a {} cannot have a file name: only a document can",
                kind.as_str()
            ),
            SendError::NotAUrl { field, got } => {
                write!(f, "the {field} {got:?} is not an http:// or https:// URL")
            }
            SendError::NotAnEmoji { got } => write!(
                f,
                "the reaction {got:?} is not a single emoji: send one emoji, or an empty one to remove the reaction"
            ),
            SendError::LatitudeOutOfRange { got } => {
                write!(f, "the latitude {got} is outside -90 to 90")
            }
            SendError::LongitudeOutOfRange { got } => {
                write!(f, "the longitude {got} is outside -180 to 180")
            }
            SendError::NoContacts => write!(
                f,
                "the contacts message has no contact cards: add at least one"
            ),
            SendError::FlowDataNotAnObject => {
                write!(f, "the flow's initial data is not a JSON object")
            }
            SendError::RawNotAMessage => write!(
                f,
                "the raw message is not a JSON object with a string \"type\", as the WhatsApp API takes it"
            ),
            SendError::ReplyToNotAllowed => write!(
                f,
                "a reaction cannot quote a message: it names the message it reacts to"
            ),
            SendError::MissingNamespace { template } => write!(
                f,
                "the template {template:?} has no namespace, which the On-Premises API needs: set one on the send or in the host's [whatsapp] configuration"
            ),
        }
    }
}

impl std::error::Error for SendError {}

impl Send {
    /// Check the send against WhatsApp's limits ([`limits`]), and its fallback template if it
    /// has one; the first problem found is the error.
    ///
    /// ```
    /// use switchboard_sdk::send::{Send, SendError};
    ///
    /// let send = Send::buttons("5511987650001", "Pick one")
    ///     .button("a", "A").button("b", "B").button("c", "C").button("d", "D")
    ///     .build();
    /// assert_eq!(send.validate(), Err(SendError::TooManyButtons { max: 3, got: 4 }));
    /// ```
    pub fn validate(&self) -> Result<(), SendError> {
        required(&self.to, "recipient (to)")?;
        if let Some(id) = &self.reply_to {
            required(id, "reply-to message id")?;
            if matches!(self.message, OutgoingMessage::Reaction(_)) {
                return Err(SendError::ReplyToNotAllowed);
            }
        }
        if let Some(fallback) = &self.fallback {
            check_template(fallback)?;
        }
        match &self.message {
            OutgoingMessage::Text(text) => text_field(&text.body, "text body", limits::TEXT_BODY),
            OutgoingMessage::Template(template) => check_template(template),
            OutgoingMessage::Interactive(interactive) => match interactive {
                Interactive::Buttons(buttons) => check_buttons(buttons),
                Interactive::List(list) => check_list(list),
                Interactive::CtaUrl(cta) => check_cta_url(cta),
                Interactive::Flow(flow) => check_flow(flow),
            },
            OutgoingMessage::Media(media) => check_media(media),
            OutgoingMessage::Location(location) => {
                if !(-90.0..=90.0).contains(&location.latitude) {
                    return Err(SendError::LatitudeOutOfRange {
                        got: location.latitude,
                    });
                }
                if !(-180.0..=180.0).contains(&location.longitude) {
                    return Err(SendError::LongitudeOutOfRange {
                        got: location.longitude,
                    });
                }
                Ok(())
            }
            OutgoingMessage::Contacts(contacts) => check_contacts(contacts),
            OutgoingMessage::Reaction(reaction) => check_reaction(reaction),
            OutgoingMessage::Raw(raw) => match raw.get("type") {
                Some(serde_json::Value::String(kind)) if !kind.is_empty() => Ok(()),
                _ => Err(SendError::RawNotAMessage),
            },
        }
    }
}

fn required(value: &str, field: &'static str) -> Result<(), SendError> {
    if value.trim().is_empty() {
        return Err(SendError::Missing { field });
    }
    Ok(())
}

fn at_most(value: &str, field: &'static str, max: usize) -> Result<(), SendError> {
    let got = value.chars().count();
    if got > max {
        return Err(SendError::TooLong { field, max, got });
    }
    Ok(())
}

/// A required text of at most `max` characters.
fn text_field(value: &str, field: &'static str, max: usize) -> Result<(), SendError> {
    required(value, field)?;
    at_most(value, field, max)
}

fn optional_field(value: Option<&str>, field: &'static str, max: usize) -> Result<(), SendError> {
    value.map_or(Ok(()), |value| text_field(value, field, max))
}

fn check_url(url: &str, field: &'static str) -> Result<(), SendError> {
    required(url, field)?;
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        Ok(())
    } else {
        Err(SendError::NotAUrl {
            field,
            got: url.to_string(),
        })
    }
}

fn check_source(source: &MediaSource) -> Result<(), SendError> {
    match source {
        MediaSource::Id(id) => required(id, "media id"),
        MediaSource::Link(link) => check_url(link, "media link"),
    }
}

fn check_template(template: &Template) -> Result<(), SendError> {
    required(&template.name, "template name")?;
    required(&template.language, "template language")?;
    if let Some(namespace) = &template.namespace {
        required(namespace, "template namespace")?;
    }
    for parameter in template.components.iter().flat_map(|c| &c.parameters) {
        match parameter {
            TemplateParameter::Text(text) => required(text, "template text parameter")?,
            TemplateParameter::Currency {
                fallback_value,
                code,
                ..
            } => {
                required(fallback_value, "currency fallback value")?;
                required(code, "currency code")?;
            }
            TemplateParameter::DateTime(value) => required(value, "date-time fallback value")?,
            TemplateParameter::Image(source)
            | TemplateParameter::Video(source)
            | TemplateParameter::Document { source, .. } => check_source(source)?,
            TemplateParameter::Payload(payload) => required(payload, "button payload")?,
        }
    }
    Ok(())
}

fn check_header(header: Option<&Header>) -> Result<(), SendError> {
    match header {
        None => Ok(()),
        Some(Header::Text(text)) => text_field(text, "header", limits::HEADER_TEXT),
        Some(Header::Image(source) | Header::Video(source) | Header::Document(source)) => {
            check_source(source)
        }
    }
}

/// Header, body and footer of buttons, call-to-action URL and flow messages.
fn check_frame(header: Option<&Header>, body: &str, footer: Option<&str>) -> Result<(), SendError> {
    check_header(header)?;
    text_field(body, "body", limits::INTERACTIVE_BODY)?;
    optional_field(footer, "footer", limits::FOOTER)
}

fn check_buttons(buttons: &Buttons) -> Result<(), SendError> {
    check_frame(
        buttons.header.as_ref(),
        &buttons.body,
        buttons.footer.as_deref(),
    )?;
    if buttons.buttons.is_empty() {
        return Err(SendError::NoButtons);
    }
    if buttons.buttons.len() > limits::BUTTONS {
        return Err(SendError::TooManyButtons {
            max: limits::BUTTONS,
            got: buttons.buttons.len(),
        });
    }
    let mut ids = HashSet::new();
    for button in &buttons.buttons {
        text_field(&button.id, "button id", limits::BUTTON_ID)?;
        text_field(&button.title, "button title", limits::BUTTON_TITLE)?;
        if !ids.insert(button.id.as_str()) {
            return Err(SendError::DuplicateId {
                id: button.id.clone(),
            });
        }
    }
    Ok(())
}

fn check_list(list: &List) -> Result<(), SendError> {
    optional_field(list.header.as_deref(), "header", limits::HEADER_TEXT)?;
    text_field(&list.body, "body", limits::LIST_BODY)?;
    optional_field(list.footer.as_deref(), "footer", limits::FOOTER)?;
    text_field(&list.button, "list button", limits::LIST_BUTTON)?;
    if list.sections.len() > limits::LIST_SECTIONS {
        return Err(SendError::TooManySections {
            max: limits::LIST_SECTIONS,
            got: list.sections.len(),
        });
    }
    let rows: usize = list.sections.iter().map(|s| s.rows.len()).sum();
    if rows == 0 {
        return Err(SendError::NoRows);
    }
    if rows > limits::LIST_ROWS {
        return Err(SendError::TooManyRows {
            max: limits::LIST_ROWS,
            got: rows,
        });
    }
    let mut ids = HashSet::new();
    for (i, section) in list.sections.iter().enumerate() {
        match &section.title {
            Some(title) => text_field(title, "section title", limits::SECTION_TITLE)?,
            None if list.sections.len() > 1 => {
                return Err(SendError::SectionTitleMissing { section: i + 1 });
            }
            None => {}
        }
        if section.rows.is_empty() {
            return Err(SendError::EmptySection { section: i + 1 });
        }
        for row in &section.rows {
            text_field(&row.id, "row id", limits::ROW_ID)?;
            text_field(&row.title, "row title", limits::ROW_TITLE)?;
            optional_field(
                row.description.as_deref(),
                "row description",
                limits::ROW_DESCRIPTION,
            )?;
            if !ids.insert(row.id.as_str()) {
                return Err(SendError::DuplicateId { id: row.id.clone() });
            }
        }
    }
    Ok(())
}

fn check_cta_url(cta: &CtaUrl) -> Result<(), SendError> {
    check_frame(cta.header.as_ref(), &cta.body, cta.footer.as_deref())?;
    text_field(&cta.display_text, "call-to-action text", limits::CTA_TEXT)?;
    check_url(&cta.url, "call-to-action URL")
}

fn check_flow(flow: &Flow) -> Result<(), SendError> {
    check_frame(flow.header.as_ref(), &flow.body, flow.footer.as_deref())?;
    required(&flow.flow_id, "flow id")?;
    text_field(&flow.flow_cta, "flow button", limits::CTA_TEXT)?;
    if let Some(token) = &flow.flow_token {
        required(token, "flow token")?;
    }
    if let FlowAction::Navigate { screen, data } = &flow.action {
        required(screen, "flow screen")?;
        if data.as_ref().is_some_and(|data| !data.is_object()) {
            return Err(SendError::FlowDataNotAnObject);
        }
    }
    Ok(())
}

fn check_media(media: &Media) -> Result<(), SendError> {
    check_source(&media.source)?;
    if let Some(caption) = &media.caption {
        if matches!(media.kind, MediaKind::Audio | MediaKind::Sticker) {
            return Err(SendError::CaptionNotAllowed { kind: media.kind });
        }
        text_field(caption, "caption", limits::CAPTION)?;
    }
    if let Some(filename) = &media.filename {
        if media.kind != MediaKind::Document {
            return Err(SendError::FilenameNotAllowed { kind: media.kind });
        }
        required(filename, "file name")?;
    }
    Ok(())
}

fn check_contacts(contacts: &[Contact]) -> Result<(), SendError> {
    if contacts.is_empty() {
        return Err(SendError::NoContacts);
    }
    for contact in contacts {
        required(&contact.formatted_name, "contact name")?;
        for phone in &contact.phones {
            required(&phone.phone, "contact phone number")?;
        }
        for email in &contact.emails {
            required(&email.email, "contact email address")?;
        }
    }
    Ok(())
}

fn check_reaction(reaction: &Reaction) -> Result<(), SendError> {
    required(&reaction.message_id, "reaction message id")?;
    if reaction.emoji.is_empty() || is_one_emoji(&reaction.emoji) {
        Ok(())
    } else {
        Err(SendError::NotAnEmoji {
            got: reaction.emoji.clone(),
        })
    }
}

/// One emoji: one base character that is not text, with what may extend it (variation
/// selectors, skin tones, a keycap, tags, further bases joined by U+200D, the second regional
/// indicator of a flag). Exact grapheme segmentation needs Unicode tables (a crate every plugin
/// would carry) for a check WhatsApp repeats; this catches the usual mistakes: a word, a
/// sentence, several emoji in a row.
fn is_one_emoji(emoji: &str) -> bool {
    // A keycap (1️⃣, #️⃣) is an ASCII character followed by U+20E3.
    let keycap = emoji.contains('\u{20E3}');
    let mut bases = 0;
    let mut after_joiner = false;
    let mut open_flag = false;
    for c in emoji.chars() {
        let code = u32::from(c);
        if c == '\u{200D}' {
            after_joiner = true;
            continue;
        }
        if matches!(code, 0xFE0E | 0xFE0F | 0x20E3 | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F) {
            continue;
        }
        if c.is_whitespace() || c.is_control() || c.is_alphabetic() || (c.is_ascii() && !keycap) {
            return false;
        }
        let regional = (0x1F1E6..=0x1F1FF).contains(&code);
        if regional && open_flag {
            open_flag = false;
        } else {
            if !after_joiner {
                bases += 1;
            }
            open_flag = regional;
        }
        after_joiner = false;
    }
    bases == 1
}
