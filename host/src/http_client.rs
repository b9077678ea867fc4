//! The HTTP client of deliveries and WhatsApp API calls: hyper's pooled client over TCP or
//! rustls (HTTP/1.1, keep-alive), with URLs parsed once into [`Endpoint`]s. It is hyper's client
//! without reqwest's layers (redirects, retries, URL conversion per call): those cost about a
//! third of the CPU of a call, and delivery makes three calls per inbound message.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Response bodies are kept up to this size; the rest is read and dropped.
const MAX_BODY: usize = 64 * 1024;

/// A pooled HTTP client with one timeout per call.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// An absolute `http` or `https` URL, parsed once, with its `Host` header.
#[derive(Debug, Clone)]
pub struct Endpoint {
    uri: Uri,
    host: HeaderValue,
}

/// The answer to a call.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    /// How long `Retry-After` asks to wait, if the server sent one that reads (see
    /// [`retry_after`]).
    pub retry_after: Option<Duration>,
    /// The body, at most [`MAX_BODY`] bytes of it.
    pub body: String,
}

impl Http {
    /// A client whose calls (connect, request, response body) time out after `timeout`, keeping
    /// up to `idle_per_host` idle connections to each host.
    pub fn new(timeout: Duration, idle_per_host: usize) -> anyhow::Result<Http> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
            .context("cannot set up TLS certificate verification")?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .set_host(false)
            .build(connector);
        Ok(Http { client, timeout })
    }

    /// Send `body` with `method` to `to`, with `headers` beside `Host`, `User-Agent` and, for a
    /// body, `Content-Type: application/json`.
    pub async fn send(
        &self,
        method: Method,
        to: &Endpoint,
        headers: &[(HeaderName, HeaderValue)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Response> {
        let body = body.into();
        let what = || format!("{method} {to}");
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = to.uri.clone();
        let h = req.headers_mut();
        h.insert(header::HOST, to.host.clone());
        h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        if !body.is_empty() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in headers {
            h.insert(name, value.clone());
        }
        let call = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, std::time::SystemTime::now()));
            let mut body = resp.into_body();
            let mut kept = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    let room = MAX_BODY.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            anyhow::Ok(Response {
                status,
                retry_after,
                body: String::from_utf8(kept)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.with_context(what),
            Err(_) => anyhow::bail!("{}: no answer within {:?}", what(), self.timeout),
        }
    }
}

/// The wait a `Retry-After` value asks for at `now`: delay-seconds (any number of digits; past
/// `u64` it saturates) or an HTTP date (one in the past is no wait). Anything else, such as a
/// negative number, reads as no header. The caller caps what it honours.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const USER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

impl Endpoint {
    /// Parse an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => anyhow::bail!("{url:?} is not an http:// or https:// URL"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?;
        // Not echoed: the URL holds a password.
        if authority.as_str().contains('@') {
            anyhow::bail!("a URL with credentials (user:password@host) is not supported");
        }
        let host = HeaderValue::from_str(authority.as_str())
            .with_context(|| format!("{url:?} has an invalid host"))?;
        Ok(Endpoint { uri, host })
    }

    /// This URL with `segment` (percent-encoded) appended to its path.
    pub fn join(&self, segment: &str) -> anyhow::Result<Endpoint> {
        let base = self.uri.path().trim_end_matches('/');
        let mut parts = self.uri.clone().into_parts();
        parts.path_and_query = Some(format!("{base}/{}", urlencode(segment)).parse()?);
        Ok(Endpoint {
            uri: Uri::from_parts(parts)?,
            host: self.host.clone(),
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.uri.fmt(f)
    }
}

/// At most 512 bytes of a response body, for error messages.
pub fn snippet(text: &str) -> &str {
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn endpoints_are_absolute_http_urls() {
        let e = Endpoint::parse("http://127.0.0.1:9/v1/messages/").unwrap();
        assert_eq!(e.host, "127.0.0.1:9");
        let joined = e.join("wamid.AB/c=d").unwrap();
        assert_eq!(
            joined.to_string(),
            "http://127.0.0.1:9/v1/messages/wamid.AB%2Fc%3Dd"
        );
        for bad in [
            "ftp://host/x",
            "/relative",
            "not a url",
            "",
            "https://user:secret@host/x",
        ] {
            let err = Endpoint::parse(bad).expect_err(bad).to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    /// A server on loopback that answers every request with `answer` (or never, if `None`).
    async fn serve(answer: Option<Vec<u8>>) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    match answer {
                        Some(a) => {
                            let _ = conn.write_all(&a).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        Endpoint::parse(&url).unwrap()
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let to = serve(None).await;
        let http = Http::new(Duration::from_millis(200), 1).unwrap();
        let err = http.send(Method::POST, &to, &[], "{}").await.unwrap_err();
        assert!(format!("{err:#}").contains("no answer within"), "{err:#}");
    }

    #[tokio::test]
    async fn status_retry_after_and_a_capped_body_are_read() {
        let body = "x".repeat(MAX_BODY + 1000);
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let to = serve(Some(answer.into_bytes())).await;
        let http = Http::new(Duration::from_secs(5), 1).unwrap();
        let resp = http.send(Method::POST, &to, &[], "{}").await.unwrap();
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(resp.body.len(), MAX_BODY);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_of_any_size_and_ignores_garbage() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let read = |v: &str| retry_after(v, now);
        assert_eq!(read(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(read("0"), Some(Duration::ZERO));
        assert_eq!(
            read("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            read("99999999999999999999999999999"),
            Some(Duration::from_secs(u64::MAX)),
            "more digits than u64 holds saturate"
        );
        // 2023-11-14T22:13:20Z is `now`.
        assert_eq!(
            read("Tue, 14 Nov 2023 22:13:30 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(read("Tue, 14 Nov 2023 22:13:10 GMT"), Some(Duration::ZERO));
        let far = read("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert!(far > Duration::from_secs(200_000_000_000), "{far:?}");
        for garbage in [
            "-5",
            "",
            "soon",
            "1.5",
            "7s",
            "Tue, 99 Nov 2023 22:13:30 GMT",
        ] {
            assert_eq!(read(garbage), None, "{garbage:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_call() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let to = Endpoint::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let http = Http::new(Duration::from_secs(5), 1).unwrap();
        let err = http.send(Method::PUT, &to, &[], "").await.unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("PUT http://127.0.0.1:{port}/hook: ")),
            "{err:#}"
        );
    }
}
