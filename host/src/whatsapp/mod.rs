//! The WhatsApp Business APIs as a client: send text, mark read. The On-Premises API serves
//! notifications that came in on `onprem` endpoints, the Cloud API those of `cloud` endpoints.

pub mod cloud;
mod number;
pub mod onprem;

use serde::{Deserialize, Serialize};

use crate::config::WhatsAppConfig;
use crate::http_client::{Http, Response};

/// Which API a reply or mark-read goes through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "api", rename_all = "lowercase")]
pub enum Via {
    /// The On-Premises API of `[whatsapp]`.
    #[default]
    Onprem,
    /// The Cloud API of `[whatsapp.cloud]`, from this business number (or the configured one).
    Cloud {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone_number_id: Option<String>,
    },
}

/// The configured WhatsApp APIs.
pub struct WhatsApp {
    onprem: Option<onprem::OnPremClient>,
    cloud: Option<cloud::CloudClient>,
}

impl WhatsApp {
    /// Clients for what `[whatsapp]` configures.
    pub fn new(http: &Http, config: Option<&WhatsAppConfig>) -> anyhow::Result<WhatsApp> {
        let onprem = match config {
            Some(c) if c.base_url.is_some() => Some(onprem::OnPremClient::new(http, c)?),
            _ => None,
        };
        let cloud = config
            .and_then(|c| c.cloud.as_ref())
            .map(|c| cloud::CloudClient::new(http, c))
            .transpose()?;
        Ok(WhatsApp { onprem, cloud })
    }

    /// Whether replies can go out through `via`.
    pub fn supports(config: Option<&WhatsAppConfig>, via: &Via) -> bool {
        match via {
            Via::Onprem => config.is_some_and(|c| c.base_url.is_some()),
            Via::Cloud { .. } => config.is_some_and(|c| c.cloud.is_some()),
        }
    }

    /// Send a text message.
    pub async fn send_text(
        &self,
        via: &Via,
        to: &str,
        body: &str,
        quote: Option<&str>,
    ) -> anyhow::Result<Response> {
        match via {
            Via::Onprem => self.onprem()?.send_text(to, body, quote).await,
            Via::Cloud { phone_number_id } => {
                self.cloud()?
                    .send_text(phone_number_id.as_deref(), to, body, quote)
                    .await
            }
        }
    }

    /// Send a message whose request body is already rendered for `via`'s API.
    pub async fn send_message(&self, via: &Via, body: &str) -> anyhow::Result<Response> {
        match via {
            Via::Onprem => self.onprem()?.send_message(body).await,
            Via::Cloud { phone_number_id } => {
                self.cloud()?
                    .send_message(phone_number_id.as_deref(), body)
                    .await
            }
        }
    }

    /// Mark an inbound message read, with "typing…" when asked (Cloud API only).
    pub async fn mark_read(
        &self,
        via: &Via,
        message_id: &str,
        typing_indicator: bool,
    ) -> anyhow::Result<Response> {
        match via {
            Via::Onprem => self.onprem()?.mark_read(message_id).await,
            Via::Cloud { phone_number_id } => {
                self.cloud()?
                    .mark_read(phone_number_id.as_deref(), message_id, typing_indicator)
                    .await
            }
        }
    }

    fn onprem(&self) -> anyhow::Result<&onprem::OnPremClient> {
        self.onprem.as_ref().ok_or_else(|| {
            anyhow::anyhow!("no On-Premises API configured: set [whatsapp] base_url")
        })
    }

    fn cloud(&self) -> anyhow::Result<&cloud::CloudClient> {
        self.cloud
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no Cloud API configured: add [whatsapp.cloud]"))
    }
}

/// A text message, as either API takes it: they differ in the Cloud API's `messaging_product`
/// and in where `preview_url` goes.
#[derive(Serialize)]
struct TextMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    messaging_product: Option<&'static str>,
    recipient_type: &'static str,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview_url: Option<bool>,
    text: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Quote<'a>>,
}

#[derive(Serialize)]
struct Text<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    preview_url: Option<bool>,
    body: &'a str,
}

/// `context` of a message that quotes another.
#[derive(Serialize)]
struct Quote<'a> {
    message_id: &'a str,
}

impl<'a> TextMessage<'a> {
    fn onprem(to: &'a str, body: &'a str, quote: Option<&'a str>) -> TextMessage<'a> {
        TextMessage {
            preview_url: Some(false),
            ..TextMessage::new(to, body, quote)
        }
    }

    fn cloud(to: &'a str, body: &'a str, quote: Option<&'a str>) -> TextMessage<'a> {
        let mut message = TextMessage::new(to, body, quote);
        message.messaging_product = Some("whatsapp");
        message.text.preview_url = Some(false);
        message
    }

    /// The fields both APIs share.
    fn new(to: &'a str, body: &'a str, quote: Option<&'a str>) -> TextMessage<'a> {
        TextMessage {
            messaging_product: None,
            recipient_type: "individual",
            to,
            kind: "text",
            preview_url: None,
            text: Text {
                preview_url: None,
                body,
            },
            context: quote.map(|message_id| Quote { message_id }),
        }
    }
}
