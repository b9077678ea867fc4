//! Slow and lying clients, on real sockets: heads sent a byte at a time, bodies shorter than
//! their `Content-Length`, idle keep-alive connections, bodies announced too large, and the
//! connection cap.

use std::time::{Duration, Instant};

use switchboard_tests::{Fake, Server, ServerSetup, eventually, target_dir, text_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on how long a test waits for the server to cut a connection (its timeouts are 1 s).
const CUT_WITHIN: Duration = Duration::from_secs(10);

async fn server(dir: &std::path::Path, sink: &Fake, server_extra: &str) -> Server {
    let mut setup = ServerSetup::echo(dir, sink);
    setup.server_extra = server_extra.to_string();
    setup.start().await
}

/// Send `head` a byte every 100 ms, then keep the connection open without sending; returns
/// once the server closes it (or `None` if it did not within [`CUT_WITHIN`]).
async fn trickle_until_cut(stream: &mut TcpStream, head: &[u8]) -> Option<Duration> {
    let start = Instant::now();
    let mut rest = head;
    let mut buf = [0u8; 1024];
    while start.elapsed() < CUT_WITHIN {
        if let Some((first, tail)) = rest.split_first() {
            if stream.write_all(&[*first]).await.is_err() {
                return Some(start.elapsed());
            }
            rest = tail;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => panic!(
                "the server answered a request it did not fully receive: {}",
                String::from_utf8_lossy(&buf)
            ),
            Err(_) => {}
        }
    }
    None
}

/// Read everything until the server closes the connection (bounded by [`CUT_WITHIN`]).
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(CUT_WITHIN, stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The metrics page.
async fn metrics(server: &Server) -> String {
    server.get_text("/metrics").await
}

fn value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("switchboard_{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    // The idle timeout is long: only the header timeout can cut these connections.
    let server = server(
        dir.path(),
        &sink,
        "header_timeout = \"1s\"\nidle_timeout = \"5m\"\n",
    )
    .await;
    let head = b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let cut = trickle_until_cut(&mut slow, head).await;
    assert!(
        cut.is_some(),
        "a head trickled for {CUT_WITHIN:?} was never cut:\n{}",
        server.log()
    );
    // A connection that sends nothing at all is cut as well.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_to_close(&mut silent).await.is_some(),
        "a silent connection was kept"
    );

    let m = metrics(&server).await;
    assert_eq!(value(&m, "slow_clients_total{phase=\"header\"}"), 2, "{m}");
    assert!(
        server
            .log()
            .contains("request head not received within header_timeout"),
        "{}",
        server.log()
    );
    // The server still serves.
    let (status, _) = server.post(&text_message("wamid.after-slow")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_answered_408_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = server(dir.path(), &sink, "body_timeout = \"1s\"\n").await;
    let mut liar = TcpStream::connect(server.addr).await.unwrap();
    liar.write_all(
        b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"messages\":",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut liar)
        .await
        .unwrap_or_else(|| panic!("the lying client was never cut:\n{}", server.log()));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"errors\"") && answer.contains("body_timeout"),
        "{answer}"
    );

    let m = metrics(&server).await;
    assert_eq!(value(&m, "slow_clients_total{phase=\"body\"}"), 1, "{m}");
    assert_eq!(value(&m, "notifications_accepted_total"), 0, "{m}");
    assert_eq!(
        value(
            &m,
            "webhook_requests_total{endpoint=\"default\",status=\"408\"}"
        ),
        1,
        "{m}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    // The header timeout is long: only the idle timeout can cut this connection.
    let server = server(
        dir.path(),
        &sink,
        "idle_timeout = \"1s\"\nheader_timeout = \"5m\"\n",
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut idle)
        .await
        .unwrap_or_else(|| panic!("the idle connection was kept:\n{}", server.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "kept alive, then closed for idling: {answer}"
    );
    let m = metrics(&server).await;
    assert_eq!(value(&m, "idle_connections_closed_total"), 1, "{m}");
}

#[tokio::test]
async fn a_content_length_above_max_body_bytes_is_answered_413_before_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = server(dir.path(), &sink, "max_body_bytes = 1000\n").await;
    for expect in ["expect: 100-continue\r\n", ""] {
        let mut big = TcpStream::connect(server.addr).await.unwrap();
        big.write_all(
            format!(
                "POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000000\r\n{expect}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // No body is sent: the answer must not wait for it.
        let answer = read_to_close(&mut big).await.unwrap_or_else(|| {
            panic!("no answer without the body ({expect:?}):\n{}", server.log())
        });
        assert!(answer.starts_with("HTTP/1.1 413"), "{expect:?}: {answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(
            answer.contains("{\"errors\":[{\"code\":413") && answer.contains("max_body_bytes"),
            "{answer}"
        );
    }
    let m = metrics(&server).await;
    assert_eq!(value(&m, "requests_too_large_total"), 2, "{m}");
    assert_eq!(
        value(
            &m,
            "webhook_requests_total{endpoint=\"default\",status=\"413\"}"
        ),
        2,
        "{m}"
    );
}

#[tokio::test]
async fn with_every_slot_taken_by_slow_clients_a_webhook_waits_and_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Fake::start().await;
    let server = server(
        dir.path(),
        &sink,
        "max_connections = 4\nheader_timeout = \"1s\"\n",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /webhook HTTP/1.1\r\n").await.unwrap();
        slow.push(s);
    }
    // Let the server accept them before the webhook queues behind them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server.post(&text_message("wamid.behind-the-slow")).await;
    assert_eq!(status, 200, "{body}\n{}", server.log());
    assert!(
        eventually(Duration::from_secs(20), || sink.received().len() == 1).await,
        "{}",
        server.log()
    );
    for mut s in slow {
        assert!(
            read_to_close(&mut s).await.is_some(),
            "a slow client kept its slot"
        );
    }
    let m = metrics(&server).await;
    assert!(value(&m, "connection_cap_reached_total") >= 1, "{m}");
    assert!(
        value(&m, "slow_clients_total{phase=\"header\"}") >= 4,
        "{m}"
    );
    assert!(
        server.log().contains("every connection slot is taken"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn over_tls_a_silent_client_and_a_slow_head_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let sink = Fake::start().await;
    let server = server(
        dir.path(),
        &sink,
        "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nheader_timeout = \"1s\"\nidle_timeout = \"5m\"\n",
    )
    .await;

    // No handshake at all.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        read_to_close(&mut silent).await.is_some(),
        "a client that never starts TLS was kept"
    );

    // A handshake, then a head a byte at a time (rustls' blocking client, on a thread).
    let addr = server.addr;
    let der = cert.cert.der().clone();
    let cut = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            "localhost".try_into().unwrap(),
        )
        .unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let start = Instant::now();
        let head = b"POST /webhook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n";
        let mut buf = [0u8; 1024];
        let mut sent = 0;
        while start.elapsed() < CUT_WITHIN {
            if sent < head.len() {
                if tls
                    .write_all(&head[sent..sent + 1])
                    .and_then(|()| tls.flush())
                    .is_err()
                {
                    return true;
                }
                sent += 1;
            }
            match tls.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => panic!("answered: {}", String::from_utf8_lossy(&buf)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(cut, "a slow head over TLS was never cut:\n{}", server.log());
    let m = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("https://{}/metrics", server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(value(&m, "slow_clients_total{phase=\"header\"}"), 2, "{m}");
}

#[tokio::test]
async fn zero_timeouts_and_cap_are_refused_at_start_naming_the_setting() {
    for setting in [
        "header_timeout = \"0s\"",
        "body_timeout = \"0s\"",
        "idle_timeout = \"0s\"",
        "dispatch_stall_timeout = \"0s\"",
        "max_connections = 0",
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("switchboard.toml"),
            format!("[server]\nlisten = \"127.0.0.1:0\"\n{setting}\n"),
        )
        .unwrap();
        let out = tokio::process::Command::new(target_dir().join("release/switchboard"))
            .current_dir(dir.path())
            .args(["serve", "--config", "switchboard.toml"])
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .expect("serve refuses at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = setting.split(' ').next().unwrap();
        assert!(!out.status.success(), "{setting} was accepted");
        assert!(
            stderr.contains(&format!("[server] {name}")),
            "{setting}: {stderr}"
        );
    }
}
