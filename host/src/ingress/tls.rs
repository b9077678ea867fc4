//! HTTPS with rustls. The certificate files are re-read when they change (checked at most once
//! a second, on handshakes), so a renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::store::now_millis;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that yields connections after their TLS handshake. Handshakes run in tasks of
/// their own, so a slow client never holds up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serve TLS on `listener` with the certificate chain and key of these PEM files.
    pub fn new(listener: TcpListener, cert: &Path, key: &Path) -> anyhow::Result<TlsListener> {
        let resolver = Arc::new(ReloadingCert::new(cert.to_path_buf(), key.to_path_buf())?);
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The certificate served, reloaded when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    loaded_mtimes: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
    last_check: AtomicI64,
}

impl ReloadingCert {
    fn new(cert: PathBuf, key: PathBuf) -> anyhow::Result<ReloadingCert> {
        let mtimes = (mtime(&cert), mtime(&key));
        let current = ArcSwap::from_pointee(load(&cert, &key)?);
        Ok(ReloadingCert {
            cert,
            key,
            current,
            loaded_mtimes: Mutex::new(mtimes),
            last_check: AtomicI64::new(now_millis()),
        })
    }

    fn reload_if_changed(&self) {
        let now = now_millis();
        let last = self.last_check.load(Ordering::Relaxed);
        if now - last < 1000
            || self
                .last_check
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let mtimes = (mtime(&self.cert), mtime(&self.key));
        let Ok(mut loaded) = self.loaded_mtimes.lock() else {
            return;
        };
        if *loaded == mtimes {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                *loaded = mtimes;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            // A pair caught half-renewed: keep serving the old one, try again next second.
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot reload the TLS certificate; the previous one keeps serving")
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reload_if_changed();
        Some(self.current.load_full())
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid PEM in {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .context("unsupported TLS private key")?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .context("the TLS key does not match the certificate")?;
    Ok(certified)
}
