//! The listener: accepts plain or TLS connections, at most `max_connections` at once, and cuts
//! clients that hold a connection without using it. A request's head (and a TLS handshake) must
//! arrive within `header_timeout` of its first byte; a keep-alive connection with no request
//! for `idle_timeout` is closed; a webhook's body must arrive within `body_timeout`
//! ([`read_body`]).
//!
//! Hand-written rather than `axum::serve`, which has no timeouts or cap. hyper's own
//! `header_read_timeout` is not used: it also closes idle keep-alive connections after the
//! header timeout, so the idle timeout could not be longer, and it only covers HTTP/1.

use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::tls::TlsAcceptor;
use super::{AppState, ClientAddr, WhatsAppError};
use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// The timeouts and the cap of `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub idle: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn of(server: &ServerConfig) -> Limits {
        Limits {
            header: server.header_timeout,
            idle: server.idle_timeout,
            max_connections: server.max_connections(),
        }
    }
}

/// How often at most the cap being reached is logged.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` (with TLS if `tls`) until `shutdown` completes; then stop
/// accepting, let requests in flight finish, and return once every connection is closed.
///
/// At the cap, the loop stops accepting: new connections wait in the kernel's listen backlog
/// and are served in turn as slots free up (slow clients are cut by the timeouts).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender: when all are dropped, every connection is closed.
    let (open_tx, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    let mut last_cap_log: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.inc(&metrics.connection_cap_reached);
                if last_cap_log.is_none_or(|t| t.elapsed() >= CAP_LOG_EVERY) {
                    last_cap_log = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection slot is taken: new connections wait until one closes (see [server] max_connections)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break, // never closed
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let (app, tls, metrics) = (app.clone(), tls.clone(), metrics.clone());
        let (stop, open) = (stop_rx.clone(), open_tx.clone());
        tokio::spawn(async move {
            metrics.add(&metrics.connections_open, 1);
            let conn = Conn {
                addr,
                app,
                limits,
                metrics: metrics.clone(),
                stop,
            };
            match tls {
                None => conn.serve(tcp).await,
                Some(tls) => match tokio::time::timeout(limits.header, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => conn.serve(stream).await,
                    Ok(Err(e)) => {
                        tracing::debug!(client = %addr, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        metrics.inc(&metrics.slow_header);
                        tracing::debug!(client = %addr, "TLS handshake not done within header_timeout: connection closed");
                    }
                },
            }
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
            drop((slot, open));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    let _ = all_closed.recv().await;
}

/// One accepted connection.
struct Conn {
    addr: SocketAddr,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: io,
            activity: activity.clone(),
        });
        let (app, addr, on_request) = (self.app.clone(), self.addr, activity.clone());
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(ClientAddr(addr)));
            let busy = Busy::new(on_request.clone());
            let mut app = app.clone();
            async move {
                let response = tower_service::Service::call(&mut app, req).await;
                drop(busy);
                response
            }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let mut conn = pin!(builder.serve_connection(io, service));
        let mut stopping = false;
        // Activity is not signalled to this loop (that woke it three times a request); it looks
        // at least every `tick`, so a deadline that activity brought forward (a request's end
        // starting the idle time, a new head) is kept to within a tick.
        let tick = (self.limits.header.min(self.limits.idle) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            let next_look = Instant::now() + tick;
            let wake = match activity.deadline(&self.limits) {
                Some((at, _)) => at.min(next_look),
                None => next_look,
            };
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(client = %self.addr, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wake) => {
                    // Dropping the connection closes it: nothing is in flight.
                    match activity.deadline(&self.limits) {
                        Some((at, Phase::Head)) if at <= Instant::now() => {
                            self.metrics.inc(&self.metrics.slow_header);
                            tracing::warn!(client = %self.addr, "request head not received within header_timeout: connection closed");
                            return;
                        }
                        Some((at, _)) if at <= Instant::now() => {
                            self.metrics.inc(&self.metrics.idle_closed);
                            tracing::debug!(client = %self.addr, "idle keep-alive connection closed");
                            return;
                        }
                        _ => {}
                    }
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in flight, nothing received since the last one.
    Idle,
    /// Bytes of a request head received, the request not yet started.
    Head,
    /// Requests in flight (their bodies have their own timeout).
    Busy,
}

struct Activity {
    /// The phase, since when, and how many requests are in flight.
    state: Mutex<(Phase, Instant, usize)>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            // A new connection must send its first request's head within header_timeout.
            state: Mutex::new((Phase::Head, Instant::now(), 0)),
        }
    }

    fn update(&self, f: impl FnOnce(&mut (Phase, Instant, usize))) {
        if let Ok(mut s) = self.state.lock() {
            let before = s.0;
            f(&mut s);
            if s.0 != before {
                s.1 = Instant::now();
            }
        }
    }

    /// When the connection should be closed, unless something happens first.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Phase)> {
        let (phase, since, _) = *self.state.lock().ok()?;
        match phase {
            Phase::Idle => Some((since + limits.idle, phase)),
            Phase::Head => Some((since + limits.header, phase)),
            Phase::Busy => None,
        }
    }
}

/// Marks a request in flight while it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.update(|s| {
            s.2 += 1;
            s.0 = Phase::Busy;
        });
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.2 = s.2.saturating_sub(1);
            if s.2 == 0 {
                s.0 = Phase::Idle;
            }
        });
    }
}

/// The connection's stream, noting when bytes of a new request arrive.
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.update(|s| {
                if s.0 == Phase::Idle {
                    s.0 = Phase::Head;
                }
            });
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Read a webhook's body within `body_timeout` (408 past it) and `max_body_bytes` (413 above
/// it; a `Content-Length` above it is answered at once, before the body is read, so no
/// `100 Continue` goes out). The error is the answer to give.
pub async fn read_body(
    app: &AppState,
    client: SocketAddr,
    path: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let max = app.config.server.max_body_bytes;
    let announced = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = |what: String| {
        app.metrics.inc(&app.metrics.requests_too_large);
        tracing::warn!(client = %client.ip(), path, status = 413, reason = %what, "webhook refused");
        WhatsAppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request entity too large",
            format!("{what}; at most {max} bytes are accepted (max_body_bytes)"),
        )
        .into_response()
    };
    if let Some(len) = announced.filter(|&n| n > max as u64) {
        return Err(too_large(format!("the body announces {len} bytes")));
    }
    let timeout = app.config.server.body_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                app.metrics.inc(&app.metrics.requests_too_large);
                tracing::warn!(client = %client.ip(), path, status = 413, reason = "the body is above max_body_bytes", "webhook refused");
                return Err(WhatsAppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request entity too large",
                    format!("the body is larger than {max} bytes (max_body_bytes)"),
                )
                .into_response());
            }
            tracing::warn!(client = %client.ip(), path, status = 400, reason = %format!("the body could not be read: {e}"), "webhook refused");
            Err(WhatsAppError::new(
                StatusCode::BAD_REQUEST,
                "Request body rejected",
                format!("the body could not be read: {e}"),
            )
            .into_response())
        }
        Err(_) => {
            app.metrics.inc(&app.metrics.slow_body);
            tracing::warn!(client = %client.ip(), path, status = 408, reason = "the body did not arrive within body_timeout", "webhook refused");
            Err(WhatsAppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Request timeout",
                format!("the body did not arrive within {timeout:?} (body_timeout)"),
            )
            .into_response())
        }
    }
}
