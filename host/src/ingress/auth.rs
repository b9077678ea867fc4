//! Keeping strangers out: client address allow-lists, secret tokens, and the Cloud API's
//! `X-Hub-Signature-256`. Secrets are compared in constant time; a failure says no more than
//! 401 or 403.

use std::net::IpAddr;

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{EndpointConfig, EndpointKind};

/// A webhook endpoint, ready to check requests.
pub struct Endpoint {
    pub name: String,
    pub path: String,
    pub kind: EndpointKind,
    token: Option<String>,
    allow_ips: Vec<IpNet>,
    app_secret: Option<Vec<u8>>,
    verify_token: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 403: the client address is not allowed.
    Address,
    /// 401: missing or wrong token or signature.
    Credentials,
}

impl Denied {
    /// The HTTP status to answer.
    pub fn status(self) -> StatusCode {
        match self {
            Denied::Address => StatusCode::FORBIDDEN,
            Denied::Credentials => StatusCode::UNAUTHORIZED,
        }
    }
}

fn secret(var: &Option<String>, what: &str, endpoint: &str) -> anyhow::Result<Option<String>> {
    var.as_ref()
        .map(|v| {
            std::env::var(v)
                .ok()
                .filter(|s| !s.is_empty())
                .with_context(|| format!("endpoint {endpoint}: {what} names {v}, which is not set"))
        })
        .transpose()
}

impl Endpoint {
    /// The default On-Premises endpoint of `[server] webhook_path`: no authentication.
    pub fn open(path: &str) -> Endpoint {
        Endpoint {
            name: "default".into(),
            path: path.into(),
            kind: EndpointKind::Onprem,
            token: None,
            allow_ips: Vec::new(),
            app_secret: None,
            verify_token: None,
        }
    }

    /// An endpoint of `[[server.endpoints]]`, with its secrets read from the environment.
    pub fn from_config(c: &EndpointConfig) -> anyhow::Result<Endpoint> {
        Ok(Endpoint {
            name: c.name.clone(),
            path: c.path.clone(),
            kind: c.kind,
            token: secret(&c.token_env, "token_env", &c.name)?,
            allow_ips: c.allow_ips.clone(),
            app_secret: secret(&c.app_secret_env, "app_secret_env", &c.name)?
                .map(String::into_bytes),
            verify_token: secret(&c.verify_token_env, "verify_token_env", &c.name)?,
        })
    }

    /// Whether anything guards this endpoint.
    pub fn is_guarded(&self) -> bool {
        self.token.is_some() || !self.allow_ips.is_empty() || self.app_secret.is_some()
    }

    /// Check a POST: the client's address, the token (from the path, the `token` query
    /// parameter or the `X-Switchboard-Token` header) and, on Cloud endpoints, the signature of
    /// the raw body.
    pub fn check(
        &self,
        client: IpAddr,
        path_token: Option<&str>,
        query_token: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Denied> {
        self.check_address(client)?;
        if let Some(expected) = &self.token {
            let header = headers
                .get("x-switchboard-token")
                .and_then(|v| v.to_str().ok());
            let given = path_token.or(query_token).or(header).unwrap_or("");
            if !equal(given.as_bytes(), expected.as_bytes()) {
                return Err(Denied::Credentials);
            }
        }
        if let Some(secret) = &self.app_secret {
            let signature = headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("sha256="))
                .and_then(|hex_sig| hex::decode(hex_sig).ok())
                .ok_or(Denied::Credentials)?;
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Denied::Credentials)?;
            mac.update(body);
            mac.verify_slice(&signature)
                .map_err(|_| Denied::Credentials)?;
        }
        Ok(())
    }

    /// Check the client address alone.
    pub fn check_address(&self, client: IpAddr) -> Result<(), Denied> {
        let client = canonical(client);
        if self.allow_ips.is_empty() || self.allow_ips.iter().any(|net| net.contains(&client)) {
            Ok(())
        } else {
            Err(Denied::Address)
        }
    }

    /// The Cloud API's subscription handshake: the challenge when mode and token match.
    pub fn verify_subscription(
        &self,
        mode: Option<&str>,
        token: Option<&str>,
        challenge: Option<&str>,
    ) -> Option<String> {
        let expected = self.verify_token.as_ref()?;
        let ok =
            mode == Some("subscribe") && equal(token.unwrap_or("").as_bytes(), expected.as_bytes());
        ok.then(|| challenge.unwrap_or("").to_string())
    }
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// IPv4 clients on a dual-stack socket show up as `::ffff:a.b.c.d`; compare them as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            name: "t".into(),
            path: "/t".into(),
            kind: EndpointKind::Cloud,
            token: Some("s3cret".into()),
            allow_ips: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            app_secret: Some(b"appsecret".to_vec()),
            verify_token: Some("vt".into()),
        }
    }

    fn signed(body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"appsecret").unwrap();
        mac.update(body);
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
                .parse()
                .unwrap(),
        );
        h
    }

    #[test]
    fn address_token_and_signature_are_all_checked() {
        let e = endpoint();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let body = b"{}";
        assert_eq!(
            e.check(ip, Some("s3cret"), None, &signed(body), body),
            Ok(())
        );
        assert_eq!(
            e.check(ip, None, Some("s3cret"), &signed(body), body),
            Ok(())
        );
        let mut with_header = signed(body);
        with_header.insert("x-switchboard-token", "s3cret".parse().unwrap());
        assert_eq!(e.check(ip, None, None, &with_header, body), Ok(()));
        assert_eq!(
            e.check(
                "192.168.1.1".parse().unwrap(),
                Some("s3cret"),
                None,
                &signed(body),
                body
            ),
            Err(Denied::Address)
        );
        assert_eq!(
            e.check(
                "::ffff:10.0.0.1".parse().unwrap(),
                Some("s3cret"),
                None,
                &signed(body),
                body
            ),
            Ok(())
        );
        assert_eq!(
            e.check(ip, Some("s3cre"), None, &signed(body), body),
            Err(Denied::Credentials)
        );
        assert_eq!(
            e.check(ip, None, None, &signed(body), body),
            Err(Denied::Credentials)
        );
        assert_eq!(
            e.check(ip, Some("s3cret"), None, &signed(b"{} "), body),
            Err(Denied::Credentials)
        );
        assert_eq!(
            e.check(ip, Some("s3cret"), None, &HeaderMap::new(), body),
            Err(Denied::Credentials)
        );
    }

    #[test]
    fn subscription_handshake_needs_mode_and_token() {
        let e = endpoint();
        assert_eq!(
            e.verify_subscription(Some("subscribe"), Some("vt"), Some("123")),
            Some("123".into())
        );
        assert_eq!(
            e.verify_subscription(Some("subscribe"), Some("nope"), Some("123")),
            None
        );
        assert_eq!(
            e.verify_subscription(Some("unsubscribe"), Some("vt"), Some("123")),
            None
        );
        assert_eq!(
            Endpoint::open("/x").verify_subscription(Some("subscribe"), Some(""), Some("1")),
            None
        );
    }
}
