//! Secure ingress: HTTPS, authentication, bad input, the Cloud API, `register`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard_tests::{Fake, Server, ServerSetup, eventually, fixture, http};

const WAIT: Duration = Duration::from_secs(20);
/// A server whose only plugin echoes every notification to `sink`.
async fn echo_server(
    dir: &std::path::Path,
    sink: &Fake,
    server_extra: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> Server {
    let mut setup = ServerSetup::echo(dir, sink);
    setup.server_extra = server_extra.to_string();
    setup.extra = extra.to_string();
    setup.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    setup.start().await
}

fn self_signed() -> (String, String, reqwest::Certificate) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let pem = cert.cert.pem();
    (
        pem.clone(),
        cert.signing_key.serialize_pem(),
        reqwest::Certificate::from_pem(pem.as_bytes()).unwrap(),
    )
}

fn trusting(cert: reqwest::Certificate) -> reqwest::Client {
    http(); // installs the crypto provider
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_serves_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, trust_first) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let sink = Fake::start().await;
    let mut setup = ServerSetup::echo(dir.path(), &sink);
    setup.server_extra = "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n".into();
    let server = setup.start().await;
    let url = format!("https://{}/webhook", server.addr);
    let post = |client: reqwest::Client| {
        let url = url.clone();
        async move {
            client
                .post(&url)
                .header("content-type", "application/json")
                .body(fixture("e1-text.json"))
                .send()
                .await
        }
    };
    let r = post(trusting(trust_first.clone()))
        .await
        .expect("HTTPS with the first certificate");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        eventually(WAIT, || sink.received().len() == 1).await,
        "{}",
        server.log()
    );
    assert!(
        !http()
            .post(format!("http://{}/webhook", server.addr))
            .body("{}")
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false),
        "plain HTTP is not served on the TLS port"
    );

    // Renew: a new key and certificate, written under temporary names and renamed into place.
    let (cert2, key2, trust_second) = self_signed();
    for (name, text) in [("key.pem", key2), ("cert.pem", cert2)] {
        std::fs::write(dir.path().join(format!("{name}.new")), text).unwrap();
        std::fs::rename(
            dir.path().join(format!("{name}.new")),
            dir.path().join(name),
        )
        .unwrap();
    }
    let mut renewed = false;
    for _ in 0..40 {
        if post(trusting(trust_second.clone())).await.is_ok() {
            renewed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        renewed,
        "the renewed certificate is served without a restart:\n{}",
        server.log()
    );
    assert!(
        post(trusting(trust_first)).await.is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test]
async fn every_authentication_failure_is_refused_before_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let extra = r#"
[[server.endpoints]]
name = "in-path"
path = "/wa/{token}"
kind = "onprem"
token_env = "WA_TOKEN"

[[server.endpoints]]
name = "by-query-or-header"
path = "/wa2"
kind = "onprem"
token_env = "WA_TOKEN"

[[server.endpoints]]
name = "private"
path = "/wa3"
kind = "onprem"
allow_ips = ["10.0.0.0/8"]

[[server.endpoints]]
name = "private-ok"
path = "/wa4"
kind = "onprem"
allow_ips = ["127.0.0.0/8", "::1/128"]
"#;
    let server = echo_server(
        dir.path(),
        &sink,
        "",
        extra,
        &[("WA_TOKEN", "s3cret-t0ken")],
    )
    .await;
    let body = |i: usize| {
        fixture("e1-text.json").replace("ABEGVRGYdlABAgo-sKq3Yc7rN2Tz", &format!("auth-{i}"))
    };
    let with_header = |path: &str, token: &str, i: usize| {
        http()
            .post(server.url(path))
            .header("content-type", "application/json")
            .header("x-switchboard-token", token.to_string())
            .body(body(i))
            .send()
    };

    let refused = [
        (
            server.post_to("/wa/wrong-token", &body(1)).await.0,
            StatusCode::UNAUTHORIZED,
        ),
        (
            server.post_to("/wa2", &body(2)).await.0,
            StatusCode::UNAUTHORIZED,
        ),
        (
            server.post_to("/wa2?token=s3cret-t0keN", &body(3)).await.0,
            StatusCode::UNAUTHORIZED,
        ),
        (
            StatusCode::from_u16(
                with_header("/wa2", "nope", 4)
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            )
            .unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            server.post_to("/wa3", &body(5)).await.0,
            StatusCode::FORBIDDEN,
        ),
    ];
    for (i, (got, want)) in refused.iter().enumerate() {
        assert_eq!(got, want, "refusal #{i}");
    }
    let accepted = [
        server.post_to("/wa/s3cret-t0ken", &body(11)).await.0,
        server.post_to("/wa2?token=s3cret-t0ken", &body(12)).await.0,
        StatusCode::from_u16(
            with_header("/wa2", "s3cret-t0ken", 13)
                .await
                .unwrap()
                .status()
                .as_u16(),
        )
        .unwrap(),
        server.post_to("/wa4", &body(14)).await.0,
    ];
    assert!(
        accepted.iter().all(|s| *s == StatusCode::OK),
        "{accepted:?}"
    );
    assert!(
        eventually(WAIT, || sink.received().len() == 4).await,
        "{}",
        server.log()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.iter()
            .all(|id| ["auth-11", "auth-12", "auth-13", "auth-14"].contains(&id.as_str())),
        "{ids:?}"
    );
    assert_eq!(server.metric("webhooks_unauthorized_total").await, 5);
    let log = server.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .collect();
    assert_eq!(refusals.len(), 5, "each refusal is logged once:\n{log}");
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("WARN") && (l.contains("Credentials") || l.contains("Address"))),
        "{log}"
    );
    assert!(
        !log.contains("wrong-token") && !log.contains("s3cret") && !log.contains("nope"),
        "no token is logged:\n{log}"
    );
    assert_eq!(server.metric("notifications_accepted_total").await, 4);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = echo_server(
        dir.path(),
        &sink,
        "max_body_bytes = 4096\nmax_json_depth = 16\n",
        "",
        &[],
    )
    .await;
    let send = |content_type: &'static str, body: Vec<u8>| {
        let url = server.url("/webhook");
        async move {
            let r = http()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let deep = format!("{{\"messages\":{}{}}}", "[".repeat(40), "]".repeat(40));
    let cases: Vec<(&str, u16, Vec<u8>, &str)> = vec![
        (
            "too large",
            413,
            format!("{{\"pad\":\"{}\"}}", "x".repeat(5000)).into_bytes(),
            "application/json",
        ),
        (
            "wrong content type",
            415,
            fixture("e1-text.json").into_bytes(),
            "text/plain",
        ),
        ("too deep", 400, deep.into_bytes(), "application/json"),
        (
            "invalid UTF-8",
            400,
            b"{\"messages\":[{\"id\":\"\xff\xfe\"}]}".to_vec(),
            "application/json",
        ),
        ("empty", 400, Vec::new(), "application/json"),
        (
            "not an object",
            400,
            b"[1,2,3]".to_vec(),
            "application/json",
        ),
        (
            "nothing to take notifications from",
            400,
            br#"{"contacts":[{"wa_id":"SECRET-BODY-1"}],"messages":{"id":"SECRET-BODY-2"}}"#
                .to_vec(),
            "application/json",
        ),
        (
            "truncated",
            400,
            br#"{"messages":[{"id":"SECRET-BODY-3""#.to_vec(),
            "application/json",
        ),
        (
            "a string",
            400,
            br#""SECRET-BODY-4""#.to_vec(),
            "application/json",
        ),
    ];
    let reasons = [
        "the body announces 5010 bytes",
        "is not application/json",
        "nested deeper than 16",
        "not UTF-8",
        "the body is empty",
        "not a JSON object",
        "nothing to take notifications from",
        "EOF while parsing",
        "not a JSON object",
    ];
    assert_eq!(cases.len(), reasons.len());
    for (what, want, body, ct) in cases {
        let (status, text) = send(ct, body).await;
        assert_eq!(status, want, "{what}: {text}");
        if status != 413 {
            let err: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
            assert!(
                err["errors"][0]["title"].is_string() && err["errors"][0]["code"].is_number(),
                "{what}: {text}"
            );
        }
    }
    assert_eq!(
        server.metric("notifications_accepted_total").await,
        0,
        "nothing of a refused request is stored"
    );
    // Each refusal is logged once, at warn, with its reason, and nothing of the body.
    let log = server.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .collect();
    assert_eq!(refusals.len(), reasons.len(), "{log}");
    for (line, reason) in refusals.iter().zip(reasons) {
        assert!(
            line.contains("WARN") && line.contains(reason),
            "{reason:?} in {line}"
        );
    }
    assert!(
        !log.contains("SECRET-BODY") && !log.contains("is the store open"),
        "{log}"
    );
    assert_eq!(
        server.post(&fixture("e1-text.json")).await.0,
        StatusCode::OK,
        "and the server keeps serving"
    );
    assert!(eventually(WAIT, || sink.received().len() == 1).await);
}

