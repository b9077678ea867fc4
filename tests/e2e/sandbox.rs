//! The demo of `cargo xtask run`: `switchboard sandbox` plays the Coreapp and the destinations,
//! and a posted webhook becomes a reply, a mark-read and a forward that it records.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use switchboard_tests::{ServerSetup, fixture, free_port, http, target_dir};

/// `switchboard sandbox` on a free port, killed when dropped.
struct Sandbox {
    url: String,
    child: Child,
}

impl Sandbox {
    async fn start() -> Sandbox {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(target_dir().join("release/switchboard"))
            .args(["sandbox", "--listen", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchboard sandbox");
        let sandbox = Sandbox {
            url: format!("http://{addr}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sandbox.requests().await.is_none() {
            assert!(
                Instant::now() < deadline,
                "the sandbox did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sandbox
    }

    /// What it has received, or None while it does not answer.
    async fn requests(&self) -> Option<Vec<Value>> {
        let r = http()
            .get(format!("{}/sandbox/requests", self.url))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(requests: &[Value], role: &str, method: &str, path_prefix: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r["role"] == role
                && r["method"] == method
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(path_prefix))
        })
        .count()
}

#[tokio::test]
async fn a_posted_webhook_reaches_the_sandbox_as_a_reply_a_mark_read_and_a_forward() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start().await;
    let mut setup = ServerSetup::new(dir.path());
    setup.coreapp = Some(sandbox.url.clone());
    setup.destinations = ["sales", "support", "crm"]
        .iter()
        .map(|d| (d.to_string(), format!("{}/destinations/{d}", sandbox.url)))
        .collect();
    let server = setup.start().await;
    assert_eq!(
        server.post(&fixture("e1-text.json")).await.0,
        StatusCode::OK
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let requests = loop {
        let requests = sandbox.requests().await.unwrap_or_default();
        if count(&requests, "onprem", "POST", "/v1/messages") == 1
            && count(&requests, "onprem", "PUT", "/v1/messages/") == 1
            && count(&requests, "destination", "POST", "/destinations/support") == 1
        {
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox did not record a reply, a mark-read and a forward within 20 s: {requests:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reply = requests
        .iter()
        .find(|r| r["path"] == "/v1/messages" && r["method"] == "POST")
        .unwrap();
    assert_eq!(reply["body"]["to"], "5511987650001");
    assert_eq!(reply["body"]["type"], "text");
    let forward = requests
        .iter()
        .find(|r| r["role"] == "destination")
        .unwrap();
    assert_eq!(forward["body"]["kind"], "message");
}
