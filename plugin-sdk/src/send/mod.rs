//! Typed WhatsApp sends: every message kind of the send API, checked against WhatsApp's limits
//! and rendered for either API.
//!
//! A [`Send`] is a message to one customer. Build it with the constructors of [`Send`] (one per
//! kind, each returning a [`Draft`] to refine), check it with [`Send::validate`], and turn it
//! into the request body of the On-Premises API ([`Send::to_onprem`]) or of the Cloud API
//! ([`Send::to_cloud`]). The model mirrors the `send` action of the plugin contract
//! `switchboard:plugin@0.2.0` (`wit/v0.2.0/plugin.wit`).
//!
//! ```
//! use switchboard_sdk::send::Send;
//!
//! let send = Send::buttons("5511987650001", "Confirm your 14:00 slot?")
//!     .button("confirm_yes", "Yes")
//!     .button("confirm_no", "No")
//!     .build();
//! assert!(send.validate().is_ok());
//! let body = send.to_cloud();
//! assert_eq!(body["interactive"]["action"]["buttons"][1]["reply"]["id"], "confirm_no");
//! ```
//!
//! When a send fails, [`classify`] says what to do about WhatsApp's answer: give up, slow the
//! number down, back off one recipient, or retry.

mod classify;
pub mod limits;
mod render;
mod validate;
#[doc(hidden)]
pub mod wire;

#[cfg(test)]
mod tests;

pub use classify::{ApiError, DeadLetterReason, Outcome, classify, recipient_backoff};
pub use render::MarkRead;
pub use validate::SendError;

use serde::{Deserialize, Serialize};

/// A message to one WhatsApp user.
///
/// Where it is imported, this type hides the standard library's `Send` marker trait; a module
/// that needs both can name this one `send::Send`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Send {
    /// The customer's WhatsApp id (or phone number, on the Cloud API).
    pub to: String,
    /// What is sent.
    pub message: OutgoingMessage,
    /// The message id this one quotes (`context.message_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The template the host sends instead when the message needs the customer's 24-hour
    /// window and it is closed (see [`Draft::or_template`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Template>,
}

/// What a [`Send`] carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutgoingMessage {
    /// A text message.
    Text(Text),
    /// An approved message template: the only kind allowed outside the 24-hour window.
    Template(Template),
    /// Buttons, a list, a call-to-action URL or a flow.
    Interactive(Interactive),
    /// An image, video, audio, document or sticker.
    Media(Media),
    /// A location pin.
    Location(Location),
    /// Contact cards.
    Contacts(Vec<Contact>),
    /// A reaction to a message (an empty emoji removes it).
    Reaction(Reaction),
    /// A message object of the WhatsApp API, for what this model does not cover yet; rendering
    /// sets `to` (and `context` for a reply).
    Raw(serde_json::Value),
}

/// A text message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Text {
    /// At most 4096 characters.
    pub body: String,
    /// Show a preview of the first URL in the body.
    #[serde(default)]
    pub preview_url: bool,
}

/// Where the media of a message is.
///
/// ```
/// use switchboard_sdk::send::MediaSource;
///
/// let uploaded = MediaSource::id("1013859600285441");
/// let hosted = MediaSource::link("https://example.com/photo.jpg");
/// assert_ne!(uploaded, hosted);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MediaSource {
    /// A media id (Cloud: uploaded to the phone number; On-Premises: from `POST /v1/media`).
    Id(String),
    /// An `https://` (or `http://`) URL that WhatsApp downloads.
    Link(String),
}

impl MediaSource {
    /// Media uploaded before, by its id.
    pub fn id(id: impl Into<String>) -> Self {
        MediaSource::Id(id.into())
    }

    /// Media WhatsApp downloads from `url`.
    pub fn link(url: impl Into<String>) -> Self {
        MediaSource::Link(url.into())
    }
}

/// An approved message template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Template {
    /// The template's name.
    pub name: String,
    /// Its language code, as `en_US`.
    pub language: String,
    /// The On-Premises namespace; `None` takes the one given to [`Send::to_onprem`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Parameters per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<TemplateComponent>,
}

/// Parameters of one component of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TemplateComponent {
    /// Header, body or which button.
    pub kind: ComponentKind,
    /// The values of the component's placeholders, in order.
    pub parameters: Vec<TemplateParameter>,
}

