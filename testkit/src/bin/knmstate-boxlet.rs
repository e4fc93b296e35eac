//! `knmstate-boxlet`: the cluster in a box's kubelet. Runs the pods of the DaemonSets and
//! Deployments in the API as processes, from their pod templates (see
//! `knmstate_testkit::boxlet` and `e2e/README.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use knmstate_testkit::boxlet::launch::Runtime;
use knmstate_testkit::boxlet::services::Expose;
use knmstate_testkit::boxlet::{Boxlet, Config};

/// The box's kubelet.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Kubeconfig of the box kubelet itself.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The box's state dir (pod directories, remapped host paths).
    #[arg(long)]
    state: PathBuf,
    /// The node harness script (`hack/nodes.sh`).
    #[arg(long)]
    nodes_script: PathBuf,
    /// The node harness prefix (also of the pods' network namespaces).
    #[arg(long)]
    prefix: String,
    /// Unix socket of the API.
    #[arg(long)]
    api_socket: PathBuf,
    /// Kubeconfig given to host-network pods.
    #[arg(long)]
    node_kubeconfig: PathBuf,
    /// Kubeconfig given to pods with their own network.
    #[arg(long)]
    pod_kubeconfig: PathBuf,
    /// `IMAGE=DIR`: containers of IMAGE run `DIR/<basename of command[0]>` (repeatable).
    #[arg(long = "image", value_parser = image)]
    images: Vec<(String, PathBuf)>,
    /// `<namespace>/<service>:<port>=<host port>`: serve that Service port on 127.0.0.1.
    #[arg(long)]
    expose: Vec<Expose>,
    /// `<namespace>/<name>` of a Lease: its holder's pod is preferred behind exposed Services.
    #[arg(long)]
    leader_lease: Option<String>,
    /// Directory of the pods' logs.
    #[arg(long)]
    logs: PathBuf,
    /// Give each pod its own identity (a token of its ServiceAccount bound to its Pod object)
    /// instead of the base kubeconfigs' credentials.
    #[arg(long)]
    pod_identity: bool,
}

fn image(s: &str) -> Result<(String, PathBuf), String> {
    let (i, d) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("{s:?} is not IMAGE=DIR"))?;
    Ok((i.to_owned(), PathBuf::from(d)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let kc =
        kube::config::Kubeconfig::read_from(&a.kubeconfig).context("reading the kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = kube::Client::try_from(config)?;
    let boxlet = Boxlet::new(
        client,
        Config {
            runtime: Runtime {
                state: a.state,
                nodes_script: a.nodes_script,
                prefix: a.prefix,
                api_socket: a.api_socket,
            },
            images: a.images.into_iter().collect::<BTreeMap<_, _>>(),
            node_kubeconfig: a.node_kubeconfig,
            pod_kubeconfig: a.pod_kubeconfig,
            expose: a.expose,
            leader_lease: a.leader_lease,
            logs: a.logs,
            pod_identity: a.pod_identity,
        },
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    boxlet
        .run(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await
}
