//! TLS for the webhook: a certificate re-read when its files change, and a listener that hands
//! axum connections whose handshake is done.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::server::ServerError;

/// How often the certificate files are checked for a change.
const RELOAD_PERIOD: Duration = Duration::from_secs(2);

/// A client that has not finished its handshake by then is dropped, so a slow or silent client
/// cannot hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate resolver that re-reads its PEM files when their modification time changes, so
/// a rotated certificate is served without a restart.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, ServerError> {
    let err = |message: String| ServerError::LoadCertificate {
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
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| err(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

impl ReloadingCert {
    /// Loads the certificate chain and key; fails when they cannot be used.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, ServerError> {
        let loaded = load(&cert, &key)?;
        let stamp = mtime(&cert).max(mtime(&key));
        Ok(Arc::new(Self {
            cert,
            key,
            current: RwLock::new((stamp, loaded)),
        }))
    }

    /// Reloads when either file changed; keeps serving the old pair when the new one is broken
    /// (e.g. half-written), and says so.
    pub fn refresh(&self) -> Result<bool, ServerError> {
        let stamp = mtime(&self.cert).max(mtime(&self.key));
        let known = self.current.read().map_or(None, |c| c.0);
        if stamp == known {
            return Ok(false);
        }
        let loaded = load(&self.cert, &self.key)?;
        if let Ok(mut c) = self.current.write() {
            *c = (stamp, loaded);
        }
        Ok(true)
    }

    /// Checks the files every [`RELOAD_PERIOD`] until the task is aborted.
    fn watch(self: Arc<Self>) -> JoinHandle<()> {
        tokio::spawn(async move {
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
        })
    }

    /// rustls on ring (never aws-lc-rs), HTTP/1.1 only, the certificate from `self`.
    fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, ServerError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::ConfigureTls {
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.1.clone())
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An [`axum::serve::Listener`] of TLS connections: TCP is accepted and each handshake runs in
/// its own task, so one slow client never delays the others; a certificate change is picked
/// up within [`RELOAD_PERIOD`]. Dropping the listener (axum does on shutdown) stops accepting
/// and reloading.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    _accept: AbortOnDrop,
    _reload: AbortOnDrop,
}

impl TlsListener {
    /// Listens on `addr` and starts accepting with the certificate of `certs`.
    pub async fn bind(addr: SocketAddr, certs: Arc<ReloadingCert>) -> Result<Self, ServerError> {
        let listen = |source| ServerError::Listen { addr, source };
        let tcp = TcpListener::bind(addr).await.map_err(listen)?;
        let local = tcp.local_addr().map_err(listen)?;
        let acceptor = TlsAcceptor::from(Arc::new(certs.server_config()?));
        let (tx, ready) = mpsc::channel(64);
        let accept = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to accept a connection");
                        // e.g. out of file descriptors: give the process a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            ready,
            _accept: AbortOnDrop(accept),
            _reload: AbortOnDrop(certs.watch()),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