/// Which part of a template parameters go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ComponentKind {
    /// The header.
    Header,
    /// The body.
    Body,
    /// A button, by its kind and 0-based position.
    Button {
        /// Quick reply or URL.
        sub_type: ButtonSubType,
        /// The button's position, from 0.
        index: u8,
    },
}

/// The kind of a template button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ButtonSubType {
    /// A quick-reply button; its parameter is a payload.
    QuickReply,
    /// A URL button; its parameter is the variable end of the URL.
    Url,
}

/// A parameter of a template component.
///
/// ```
/// use switchboard_sdk::send::{MediaSource, TemplateParameter as P};
///
/// let parameters = [
///     P::text("Ana"),
///     P::currency("€12.50", "EUR", 12_500),
///     P::date_time("Friday 14:00"),
///     P::document(MediaSource::id("55"), Some("ticket.pdf")),
///     P::video(MediaSource::link("https://example.com/v.mp4")),
///     P::payload("unsubscribe"),
/// ];
/// assert_eq!(parameters.len(), 6);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TemplateParameter {
    /// Text.
    Text(String),
    /// An amount of money.
    Currency {
        /// Shown when the amount cannot be localised.
        fallback_value: String,
        /// ISO 4217 code, as `EUR`.
        code: String,
        /// The amount times 1000.
        amount_1000: i64,
    },
    /// A date and time, by its fallback value.
    DateTime(String),
    /// An image (header).
    Image(MediaSource),
    /// A document (header).
    Document {
        /// Where it is.
        source: MediaSource,
        /// The file name shown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// A video (header).
    Video(MediaSource),
    /// The payload of a quick-reply button.
    Payload(String),
}

impl TemplateParameter {
    /// A text parameter.
    pub fn text(text: impl Into<String>) -> Self {
        TemplateParameter::Text(text.into())
    }

    /// An amount of money: `amount_1000` is the amount times 1000.
    pub fn currency(
        fallback_value: impl Into<String>,
        code: impl Into<String>,
        amount_1000: i64,
    ) -> Self {
        TemplateParameter::Currency {
            fallback_value: fallback_value.into(),
            code: code.into(),
            amount_1000,
        }
    }

    /// A date and time, by the text shown.
    pub fn date_time(fallback_value: impl Into<String>) -> Self {
        TemplateParameter::DateTime(fallback_value.into())
    }

    /// An image.
    pub fn image(source: MediaSource) -> Self {
        TemplateParameter::Image(source)
    }

    /// A document, with the file name shown.
    pub fn document(source: MediaSource, filename: Option<&str>) -> Self {
        TemplateParameter::Document {
            source,
            filename: filename.map(str::to_string),
        }
    }

    /// A video.
    pub fn video(source: MediaSource) -> Self {
        TemplateParameter::Video(source)
    }

    /// The payload of a quick-reply button.
    pub fn payload(payload: impl Into<String>) -> Self {
        TemplateParameter::Payload(payload.into())
    }
}

/// An interactive message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Interactive {
    /// Up to 3 reply buttons.
    Buttons(Buttons),
    /// A list of choices.
    List(List),
    /// A button that opens a URL.
    CtaUrl(CtaUrl),
    /// A WhatsApp Flow.
    Flow(Flow),
}

/// The header of an interactive message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Header {
    /// Text, at most 60 characters.
    Text(String),
    /// An image.
    Image(MediaSource),
    /// A video.
    Video(MediaSource),
    /// A document.
    Document(MediaSource),
}

/// Reply buttons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Buttons {
    /// An optional header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// At most 1024 characters.
    pub body: String,
    /// At most 60 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// One to three buttons.
    pub buttons: Vec<ReplyButton>,
}

/// A reply button (built by the buttons draft's `button`).
///
/// ```
/// use switchboard_sdk::send::{Interactive, OutgoingMessage, ReplyButton, Send};
///
/// let send = Send::buttons("5511987650001", "Pick one").button("yes", "Yes").build();
/// let OutgoingMessage::Interactive(Interactive::Buttons(buttons)) = &send.message else { panic!() };
/// assert_eq!(buttons.buttons, [ReplyButton::new("yes", "Yes")]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReplyButton {
    /// Comes back in the customer's answer; at most 256 characters, unique in the message.
    pub id: String,
    /// At most 20 characters.
    pub title: String,
}

