//! The Cloud API: `POST {base_url}/{phone-number-id}/messages` with a Bearer token.

use anyhow::Context;
use hyper::Method;
use hyper::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;

use super::TextMessage;
use crate::config::CloudApiConfig;
use crate::http_client::{Endpoint, Http, Response};

/// A client of the Cloud API.
pub struct CloudClient {
    http: Http,
    base_url: String,
    phone_number_id: Option<String>,
    auth: HeaderValue,
}

impl CloudClient {
    /// A client for `[whatsapp.cloud]`.
    pub fn new(http: &Http, config: &CloudApiConfig) -> anyhow::Result<CloudClient> {
        Ok(CloudClient {
            http: http.clone(),
            base_url: config.base_url.trim_end_matches('/').to_string(),
            phone_number_id: config.phone_number_id.clone(),
            auth: HeaderValue::try_from(format!("Bearer {}", config.token()?))
                .context("[whatsapp.cloud] token is not a valid header value")?,
        })
    }

    /// Send a text message from `number` (or the configured one).
    pub async fn send_text(
        &self,
        number: Option<&str>,
        to: &str,
        body: &str,
        quote: Option<&str>,
    ) -> anyhow::Result<Response> {
        let message = TextMessage::cloud(to, body, quote);
        self.post(number, &message).await
    }

    /// Send a rendered message body from `number` (or the configured one).
    pub async fn send_message(&self, number: Option<&str>, body: &str) -> anyhow::Result<Response> {
        let body: &serde_json::value::RawValue = serde_json::from_str(body)?;
        self.post(number, &body).await
    }

    /// Mark an inbound message read, showing "typing…" until the reply when asked.
    pub async fn mark_read(
        &self,
        number: Option<&str>,
        message_id: &str,
        typing_indicator: bool,
    ) -> anyhow::Result<Response> {
        let mut read = switchboard_sdk::send::MarkRead::new(message_id);
        if typing_indicator {
            read = read.typing_indicator();
        }
        self.post(number, &read.to_cloud()).await
    }

    async fn post(&self, number: Option<&str>, body: &impl Serialize) -> anyhow::Result<Response> {
        let number = number.or(self.phone_number_id.as_deref()).context(
            "the notification carries no phone number id and [whatsapp.cloud] sets none",
        )?;
        let url = Endpoint::parse(&format!("{}/{number}/messages", self.base_url))?;
        self.http
            .send(
                Method::POST,
                &url,
                &[(AUTHORIZATION, self.auth.clone())],
                serde_json::to_vec(body)?,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn text_messages_as_the_cloud_api_takes_them() {
        let plain = super::super::TextMessage::cloud("1631", "Hi", None);
        assert_eq!(
            serde_json::to_value(plain).unwrap(),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "1631",
                "type": "text",
                "text": { "preview_url": false, "body": "Hi" }
            })
        );
        let quoting = super::super::TextMessage::cloud("1631", "Hi", Some("wamid.Q"));
        assert_eq!(
            serde_json::to_value(quoting).unwrap()["context"],
            json!({ "message_id": "wamid.Q" })
        );
    }
}
