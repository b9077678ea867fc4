//! HTTPS with rustls. The certificate files are re-read when they change (checked at most once
//! a second, on handshakes), so a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
pub use tokio_rustls::TlsAcceptor;

use crate::store::now_millis;

/// The TLS side of the listener: the certificate chain and key of these PEM files, reloaded
/// when they change. Handshakes run in each connection's task (see `connections`), within
/// `header_timeout`.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let resolver = Arc::new(ReloadingCert::new(cert.to_path_buf(), key.to_path_buf())?);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