impl ReplyButton {
    /// A button labelled `title` that answers with `id`.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        ReplyButton {
            id: id.into(),
            title: title.into(),
        }
    }
}

/// A list: at most 10 sections and 10 rows in total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct List {
    /// A text header, at most 60 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// At most 4096 characters.
    pub body: String,
    /// At most 60 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// The label of the button that opens the list, at most 20 characters.
    pub button: String,
    /// The sections.
    pub sections: Vec<Section>,
}

/// A section of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Section {
    /// At most 24 characters; required when a list has several sections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

impl Section {
    /// An empty section titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Section {
            title: Some(title.into()),
            rows: Vec::new(),
        }
    }

    /// An empty section without a title (for a list of one section).
    pub fn untitled() -> Self {
        Section {
            title: None,
            rows: Vec::new(),
        }
    }

    /// Add a row.
    pub fn row(mut self, row: Row) -> Self {
        self.rows.push(row);
        self
    }
}

/// A row of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Row {
    /// Comes back in the customer's answer; at most 200 characters, unique in the message.
    pub id: String,
    /// At most 24 characters.
    pub title: String,
    /// At most 72 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Row {
    /// A row titled `title` that answers with `id`.
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Row {
            id: id.into(),
            title: title.into(),
            description: None,
        }
    }

    /// Add a description under the title.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// A call-to-action URL button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CtaUrl {
    /// An optional header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// At most 1024 characters.
    pub body: String,
    /// At most 60 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// The button's label, at most 20 characters.
    pub display_text: String,
    /// An `https://` or `http://` URL.
    pub url: String,
}

/// A WhatsApp Flow; the customer's answer comes back as `interactive.nfm_reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Flow {
    /// An optional header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// At most 1024 characters.
    pub body: String,
    /// At most 60 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footer: Option<String>,
    /// The flow's id.
    pub flow_id: String,
    /// The button's label, at most 20 characters.
    pub flow_cta: String,
    /// Comes back with the answer; `None` sends WhatsApp's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_token: Option<String>,
    /// What opening the flow does.
    pub action: FlowAction,
}

/// What opening a flow does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlowAction {
    /// Open this screen, with this initial data (a JSON object).
    Navigate {
        /// The screen's id.
        screen: String,
        /// Initial data for the screen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    },
    /// Ask the flow's data endpoint for the first screen.
    DataExchange,
}

/// The kind of a media message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MediaKind {
    /// An image.
    Image,
    /// A video.
    Video,
    /// Audio (a voice note, music).
    Audio,
    /// A document, with a file name.
    Document,
    /// A sticker.
    Sticker,
}

impl MediaKind {
    /// The API's `type`: `image`, `video`, `audio`, `document`, `sticker`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }
}

/// A media message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Media {
    /// Image, video, audio, document or sticker.
    pub kind: MediaKind,
    /// Where the media is.
    pub source: MediaSource,
    /// Not for audio and sticker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Documents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// A location pin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Location {
    /// -90 to 90.
    pub latitude: f64,
    /// -180 to 180.
    pub longitude: f64,
    /// The place's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The place's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Contact {
    /// The name shown.
    pub formatted_name: String,
    /// The first name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// The last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Phone numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<ContactPhone>,
    /// Email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<ContactEmail>,
}

impl Contact {
    /// A card with the name shown `formatted_name`.
    ///
    /// ```
    /// use switchboard_sdk::send::{Contact, ContactPhone};
    ///
    /// let card = Contact::new("Ana Souza")
    ///     .first_name("Ana")
    ///     .phone("+55 11 98765 0001")
    ///     .phone(ContactPhone::new("+55 11 3333 0000").kind("WORK"))
    ///     .email("ana@example.com");
    /// assert_eq!(card.phones.len(), 2);
    /// ```
    pub fn new(formatted_name: impl Into<String>) -> Self {
        Contact {
            formatted_name: formatted_name.into(),
            first_name: None,
            last_name: None,
            phones: Vec::new(),
            emails: Vec::new(),
        }
    }

    /// Set the first name.
    pub fn first_name(mut self, name: impl Into<String>) -> Self {
        self.first_name = Some(name.into());
        self
    }

    /// Set the last name.
    pub fn last_name(mut self, name: impl Into<String>) -> Self {
        self.last_name = Some(name.into());
        self
    }

