//! The listening server: accept loop, background tasks, kubeconfig, shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

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
        }
    }
}

/// Errors starting the stand-in.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listen address failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Loading the data file failed.
    #[error(transparent)]
    Load(#[from] PersistError),
    /// Writing the kubeconfig failed.
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running stand-in.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Loads the data file (if any), binds, writes the kubeconfig (if asked) and serves.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let snapshot = match &config.data_file {
            Some(p) => persistence::load(p)?,
            None => None,
        };
        let store = Store::new(config.event_window, snapshot);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let ctx = Arc::new(Ctx {
            store: store.clone(),
            metrics: metrics.clone(),
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown_rx.clone(),
        });
        let mut tasks = vec![
            tokio::spawn(accept_loop(listener, ctx, shutdown_rx.clone())),
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
            shutdown,
            tasks,
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

    /// The server URL (`http://addr`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: knmstate-stand-in\n  cluster:\n    server: {}\ncontexts:\n- name: knmstate-stand-in\n  context:\n    cluster: knmstate-stand-in\n    user: admin\n    namespace: default\ncurrent-context: knmstate-stand-in\nusers:\n- name: admin\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes the kubeconfig to a file.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A kube-rs client for the server.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        let uri: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| kube::Error::Service(Box::new(e)))?;
        kube::Client::try_from(kube::Config::new(uri))
    }

    /// Stops serving, ends watches and connections, and writes the data file a last time.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
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
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(ctx, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!("connection: {e}");
                    }
                }
                _ = stop.changed() => {}
            }
        });
    }
}
