//! The On-Premises API (`/v1/...`): `POST /v1/users/login` with Basic auth gives a Bearer
//! token, kept and renewed on 401.

use anyhow::Context;
use base64::Engine;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::TextMessage;
use crate::config::WhatsAppConfig;
use crate::http_client::{Endpoint, Http, Response, snippet};

/// A logged-in client of one Coreapp.
pub struct OnPremClient {
    http: Http,
    base_url: String,
    /// `{base_url}/v1/messages`, parsed once: it is called for every reply.
    messages_url: Endpoint,
    username: String,
    password: String,
    /// `Bearer <token>`, once logged in.
    auth: Mutex<Option<HeaderValue>>,
}

#[derive(Deserialize)]
struct LoginResponse {
    users: Vec<LoginUser>,
}

#[derive(Deserialize)]
struct LoginUser {
    token: String,
}

impl OnPremClient {
    /// A client for `[whatsapp]`; logs in on first use.
    pub fn new(http: &Http, config: &WhatsAppConfig) -> anyhow::Result<OnPremClient> {
        let base_url = config
            .base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let messages_url = Endpoint::parse(&format!("{base_url}/v1/messages"))
            .with_context(|| format!("[whatsapp] base_url {base_url:?}"))?;
        Ok(OnPremClient {
            http: http.clone(),
            base_url,
            messages_url,
            username: config.username.clone(),
            password: config.password()?,
            auth: Mutex::new(None),
        })
    }

    /// `POST /v1/messages` with a text message.
    pub async fn send_text(
        &self,
        to: &str,
        body: &str,
        quote: Option<&str>,
    ) -> anyhow::Result<Response> {
        let message = TextMessage::onprem(to, body, quote);
        self.call(Method::POST, &self.messages_url, &message).await
    }

    /// `POST /v1/messages` with a rendered message body.
    pub async fn send_message(&self, body: &str) -> anyhow::Result<Response> {
        let body: &serde_json::value::RawValue = serde_json::from_str(body)?;
        self.call(Method::POST, &self.messages_url, &body).await
    }

    /// `PUT /v1/messages/{id}` with `{"status":"read"}`.
    pub async fn mark_read(&self, message_id: &str) -> anyhow::Result<Response> {
        let url = self.messages_url.join(message_id)?;
        self.call(Method::PUT, &url, &serde_json::json!({ "status": "read" }))
            .await
    }

    /// `{base_url}{path}`.
    pub fn url(&self, path: &str) -> anyhow::Result<Endpoint> {
        Endpoint::parse(&format!("{}{path}", self.base_url))
    }

    /// A call with the Bearer token, logging in first, and again after a 401.
    pub async fn call(
        &self,
        method: Method,
        url: &Endpoint,
        body: &impl Serialize,
    ) -> anyhow::Result<Response> {
        let body = bytes::Bytes::from(serde_json::to_vec(body)?);
        let mut auth = self.auth(None).await?;
        for attempt in 0..2 {
            let resp = self
                .http
                .send(
                    method.clone(),
                    url,
                    &[(AUTHORIZATION, auth.clone())],
                    body.clone(),
                )
                .await?;
            if resp.status == StatusCode::UNAUTHORIZED && attempt == 0 {
                auth = self.auth(Some(&auth)).await?;
                continue;
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// The `Authorization` header of calls, logging in if there is none yet, or if it is still
    /// `stale` (refused with a 401). One login at a time: calls refused together wait for the
    /// first one's login and use its token, rather than each logging in (which, on a Coreapp
    /// that keeps one token per user, would refuse the others' tokens in turn).
    async fn auth(&self, stale: Option<&HeaderValue>) -> anyhow::Result<HeaderValue> {
        let mut slot = self.auth.lock().await;
        if let Some(auth) = &*slot
            && Some(auth) != stale
        {
            return Ok(auth.clone());
        }
        *slot = None;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        let resp = self
            .http
            .send(
                Method::POST,
                &self.url("/v1/users/login")?,
                &[(
                    AUTHORIZATION,
                    HeaderValue::try_from(format!("Basic {basic}"))?,
                )],
                "{}",
            )
            .await
            .context("WhatsApp login failed")?;
        if !resp.status.is_success() {
            anyhow::bail!(
                "WhatsApp login as {:?} answered {}: {}",
                self.username,
                resp.status,
                snippet(&resp.body)
            );
        }
        let login: LoginResponse =
            serde_json::from_str(&resp.body).context("unexpected WhatsApp login response")?;
        let token = login
            .users
            .into_iter()
            .next()
            .context("WhatsApp login response has no token")?
            .token;
        let auth = HeaderValue::try_from(format!("Bearer {token}"))
            .context("the WhatsApp login token is not a valid header value")?;
        *slot = Some(auth.clone());
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_quoting_reply_carries_its_context() {
        let message = super::super::TextMessage::onprem("5511", "Hi", Some("wamid.Q"));
        assert_eq!(
            serde_json::to_value(message).unwrap(),
            json!({
                "recipient_type": "individual",
                "to": "5511",
                "type": "text",
                "preview_url": false,
                "text": { "body": "Hi" },
                "context": { "message_id": "wamid.Q" }
            })
        );
    }
}