    /// Add a phone number.
    pub fn phone(mut self, phone: impl Into<ContactPhone>) -> Self {
        self.phones.push(phone.into());
        self
    }

    /// Add an email address.
    pub fn email(mut self, email: impl Into<ContactEmail>) -> Self {
        self.emails.push(email.into());
        self
    }
}

/// A phone number of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContactPhone {
    /// The number.
    pub phone: String,
    /// `CELL`, `MAIN`, `IPHONE`, `HOME` or `WORK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The WhatsApp id, which adds a "Message" button to the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

impl ContactPhone {
    /// A phone number.
    pub fn new(phone: impl Into<String>) -> Self {
        ContactPhone {
            phone: phone.into(),
            kind: None,
            wa_id: None,
        }
    }

    /// Set its kind (`CELL`, `MAIN`, `IPHONE`, `HOME`, `WORK`).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Set its WhatsApp id.
    pub fn wa_id(mut self, wa_id: impl Into<String>) -> Self {
        self.wa_id = Some(wa_id.into());
        self
    }
}

impl From<&str> for ContactPhone {
    fn from(phone: &str) -> Self {
        ContactPhone::new(phone)
    }
}

impl From<String> for ContactPhone {
    fn from(phone: String) -> Self {
        ContactPhone::new(phone)
    }
}

/// An email address of a contact card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContactEmail {
    /// The address.
    pub email: String,
    /// `HOME` or `WORK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl ContactEmail {
    /// An email address.
    pub fn new(email: impl Into<String>) -> Self {
        ContactEmail {
            email: email.into(),
            kind: None,
        }
    }

    /// Set its kind (`HOME`, `WORK`).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
}

impl From<&str> for ContactEmail {
    fn from(email: &str) -> Self {
        ContactEmail::new(email)
    }
}

impl From<String> for ContactEmail {
    fn from(email: String) -> Self {
        ContactEmail::new(email)
    }
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reaction {
    /// The message reacted to.
    pub message_id: String,
    /// One emoji; empty removes the reaction.
    pub emoji: String,
}

/// A [`Send`] being built: the recipient, an optional quoted message, and the message of kind
/// `M`, which has refining methods of its own. [`Draft::build`] (or `.into()`) gives the
/// [`Send`].
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a draft does nothing until it is built into a Send"]
pub struct Draft<M> {
    to: String,
    reply_to: Option<String>,
    fallback: Option<Template>,
    message: M,
}

impl<M: Into<OutgoingMessage>> Draft<M> {
    fn new(to: impl Into<String>, message: M) -> Self {
        Draft {
            to: to.into(),
            reply_to: None,
            fallback: None,
            message,
        }
    }

    /// Quote the message `message_id` (usually the one being answered).
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::text("5511987650001", "Yes, we open at 10:00.").reply_to("wamid.Q").build();
    /// assert_eq!(send.reply_to.as_deref(), Some("wamid.Q"));
    /// ```
    pub fn reply_to(mut self, message_id: impl Into<String>) -> Self {
        self.reply_to = Some(message_id.into());
        self
    }

    /// Send the template `fallback` instead, to the same customer, if the customer's 24-hour
    /// window is closed when the host checks it (only templates may be sent then). It wins over
    /// the plugin's `[sends.window_fallback]`; the template's own recipient is not used. Without
    /// either, such a send is refused (`window-closed`).
    ///
    /// ```
    /// use switchboard_sdk::send::{Send, TemplateParameter};
    ///
    /// let to = "5511987650001";
    /// let send = Send::text(to, "Your order 5531 shipped today.")
    ///     .or_template(
    ///         Send::template(to, "order_shipped", "en_US").body([TemplateParameter::text("5531")]),
    ///     )
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// // Inside the window the text goes; outside it, the template.
    /// assert_eq!(send.fallback_send().unwrap().to_cloud()["template"]["name"], "order_shipped");
    /// ```
    pub fn or_template(mut self, fallback: impl Into<Template>) -> Self {
        self.fallback = Some(fallback.into());
        self
    }

