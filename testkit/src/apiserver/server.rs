//! The listening server: accept loop, background tasks, kubeconfig, shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

use super::auth::{Auth, Subject};
use super::gc;
use super::handler::{Ctx, handle};
use super::metrics::Metrics;
use super::persistence::{self, PersistError};
use super::storage::Store;

/// How to run the stand-in.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// File to persist objects to, and to load them from on start.
    pub data_file: Option<PathBuf>,
    /// Where to write a kubeconfig pointing at the server.
    pub kubeconfig: Option<PathBuf>,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// How many events the watch log retains; older resourceVersions get 410 Gone.
    pub event_window: usize,
    /// Interval of the periodic garbage-collection pass.
    pub gc_interval: Duration,
    /// Delay between a change and its persistence.
    pub persist_delay: Duration,
    /// Serve HTTPS with a self-signed certificate (for `localhost`, `127.0.0.1`, `::1` and the
    /// listen address) that the kubeconfig trusts. With a data file, the certificate and key
    /// are kept beside it (`.crt`, `.key`) and reused on restart.
    pub tls: bool,
    /// Authenticate and authorize every request: no valid bearer token is a 401, what RBAC
    /// does not allow a 403. Off by default: requests then run as the administrator (a valid
    /// token still names its user, for admission) and nothing is refused. Tokens are signed
    /// with a key kept beside the data file (`.token-key`), so they survive a restart.
    pub enforce_auth: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_file: None,
            kubeconfig: None,
            bookmark_interval: Duration::from_secs(5),
            event_window: 2_000,
            gc_interval: Duration::from_secs(1),
            persist_delay: Duration::from_millis(50),
            tls: false,
            enforce_auth: false,
        }
    }
}

/// Errors starting the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listen address failed.
    #[error("failed to listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Loading the data file failed.
    #[error(transparent)]
    Load(#[from] PersistError),
    /// Making or loading the TLS certificate failed.
    #[error("failed to make or load the TLS certificate: {0}")]
    Tls(String),
    /// Making or loading the token signing key failed.
    #[error("failed to make or load the token signing key")]
    TokenKey(#[source] std::io::Error),
    /// Writing the kubeconfig failed.
    #[error("failed to write kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StartError {
    /// Stable name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bind-failed",
            Self::Load(e) => e.category(),
            Self::Tls(_) => "tls-certificate-failed",
            Self::TokenKey(_) => "token-key-failed",
            Self::Kubeconfig { .. } => "write-kubeconfig-failed",
        }
    }
}

/// A running stand-in.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    auth: Arc<Auth>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// PEM certificate when serving HTTPS.
    cert_pem: Option<String>,
}

