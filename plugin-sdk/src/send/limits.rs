//! WhatsApp's limits on what a send carries, as [`Send::validate`](super::Send::validate)
//! checks them. Lengths count characters (Unicode scalar values), as WhatsApp does.

/// Characters of a text message's body.
pub const TEXT_BODY: usize = 4096;
/// Reply buttons in one message.
pub const BUTTONS: usize = 3;
/// Characters of a reply button's title.
pub const BUTTON_TITLE: usize = 20;
/// Characters of a reply button's id.
pub const BUTTON_ID: usize = 256;
/// Characters of the body of buttons, call-to-action URL and flow messages.
pub const INTERACTIVE_BODY: usize = 1024;
/// Characters of the body of a list.
pub const LIST_BODY: usize = 4096;
/// Characters of the footer of an interactive message.
pub const FOOTER: usize = 60;
/// Characters of the text header of an interactive message.
pub const HEADER_TEXT: usize = 60;
/// Sections of a list.
pub const LIST_SECTIONS: usize = 10;
/// Rows of a list, all sections together.
pub const LIST_ROWS: usize = 10;
/// Characters of the label of the button that opens a list.
pub const LIST_BUTTON: usize = 20;
/// Characters of a list section's title.
pub const SECTION_TITLE: usize = 24;
/// Characters of a list row's title.
pub const ROW_TITLE: usize = 24;
/// Characters of a list row's description.
pub const ROW_DESCRIPTION: usize = 72;
/// Characters of a list row's id.
pub const ROW_ID: usize = 200;
/// Characters of the label of a call-to-action URL or flow button.
pub const CTA_TEXT: usize = 20;
/// Characters of a media caption.
pub const CAPTION: usize = 1024;