    /// The finished [`Send`]. It is not checked yet: see [`Send::validate`].
    pub fn build(self) -> Send {
        Send {
            to: self.to,
            message: self.message.into(),
            reply_to: self.reply_to,
            fallback: self.fallback,
        }
    }
}

/// The template of a template draft (its recipient aside), for [`Draft::or_template`].
impl From<Draft<Template>> for Template {
    fn from(draft: Draft<Template>) -> Self {
        draft.message
    }
}

impl<M: Into<OutgoingMessage>> From<Draft<M>> for Send {
    fn from(draft: Draft<M>) -> Self {
        draft.build()
    }
}

macro_rules! into_message {
    ($($ty:ty => $variant:expr),* $(,)?) => {
        $(impl From<$ty> for OutgoingMessage {
            fn from(message: $ty) -> Self {
                $variant(message)
            }
        })*
    };
}

into_message! {
    Text => OutgoingMessage::Text,
    Template => OutgoingMessage::Template,
    Interactive => OutgoingMessage::Interactive,
    Media => OutgoingMessage::Media,
    Location => OutgoingMessage::Location,
    Vec<Contact> => OutgoingMessage::Contacts,
    Reaction => OutgoingMessage::Reaction,
    serde_json::Value => OutgoingMessage::Raw,
    Buttons => |m| OutgoingMessage::Interactive(Interactive::Buttons(m)),
    List => |m| OutgoingMessage::Interactive(Interactive::List(m)),
    CtaUrl => |m| OutgoingMessage::Interactive(Interactive::CtaUrl(m)),
    Flow => |m| OutgoingMessage::Interactive(Interactive::Flow(m)),
}

impl Send {
    /// A send of `message` to `to`.
    pub fn new(to: impl Into<String>, message: impl Into<OutgoingMessage>) -> Send {
        Send {
            to: to.into(),
            message: message.into(),
            reply_to: None,
            fallback: None,
        }
    }

    /// The send of this send's fallback template ([`Draft::or_template`]) to its recipient,
    /// if it has one: what the host sends when [`Send::needs_open_window`] and the customer's
    /// window is closed.
    pub fn fallback_send(&self) -> Option<Send> {
        let template = self.fallback.clone()?;
        Some(Send::new(self.to.clone(), template))
    }

    /// Whether WhatsApp takes this send only inside the customer's 24-hour window: everything
    /// but a template. (A raw message counts by its `type`.)
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// assert!(Send::text("5511987650001", "Hi").build().needs_open_window());
    /// assert!(!Send::template("5511987650001", "hello_world", "en_US").build().needs_open_window());
    /// ```
    pub fn needs_open_window(&self) -> bool {
        match &self.message {
            OutgoingMessage::Template(_) => false,
            OutgoingMessage::Raw(raw) => {
                raw.get("type").and_then(|t| t.as_str()) != Some("template")
            }
            _ => true,
        }
    }

    /// A text message.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::text("5511987650001", "See https://example.com/hours").preview_url(true).build();
    /// assert_eq!(send.to_cloud()["text"]["preview_url"], true);
    /// ```
    pub fn text(to: impl Into<String>, body: impl Into<String>) -> Draft<Text> {
        Draft::new(
            to,
            Text {
                body: body.into(),
                preview_url: false,
            },
        )
    }

    /// A template message (name and language code); add parameters with the draft's methods.
    ///
    /// ```
    /// use switchboard_sdk::send::{ButtonSubType, Send, TemplateParameter as P};
    ///
    /// let send = Send::template("5511987650001", "order_update", "pt_BR")
    ///     .header([P::image(switchboard_sdk::send::MediaSource::link("https://example.com/box.png"))])
    ///     .body([P::text("5531"), P::currency("R$ 10,00", "BRL", 10_000)])
    ///     .button(ButtonSubType::QuickReply, 0, [P::payload("track-5531")])
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// let body = send.to_onprem(Some("ns-1")).unwrap();
    /// assert_eq!(body["template"]["language"]["policy"], "deterministic");
    /// ```
    pub fn template(
        to: impl Into<String>,
        name: impl Into<String>,
        language: impl Into<String>,
    ) -> Draft<Template> {
        Draft::new(
            to,
            Template {
                name: name.into(),
                language: language.into(),
                namespace: None,
                components: Vec::new(),
            },
        )
    }

    /// Reply buttons (one to three) under `body`.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::buttons("5511987650001", "Pick one").button("yes", "Yes").button("no", "No").build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn buttons(to: impl Into<String>, body: impl Into<String>) -> Draft<Buttons> {
        Draft::new(
            to,
            Buttons {
                header: None,
                body: body.into(),
                footer: None,
                buttons: Vec::new(),
            },
        )
    }

