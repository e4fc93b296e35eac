//! The HTTPS server: rustls with a certificate reloaded when its files change, `/readyz`, and
//! the admission paths of [`crate::admission`].

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admission::Admission;

/// Largest AdmissionReview body accepted (the API server's own request limit is 3 MiB).
const MAX_BODY: usize = 6 * 1024 * 1024;

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate or key could not be loaded.
    #[error("failed to load the TLS certificate {cert} / key {key}: {message}")]
    LoadCertificate {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The listening socket could not be opened.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ServerError {
    /// Stable category for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::LoadCertificate { .. } => "load-certificate",
            Self::Listen { .. } => "listen",
        }
    }
}

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
        let known = self.current.read().map(|c| c.0).unwrap_or(None);
        if stamp == known {
            return Ok(false);
        }
        let loaded = load(&self.cert, &self.key)?;
        if let Ok(mut c) = self.current.write() {
            *c = (stamp, loaded);
        }
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.1.clone())
    }
}

/// Serves admission reviews on `addr` until the future is dropped.
pub async fn serve(
    addr: SocketAddr,
    certs: Arc<ReloadingCert>,
    admission: Arc<Admission>,
    ready: impl Fn(SocketAddr) + Send,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Listen { addr, source })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServerError::LoadCertificate {
        cert: certs.cert.clone(),
        key: certs.key.clone(),
        message: e.to_string(),
    })?
    .with_no_client_auth()
    .with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let reloader = certs.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            match reloader.refresh() {
                Ok(true) => tracing::info!("reloaded the TLS certificate"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, category = e.category(), "keeping the previous TLS certificate")
                }
            }
        }
    });

    ready(local);
    tracing::info!(%local, "serving admission reviews");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let admission = admission.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let admission = admission.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, &admission).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}

async fn route(req: Request<Incoming>, admission: &Admission) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/readyz" | "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::POST, _) => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("failed to read the request body: {e}"),
                    );
                }
            };
            let review = admission.review(&path, &body);
            match serde_json::to_vec(&review) {
                Ok(json) => {
                    let mut r = Response::new(Full::new(Bytes::from(json)));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("failed to encode the review: {e}"),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}
