//! The WhatsApp Business API as a client: login, send text, mark read.

pub mod onprem;

pub use onprem::OnPremClient;