    /// A list under `body`, opened by a button labelled `button`.
    ///
    /// ```
    /// use switchboard_sdk::send::{Row, Section, Send};
    ///
    /// // One section, rows added directly:
    /// let simple = Send::list("5511987650001", "Which day?", "Choose")
    ///     .row("mon", "Monday")
    ///     .row("tue", "Tuesday")
    ///     .build();
    /// assert!(simple.validate().is_ok());
    ///
    /// // Several sections, each with a title:
    /// let send = Send::list("5511987650001", "Which slot?", "Slots")
    ///     .section(Section::new("Morning").row(Row::new("m9", "9:00").description("with Ana")))
    ///     .section(Section::new("Afternoon").row(Row::new("a14", "14:00")))
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn list(
        to: impl Into<String>,
        body: impl Into<String>,
        button: impl Into<String>,
    ) -> Draft<List> {
        Draft::new(
            to,
            List {
                header: None,
                body: body.into(),
                footer: None,
                button: button.into(),
                sections: Vec::new(),
            },
        )
    }

    /// A button labelled `display_text` that opens `url`, under `body`.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::cta_url("5511987650001", "Track your order", "Track", "https://example.com/t/5531")
    ///     .footer("Updated hourly")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn cta_url(
        to: impl Into<String>,
        body: impl Into<String>,
        display_text: impl Into<String>,
        url: impl Into<String>,
    ) -> Draft<CtaUrl> {
        Draft::new(
            to,
            CtaUrl {
                header: None,
                body: body.into(),
                footer: None,
                display_text: display_text.into(),
                url: url.into(),
            },
        )
    }

    /// A flow opened by a button labelled `flow_cta`, starting at the flow's data endpoint
    /// (the draft's `navigate` opens a screen instead).
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::flow("5511987650001", "Book a table", "1234567890", "Book")
    ///     .navigate("WELCOME", Some(serde_json::json!({ "party": 2 })))
    ///     .flow_token("booking-77")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn flow(
        to: impl Into<String>,
        body: impl Into<String>,
        flow_id: impl Into<String>,
        flow_cta: impl Into<String>,
    ) -> Draft<Flow> {
        Draft::new(
            to,
            Flow {
                header: None,
                body: body.into(),
                footer: None,
                flow_id: flow_id.into(),
                flow_cta: flow_cta.into(),
                flow_token: None,
                action: FlowAction::DataExchange,
            },
        )
    }

    /// A media message of `kind`.
    ///
    /// ```
    /// use switchboard_sdk::send::{MediaKind, MediaSource, Send};
    ///
    /// let send = Send::media("5511987650001", MediaKind::Document, MediaSource::link("https://example.com/menu.pdf"))
    ///     .caption("Our menu")
    ///     .filename("menu.pdf")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn media(to: impl Into<String>, kind: MediaKind, source: MediaSource) -> Draft<Media> {
        Draft::new(
            to,
            Media {
                kind,
                source,
                caption: None,
                filename: None,
            },
        )
    }

    /// An image.
    ///
    /// ```
    /// use switchboard_sdk::send::{MediaSource, Send};
    ///
    /// let send = Send::image("5511987650001", MediaSource::id("1234")).caption("The shop").build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn image(to: impl Into<String>, source: MediaSource) -> Draft<Media> {
        Send::media(to, MediaKind::Image, source)
    }

    /// A video.
    ///
    /// ```
    /// use switchboard_sdk::send::{MediaSource, Send};
    ///
    /// let send = Send::video("5511987650001", MediaSource::link("https://example.com/tour.mp4")).build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn video(to: impl Into<String>, source: MediaSource) -> Draft<Media> {
        Send::media(to, MediaKind::Video, source)
    }

    /// Audio (no caption).
    ///
    /// ```
    /// use switchboard_sdk::send::{MediaSource, Send};
    ///
    /// let send = Send::audio("5511987650001", MediaSource::id("5678")).build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn audio(to: impl Into<String>, source: MediaSource) -> Draft<Media> {
        Send::media(to, MediaKind::Audio, source)
    }

    /// A document, with the file name the customer sees.
    ///
    /// ```
    /// use switchboard_sdk::send::{MediaSource, Send};
    ///
    /// let send = Send::document("5511987650001", MediaSource::id("9012")).filename("invoice.pdf").build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn document(to: impl Into<String>, source: MediaSource) -> Draft<Media> {
        Send::media(to, MediaKind::Document, source)
    }

    /// A sticker (no caption).
    ///
    /// ```
    /// use switchboard_sdk::send::{MediaSource, Send};
    ///
    /// let send = Send::sticker("5511987650001", MediaSource::link("https://example.com/hi.webp")).build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn sticker(to: impl Into<String>, source: MediaSource) -> Draft<Media> {
        Send::media(to, MediaKind::Sticker, source)
    }

    /// A location pin.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::location("5511987650001", 52.37, 4.89)
    ///     .name("The shop")
    ///     .address("Damrak 1, Amsterdam")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn location(to: impl Into<String>, latitude: f64, longitude: f64) -> Draft<Location> {
        Draft::new(
            to,
            Location {
                latitude,
                longitude,
                name: None,
                address: None,
            },
        )
    }

    /// Contact cards; add them with the draft's `contact`.
    ///
    /// ```
    /// use switchboard_sdk::send::{Contact, Send};
    ///
    /// let send = Send::contacts("5511987650001")
    ///     .contact(Contact::new("Support").phone("+31 20 555 0100"))
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn contacts(to: impl Into<String>) -> Draft<Vec<Contact>> {
        Draft::new(to, Vec::new())
    }

    /// A reaction with `emoji` to the message `message_id`; an empty emoji removes it.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let like = Send::reaction("5511987650001", "wamid.M1", "👍").build();
    /// let undo = Send::reaction("5511987650001", "wamid.M1", "").build();
    /// assert!(like.validate().is_ok() && undo.validate().is_ok());
    /// ```
    pub fn reaction(
        to: impl Into<String>,
        message_id: impl Into<String>,
        emoji: impl Into<String>,
    ) -> Draft<Reaction> {
        Draft::new(
            to,
            Reaction {
                message_id: message_id.into(),
                emoji: emoji.into(),
            },
        )
    }

    /// A message object of the WhatsApp API as JSON (with its `type`), for what this model does
    /// not cover; rendering sets `to`.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::raw("5511987650001", serde_json::json!({
    ///     "type": "interactive",
    ///     "interactive": { "type": "location_request_message", "body": { "text": "Where are you?" },
    ///                      "action": { "name": "send_location" } }
    /// })).build();
    /// assert!(send.validate().is_ok());
    /// assert_eq!(send.to_cloud()["to"], "5511987650001");
    /// ```
    pub fn raw(to: impl Into<String>, message: serde_json::Value) -> Draft<serde_json::Value> {
        Draft::new(to, message)
    }
}