pub(crate) fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex_encode(&mac.finalize().into_bytes()))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cloud_text() -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
                    "contacts": [{ "profile": { "name": "Kerry Fisher" }, "wa_id": "16315551181" }],
                    "messages": [{
                        "from": "16315551181",
                        "id": "wamid.ABGGFlA5Fpa",
                        "timestamp": "1504902988",
                        "type": "text",
                        "text": { "body": "this is a text message" }
                    }]
                }
            }]
        }]
    })
    .to_string()
}

#[tokio::test]
async fn a_cloud_api_text_message_is_verified_signed_and_answered_through_the_cloud_api() {
    let dir = tempfile::tempdir().unwrap();
    let graph = Fake::start().await;
    let (sales, support, crm) = (
        Fake::start().await,
        Fake::start().await,
        Fake::start().await,
    );
    let mut setup = ServerSetup::new(dir.path());
    setup.destinations = vec![
        ("sales".into(), sales.url()),
        ("support".into(), support.url()),
        ("crm".into(), crm.url()),
    ];
    setup.extra = format!(
        r#"
[whatsapp.cloud]
base_url = "{}/v21.0"
token_env = "CLOUD_TOKEN"

[[server.endpoints]]
name = "cloud"
path = "/cloud"
kind = "cloud"
app_secret_env = "APP_SECRET"
verify_token_env = "VERIFY_TOKEN"
"#,
        graph.url()
    );
    setup.env = [
        ("CLOUD_TOKEN", "EAAG-token"),
        ("APP_SECRET", "app-secret"),
        ("VERIFY_TOKEN", "verify-me"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let server = setup.start().await;

    // The subscription handshake.
    let verify = |token: &str| {
        http()
            .get(server.url(&format!(
                "/cloud?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
            )))
            .send()
    };
    let ok = verify("verify-me").await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(verify("wrong").await.unwrap().status().as_u16(), 403);

    // Unsigned and wrongly signed posts never reach a plugin.
    let body = cloud_text();
    let post = |signature: Option<String>| {
        let mut r = http()
            .post(server.url("/cloud"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(s) = signature {
            r = r.header("x-hub-signature-256", s);
        }
        r.send()
    };
    assert_eq!(post(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        post(Some(sign("not-the-secret", &body)))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(server.metric("notifications_accepted_total").await, 0);

    // A signed one flows to the plugins, and the reply goes out through the Cloud API.
    assert_eq!(
        post(Some(sign("app-secret", &body)))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(
        eventually(WAIT, || graph.received().len() == 2).await,
        "{}",
        server.log()
    );
    let calls = graph.received();
    assert!(
        calls
            .iter()
            .all(|r| r.method == Method::POST && r.path == "/v21.0/106540352242922/messages")
    );
    assert!(
        calls
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer EAAG-token"))
    );
    let reply = calls
        .iter()
        .map(|r| r.json())
        .find(|b| b["type"] == "text")
        .expect("the reply");
    assert_eq!(reply["messaging_product"], "whatsapp");
    assert_eq!(reply["to"], "16315551181");
    assert_eq!(
        reply["text"]["body"],
        "Thanks for your message! We will get back to you shortly."
    );
    let read = calls
        .iter()
        .map(|r| r.json())
        .find(|b| b["status"] == "read")
        .expect("the mark-read");
    assert_eq!(read["message_id"], "wamid.ABGGFlA5Fpa");
    // The forward carries the business number, so a receiver can route by it.
    assert!(eventually(WAIT, || support.received().len() == 1).await);
    let fwd = support.received()[0].json();
    assert_eq!(fwd["phone_number_id"], "106540352242922");
    assert_eq!(fwd["source"], "cloud");
    assert_eq!(fwd["item"]["id"], "wamid.ABGGFlA5Fpa");
}

#[tokio::test]
async fn register_points_the_coreapp_at_switchboard() {
    let dir = tempfile::tempdir().unwrap();
    let coreapp = Fake::coreapp().await;
    let mut setup = ServerSetup::new(dir.path());
    setup.example_plugins = false;
    setup.coreapp = Some(coreapp.url());
    let server = setup.start().await;

    let (ok, out) = server
        .cli(&[
            "register",
            "--url",
            "https://sb.example.com/webhook",
            "--delivered",
            "true",
            "--dry-run",
        ])
        .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("PATCH ")
            && out.contains("/v1/settings/application")
            && out.contains("https://sb.example.com/webhook"),
        "{out}"
    );
    assert!(coreapp.received().is_empty(), "--dry-run sends nothing");

    let (ok, out) = server
        .cli(&[
            "register",
            "--url",
            "https://sb.example.com/webhook",
            "--sent",
            "false",
            "--read",
            "true",
        ])
        .await;
    assert!(ok && out.contains("answered 200"), "{out}");
    let patch = coreapp
        .received()
        .into_iter()
        .find(|r| r.method == Method::PATCH)
        .expect("a PATCH");
    assert_eq!(patch.path, "/v1/settings/application");
    assert_eq!(patch.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(
        patch.json(),
        json!({ "webhooks": { "url": "https://sb.example.com/webhook", "message": { "sent": false, "read": true } } })
    );

    let (ok, out) = server.cli(&["register", "--url", "not a url"]).await;
    assert!(!ok && out.contains("absolute URL"), "{out}");
}
