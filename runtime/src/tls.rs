//! Server certificates for [`crate::server`]: a PEM pair re-read when its files change (the
//! webhook's Secret, a metrics certificate mounted from one), or a self-signed pair generated
//! at start (the metrics endpoint when no files are given, as controller-runtime's secure
//! metrics server does: the scraper skips verification and authenticates with its token).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::Error;

/// How often certificate files are checked for a change.
const RELOAD_PERIOD: Duration = Duration::from_secs(2);

/// A server certificate: from files (re-read when their modification time changes, so a
/// rotated certificate is served without a restart) or self-signed.
#[derive(Debug)]
pub struct ServerCert {
    files: Option<(PathBuf, PathBuf)>,
    current: RwLock<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn signed(
    certs: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<Arc<CertifiedKey>, String> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, Error> {
    let err = |message: String| Error::LoadCertificate {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(e.to_string()))?;
    signed(certs, &key_der).map_err(err)
}

fn stamp(cert: &Path, key: &Path) -> Option<SystemTime> {
    mtime(cert).max(mtime(key))
}

impl ServerCert {
    /// Loads the certificate chain and key; fails when they cannot be used.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, Error> {
        let loaded = load(&cert, &key)?;
        let stamp = stamp(&cert, &key);
        Ok(Arc::new(Self {
            files: Some((cert, key)),
            current: RwLock::new((stamp, loaded)),
        }))
    }

    /// A self-signed certificate for `names` (DNS names or IP addresses), generated now.
    pub fn self_signed(names: &[String]) -> Result<Arc<Self>, Error> {
        let err = |message: String| Error::GenerateCertificate { message };
        let pair =
            rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| err(e.to_string()))?;
        let key = PrivateKeyDer::try_from(pair.signing_key.serialize_der())
            .map_err(|e| err(e.to_owned()))?;
        let loaded = signed(vec![pair.cert.der().clone()], &key).map_err(err)?;
        Ok(Arc::new(Self {
            files: None,
            current: RwLock::new((None, loaded)),
        }))
    }

    /// Reloads when either file changed (true); keeps serving the old pair when the new one is
    /// broken (e.g. half-written), and says so. A self-signed certificate never changes.
    pub fn refresh(&self) -> Result<bool, Error> {
        let Some((cert, key)) = &self.files else {
            return Ok(false);
        };
        let stamp = stamp(cert, key);
        let known = self.current.read().map_or(None, |c| c.0);
        if stamp == known {
            return Ok(false);
        }
        let loaded = load(cert, key)?;
        if let Ok(mut c) = self.current.write() {
            *c = (stamp, loaded);
        }
        Ok(true)
    }

    /// Checks the files every [`RELOAD_PERIOD`] until the returned guard is dropped.
    pub(crate) fn watch(self: Arc<Self>) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(async move {
            if self.files.is_none() {
                return;
            }
            let mut tick = tokio::time::interval(RELOAD_PERIOD);
            loop {
                tick.tick().await;
                match self.refresh() {
                    Ok(true) => tracing::info!("reloaded the TLS certificate"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, category = e.category(), "keeping the previous TLS certificate");
                    }
                }
            }
        }))
    }

    /// rustls on ring (never aws-lc-rs), HTTP/1.1 only, the certificate from `self`.
    pub(crate) fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::ConfigureTls {
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.1.clone())
    }
}

/// Aborts a background task when dropped.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