impl Draft<Text> {
    /// Show a preview of the first URL in the body.
    pub fn preview_url(mut self, preview: bool) -> Self {
        self.message.preview_url = preview;
        self
    }
}

impl Draft<Template> {
    /// The On-Premises namespace of the template, instead of the host's default.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::template("5511987650001", "hello", "en_US").namespace("ns-2").build();
    /// assert_eq!(send.to_onprem(Some("ns-1")).unwrap()["template"]["namespace"], "ns-2");
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.message.namespace = Some(namespace.into());
        self
    }

    /// Add a component with its parameters.
    ///
    /// ```
    /// use switchboard_sdk::send::{ComponentKind, Send, TemplateParameter};
    ///
    /// let send = Send::template("5511987650001", "receipt", "en_US")
    ///     .component(ComponentKind::Body, [TemplateParameter::date_time("May 1, 2026")])
    ///     .build();
    /// assert_eq!(send.to_cloud()["template"]["components"][0]["type"], "body");
    /// ```
    pub fn component(
        mut self,
        kind: ComponentKind,
        parameters: impl IntoIterator<Item = TemplateParameter>,
    ) -> Self {
        self.message.components.push(TemplateComponent {
            kind,
            parameters: parameters.into_iter().collect(),
        });
        self
    }

    /// Parameters of the header.
    pub fn header(self, parameters: impl IntoIterator<Item = TemplateParameter>) -> Self {
        self.component(ComponentKind::Header, parameters)
    }

    /// Parameters of the body.
    pub fn body(self, parameters: impl IntoIterator<Item = TemplateParameter>) -> Self {
        self.component(ComponentKind::Body, parameters)
    }

    /// Parameters of the button at `index` (from 0).
    pub fn button(
        self,
        sub_type: ButtonSubType,
        index: u8,
        parameters: impl IntoIterator<Item = TemplateParameter>,
    ) -> Self {
        self.component(ComponentKind::Button { sub_type, index }, parameters)
    }
}

