//! Where the plugin's objects come from: policy files, `--state` files (offline), or the
//! cluster of the current kubeconfig (kube-rs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Node;
use knmstate_api::State;
use knmstate_api::names::POLICY_LABEL;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use knmstate_state_engine::render;
use kube::api::ListParams;
use kube::{Api, Client};

use super::error::PluginError;
use super::input;
use super::plan::Fleet;

const POLICY_KIND: &str = "NodeNetworkConfigurationPolicy";

/// A client from the kubeconfig (`KUBECONFIG`, `~/.kube/config`, or in-cluster).
pub async fn client() -> Result<Client, PluginError> {
    Client::try_default().await.map_err(PluginError::Connect)
}

/// The policies of a file, or the policy of that name on the cluster when no such file
/// exists. The flag says whether they came from the cluster.
pub async fn policies(
    arg: &str,
    client: Option<&Client>,
) -> Result<(Vec<NodeNetworkConfigurationPolicy>, bool), PluginError> {
    let path = Path::new(arg);
    if path.exists() {
        let docs = input::read_documents(path)?;
        let found = docs
            .iter()
            .filter(|d| d.kind() == POLICY_KIND)
            .map(input::Document::decode)
            .collect::<Result<Vec<_>, _>>()?;
        if found.is_empty() {
            return Err(PluginError::FindPolicy(format!(
                "{arg} holds no {POLICY_KIND}"
            )));
        }
        return Ok((found, false));
    }
    let Some(client) = client else {
        return Err(PluginError::FindPolicy(format!(
            "no file {arg}, and offline (--state) there is no cluster to read a policy from"
        )));
    };
    let policy = policy(client, arg).await?;
    Ok((vec![policy], true))
}

/// The fleet from `--state` files: NodeNetworkState objects (the node is their name), Node
/// objects (for labels and readiness), or bare nmstate states (the node is the file's stem).
pub fn offline_fleet(files: &[PathBuf]) -> Result<Fleet, PluginError> {
    let mut fleet = Fleet::default();
    for file in files {
        for doc in input::read_documents(file)? {
            match doc.kind() {
                "NodeNetworkState" => {
                    let nns: NodeNetworkState = doc.decode()?;
                    fleet
                        .states
                        .insert(doc.name().to_owned(), current_state(&nns));
                }
                "Node" => fleet.nodes.push(doc.decode()?),
                "" if doc.value.get("interfaces").is_some() => {
                    let node = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    fleet.states.insert(node, doc.value.clone());
                }
                other => {
                    return Err(PluginError::DecodeObject {
                        what: doc.place(),
                        message: format!(
                            "expected a NodeNetworkState, a Node or an nmstate state, found {other:?}"
                        ),
                    });
                }
            }
        }
    }
    Ok(fleet)
}

fn current_state(nns: &NodeNetworkState) -> serde_json::Value {
    nns.status
        .as_ref()
        .and_then(|s| s.current_state.as_ref())
        .map(State::to_value)
        .unwrap_or_default()
}

/// The fleet from the cluster: every Node and NodeNetworkState and, for a policy read from
/// the cluster (`policy`), the captured states its enactments let the handler reuse.
pub async fn cluster_fleet(client: &Client, policy: Option<&str>) -> Result<Fleet, PluginError> {
    let read = |what| move |source| PluginError::ReadCluster { what, source };
    let lp = ListParams::default();
    let nodes = Api::<Node>::all(client.clone())
        .list(&lp)
        .await
        .map_err(read("the nodes"))?;
    let states = Api::<NodeNetworkState>::all(client.clone())
        .list(&lp)
        .await
        .map_err(read("the NodeNetworkStates"))?;
    let mut fleet = Fleet {
        nodes: nodes.items,
        states: states
            .items
            .iter()
            .filter_map(|s| Some((s.metadata.name.clone()?, current_state(s))))
            .collect(),
        captures: BTreeMap::new(),
    };
    if let Some(policy) = policy {
        for e in enactments(client, policy).await? {
            if let (Some(node), Some(status)) = (e.node_name(), e.status.as_ref()) {
                fleet
                    .captures
                    .insert(node.to_owned(), render::reusable_captures(status));
            }
        }
    }
    Ok(fleet)
}

/// The enactments of `policy`, by their policy label.
pub async fn enactments(
    client: &Client,
    policy: &str,
) -> Result<Vec<NodeNetworkConfigurationEnactment>, PluginError> {
    let lp = ListParams::default().labels(&format!("{POLICY_LABEL}={policy}"));
    Ok(
        Api::<NodeNetworkConfigurationEnactment>::all(client.clone())
            .list(&lp)
            .await
            .map_err(|source| PluginError::ReadCluster {
                what: "the enactments",
                source,
            })?
            .items,
    )
}

/// The policy named `name` on the cluster.
pub async fn policy(
    client: &Client,
    name: &str,
) -> Result<NodeNetworkConfigurationPolicy, PluginError> {
    Api::<NodeNetworkConfigurationPolicy>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(|source| PluginError::ReadCluster {
            what: "the policy",
            source,
        })?
        .ok_or_else(|| PluginError::FindPolicy(format!("no policy named {name} on the cluster")))
}