impl ApiServer {
    /// Loads the data file (if any), binds, writes the kubeconfig (if asked) and serves.
    #[allow(
        clippy::unused_async,
        reason = "it spawns the server's tasks: callers are in a runtime, and every test awaits it"
    )]
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let snapshot = match &config.data_file {
            Some(p) => persistence::load(p)?,
            None => None,
        };
        let store = Store::new(config.event_window, snapshot);
        let listener = listen(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let (acceptor, cert_pem) = if config.tls {
            let (acceptor, pem) = tls_acceptor(addr, config.data_file.as_deref())?;
            (Some(acceptor), Some(pem))
        } else {
            (None, None)
        };
        let metrics = Arc::new(Metrics::default());
        let key_file = config
            .data_file
            .as_ref()
            .map(|d| d.with_extension("token-key"));
        let auth = Arc::new(
            Auth::new(key_file.as_deref(), config.enforce_auth).map_err(StartError::TokenKey)?,
        );
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let ctx = Arc::new(Ctx {
            store: store.clone(),
            metrics: metrics.clone(),
            auth: auth.clone(),
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown_rx.clone(),
        });
        let mut tasks = vec![
            tokio::spawn(accept_loop(listener, acceptor, ctx, shutdown_rx.clone())),
            tokio::spawn(gc::run(
                store.clone(),
                config.gc_interval,
                shutdown_rx.clone(),
            )),
        ];
        if let Some(p) = &config.data_file {
            tasks.push(tokio::spawn(persistence::run(
                store.clone(),
                p.clone(),
                config.persist_delay,
                shutdown_rx,
            )));
        }
        let server = Self {
            addr,
            store,
            metrics,
            auth,
            shutdown,
            tasks,
            cert_pem,
        };
        if let Some(p) = &config.kubeconfig {
            server
                .write_kubeconfig(p)
                .map_err(|source| StartError::Kubeconfig {
                    path: p.clone(),
                    source,
                })?;
        }
        Ok(server)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server URL (`http://addr`, or `https://addr` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.cert_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM certificate clients must trust, when serving HTTPS.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// The object store (for tests that look inside).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Request counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A kubeconfig pointing at the server, namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine;
        let ca = self
            .cert_pem
            .as_ref()
            .map(|pem| {
                let data = base64::engine::general_purpose::STANDARD.encode(pem);
                format!("    certificate-authority-data: {data}\n")
            })
            .unwrap_or_default();
        let user = format!("\n    token: {}", self.auth.admin_token());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: knmstate-stand-in\n  cluster:\n    server: {}\n{ca}contexts:\n- name: knmstate-stand-in\n  context:\n    cluster: knmstate-stand-in\n    user: admin\n    namespace: default\ncurrent-context: knmstate-stand-in\nusers:\n- name: admin\n  user:{user}\n",
            self.url()
        )
    }

    /// Writes the kubeconfig to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A bearer token for `subject`, valid for the API server and without expiry (a
    /// ServiceAccount's only while the ServiceAccount exists; a pod's only while the pod does).
    pub fn token_for(&self, subject: Subject) -> String {
        self.auth.issuer().mint(subject, Vec::new(), None)
    }

    /// A kube-rs client for the server, as the administrator.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        self.client_with_token(self.auth.admin_token())
    }

    /// A kube-rs client for the server that sends `token`.
    pub fn client_with_token(&self, token: &str) -> Result<kube::Client, kube::Error> {
        let uri: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| kube::Error::Service(Box::new(e)))?;
        let mut config = kube::Config::new(uri);
        if let Some(pem) = &self.cert_pem {
            use rustls::pki_types::pem::PemObject;
            let ders = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .filter_map(Result::ok)
                .map(|c| c.to_vec())
                .collect();
            config.root_cert = Some(ders);
        }
        config.auth_info.token = Some(token.to_owned().into());
        kube::Client::try_from(config)
    }

    /// Stops serving, ends watches and connections, and writes the data file a last time.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for ApiServer {
    /// Dropping the server stops it too, without waiting (the data file may miss the last
    /// changes: prefer [`ApiServer::shutdown`]).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Loads (or makes and, with a data file, saves) the self-signed certificate.
fn tls_acceptor(
    addr: SocketAddr,
    data_file: Option<&Path>,
) -> Result<(tokio_rustls::TlsAcceptor, String), StartError> {
    use rustls::pki_types::pem::PemObject;
    let err = |e: &dyn std::fmt::Display| StartError::Tls(e.to_string());
    let files = data_file.map(|d| (d.with_extension("crt"), d.with_extension("key")));
    let existing = files.as_ref().and_then(|(c, k)| {
        Some((
            std::fs::read_to_string(c).ok()?,
            std::fs::read_to_string(k).ok()?,
        ))
    });
    let (cert_pem, key_pem) = if let Some(pair) = existing {
        pair
    } else {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
        let key = rcgen::generate_simple_self_signed(names).map_err(|e| err(&e))?;
        let pair = (key.cert.pem(), key.signing_key.serialize_pem());
        if let Some((c, k)) = &files {
            std::fs::write(c, &pair.0)
                .and_then(|()| std::fs::write(k, &pair.1))
                .map_err(|e| err(&e))?;
        }
        pair
    };
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| err(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| err(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert_pem))
}

/// Bind `addr` with the accept queue the kernel allows (`net.core.somaxconn`), as the Go
/// listener of a real API server does: a thousand clients connecting at once overflowed
/// tokio's default of 1,024.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let backlog = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(4096);
    socket.listen(backlog)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ctx: Arc<Ctx>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let ctx = ctx.clone();
        let stop = shutdown.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve(stream, ctx, stop).await,
                Some(a) => match a.accept(stream).await {
                    Ok(tls) => serve(tls, ctx, stop).await,
                    Err(e) => tracing::debug!("TLS handshake: {e}"),
                },
            }
        });
    }
}

async fn serve<I>(io: I, ctx: Arc<Ctx>, mut stop: tokio::sync::watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!("connection: {e}");
            }
        }
        _ = stop.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_in_use_is_a_bind_failure() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = ApiServer::start(Config {
            listen: taken.local_addr().unwrap(),
            ..Config::default()
        })
        .await
        .expect_err("the address is taken");
        assert_eq!(err.category(), "bind-failed");
        assert!(
            err.to_string()
                .starts_with("failed to listen on 127.0.0.1:"),
            "{err}"
        );
    }
}