impl Draft<Buttons> {
    /// Add a button labelled `title` that answers with `id`.
    pub fn button(mut self, id: impl Into<String>, title: impl Into<String>) -> Self {
        self.message.buttons.push(ReplyButton::new(id, title));
        self
    }

    /// Set the header.
    ///
    /// ```
    /// use switchboard_sdk::send::{Header, MediaSource, Send};
    ///
    /// let send = Send::buttons("5511987650001", "Is this your order?")
    ///     .header(Header::Image(MediaSource::id("1234")))
    ///     .footer("Reply within a day")
    ///     .button("yes", "Yes")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn header(mut self, header: Header) -> Self {
        self.message.header = Some(header);
        self
    }

    /// Set the footer.
    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.message.footer = Some(footer.into());
        self
    }
}

impl Draft<List> {
    /// Add a section.
    pub fn section(mut self, section: Section) -> Self {
        self.message.sections.push(section);
        self
    }

    /// Add a row to the last section (to a new untitled one if there is none).
    pub fn row(mut self, id: impl Into<String>, title: impl Into<String>) -> Self {
        let row = Row::new(id, title);
        match self.message.sections.last_mut() {
            Some(section) => section.rows.push(row),
            None => self.message.sections.push(Section::untitled().row(row)),
        }
        self
    }

    /// Set the text header.
    ///
    /// ```
    /// use switchboard_sdk::send::Send;
    ///
    /// let send = Send::list("5511987650001", "Which day?", "Choose")
    ///     .header("Opening hours")
    ///     .footer("Closed on holidays")
    ///     .row("mon", "Monday")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn header(mut self, header: impl Into<String>) -> Self {
        self.message.header = Some(header.into());
        self
    }

    /// Set the footer.
    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.message.footer = Some(footer.into());
        self
    }
}

impl Draft<CtaUrl> {
    /// Set the header.
    ///
    /// ```
    /// use switchboard_sdk::send::{Header, MediaSource, Send};
    ///
    /// let send = Send::cta_url("5511987650001", "Our new menu", "Open", "https://example.com/menu")
    ///     .header(Header::Video(MediaSource::link("https://example.com/menu.mp4")))
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn header(mut self, header: Header) -> Self {
        self.message.header = Some(header);
        self
    }

    /// Set the footer.
    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.message.footer = Some(footer.into());
        self
    }
}

impl Draft<Flow> {
    /// Open `screen` with this initial data (a JSON object).
    pub fn navigate(mut self, screen: impl Into<String>, data: Option<serde_json::Value>) -> Self {
        self.message.action = FlowAction::Navigate {
            screen: screen.into(),
            data,
        };
        self
    }

    /// Set the token that comes back with the answer.
    pub fn flow_token(mut self, token: impl Into<String>) -> Self {
        self.message.flow_token = Some(token.into());
        self
    }

    /// Set the header.
    ///
    /// ```
    /// use switchboard_sdk::send::{Header, Send};
    ///
    /// let send = Send::flow("5511987650001", "Tell us how we did", "777", "Start")
    ///     .header(Header::Text("Survey".into()))
    ///     .footer("Two minutes")
    ///     .build();
    /// assert!(send.validate().is_ok());
    /// ```
    pub fn header(mut self, header: Header) -> Self {
        self.message.header = Some(header);
        self
    }

    /// Set the footer.
    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.message.footer = Some(footer.into());
        self
    }
}

impl Draft<Media> {
    /// Set the caption (not for audio and sticker).
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.message.caption = Some(caption.into());
        self
    }

    /// Set the file name (documents only).
    pub fn filename(mut self, filename: impl Into<String>) -> Self {
        self.message.filename = Some(filename.into());
        self
    }
}

impl Draft<Location> {
    /// Set the place's name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.message.name = Some(name.into());
        self
    }

    /// Set the place's address.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.message.address = Some(address.into());
        self
    }
}

impl Draft<Vec<Contact>> {
    /// Add a contact card.
    pub fn contact(mut self, contact: Contact) -> Self {
        self.message.push(contact);
        self
    }
}
