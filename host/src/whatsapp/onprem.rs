//! The On-Premises API (`/v1/...`): `POST /v1/users/login` with Basic auth gives a Bearer
//! token, kept and renewed on 401.

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{Response, read, snippet};
use crate::config::WhatsAppConfig;

/// A logged-in client of one Coreapp.
pub struct OnPremClient {
    http: reqwest::Client,
    base_url: String,
    /// `{base_url}/v1/messages`, parsed once: it is called for every reply.
    messages_url: reqwest::Url,
    username: String,
    password: String,
    token: Mutex<Option<String>>,
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
    pub fn new(http: reqwest::Client, config: &WhatsAppConfig) -> anyhow::Result<OnPremClient> {
        let base_url = config
            .base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let messages_url = reqwest::Url::parse(&format!("{base_url}/v1/messages"))
            .with_context(|| format!("[whatsapp] base_url {base_url:?} is not a URL"))?;
        Ok(OnPremClient {
            http,
            base_url,
            messages_url,
            username: config.username.clone(),
            password: config.password()?,
            token: Mutex::new(None),
        })
    }

    /// `POST /v1/messages` with a text message.
    pub async fn send_text(
        &self,
        to: &str,
        body: &str,
        quote: Option<&str>,
    ) -> anyhow::Result<Response> {
        let mut message = serde_json::json!({
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "preview_url": false,
            "text": { "body": body },
        });
        if let Some(id) = quote {
            message["context"] = serde_json::json!({ "message_id": id });
        }
        self.call(Method::POST, self.messages_url.clone(), &message)
            .await
    }

    /// `PUT /v1/messages/{id}` with `{"status":"read"}`.
    pub async fn mark_read(&self, message_id: &str) -> anyhow::Result<Response> {
        let mut url = self.messages_url.clone();
        let path = format!("{}/{}", url.path(), urlencode(message_id));
        url.set_path(&path);
        self.call(Method::PUT, url, &serde_json::json!({ "status": "read" }))
            .await
    }

    /// `{base_url}{path}`.
    pub fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        let url = format!("{}{path}", self.base_url);
        reqwest::Url::parse(&url).with_context(|| format!("{url:?} is not a URL"))
    }

    /// A call with the Bearer token, logging in first, and again after a 401.
    pub async fn call(
        &self,
        method: Method,
        url: reqwest::Url,
        body: &serde_json::Value,
    ) -> anyhow::Result<Response> {
        let mut token = self.token().await?;
        for attempt in 0..2 {
            let resp = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                *self.token.lock().await = None;
                token = self.token().await?;
                continue;
            }
            return read(resp).await;
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn token(&self) -> anyhow::Result<String> {
        let mut slot = self.token.lock().await;
        if let Some(t) = &*slot {
            return Ok(t.clone());
        }
        let resp = self
            .http
            .post(format!("{}/v1/users/login", self.base_url))
            .basic_auth(&self.username, Some(&self.password))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .context("WhatsApp login failed")?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "WhatsApp login as {:?} answered {status}: {}",
                self.username,
                snippet(&text)
            );
        }
        let login: LoginResponse =
            serde_json::from_str(&text).context("unexpected WhatsApp login response")?;
        let token = login
            .users
            .into_iter()
            .next()
            .context("WhatsApp login response has no token")?
            .token;
        *slot = Some(token.clone());
        Ok(token)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
