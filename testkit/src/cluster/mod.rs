//! What the end-to-end suites (`e2e/tests/e2e_*.rs`) share: a connection to a running cluster
//! and helpers over the `nmstate.io` kinds.
//!
//! The suites only use `KUBECONFIG` and [`kube::Client`], so they run unchanged against a real
//! cluster. Optional extras widen what they can check:
//!
//! | variable | meaning | without it |
//! |---|---|---|
//! | `KUBECONFIG` | the cluster | every suite skips, saying so |
//! | `KNMSTATE_E2E_NODE_EXEC` | command prefix that runs a command on a node: `<prefix> <node> <cmd>...` (the box: `hack/cluster.sh exec`) | tests that touch a node out of band skip |
//! | `KNMSTATE_E2E_METRICS_URL` | the controller's `/metrics`: plain HTTP, or HTTPS scraped with the `KUBECONFIG` user's token | the metrics test skips |
//! | `KNMSTATE_E2E_AUTH` | `1`: the cluster enforces authentication, RBAC and admission (the box's default) | the node-restriction suite checks nothing, saying so |
//! | `KNMSTATE_E2E_RESTART_NODE` | command prefix that reboots a node: `<prefix> <node> <seconds down>` (the box: `hack/cluster.sh restart-node`) | the reboot checks skip |
//! | `KNMSTATE_E2E_SWITCH_EXEC` | command prefix that runs a command in the switch the nodes' NICs are plugged into (the box: `hack/nodes.sh switch`) | the LLDP neighbour test skips |
//! | `KNMSTATE_REQUIRE_E2E` | set: a skip is a failure (hack/e2e.sh sets it) | skips are allowed |
//!
//! `hack/cluster.sh env` prints all three for the cluster in a box. Policies are handled as
//! [`DynamicObject`]s: the suites check the API as a client sees it, not this repository's types.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    },
};
use serde_json::{Value, json};

use crate::poll::eventually_every;

mod exec;
pub mod identity;
mod metrics;
mod node_state;
mod restart;
mod specs;
mod watch;

pub use exec::{NodeExec, command_prefix};
pub use metrics::{get, http_get, metric_value};
pub use node_state::{addresses, default_routes, dns_search, dns_servers};
pub use restart::{NodeRestart, Rebooting};
pub use specs::{
    absent, bad_dns_spec, bad_gateway_spec, bridge, healthy_uplink_spec, on_node, policy,
};
pub use watch::{EnactmentLog, EnactmentWatch, ProgressOrder};

/// How often the suites poll the cluster: gentler than the in-process tests, since a real
/// cluster is shared.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub use knmstate_api::names::POLICY_LABEL;

/// The NodeNetworkConfigurationPolicy resource (`nmstate.io/v1`).
pub fn nncp_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nmstate.io", "v1", "NodeNetworkConfigurationPolicy"),
        "nodenetworkconfigurationpolicies",
    )
}

/// The NodeNetworkConfigurationEnactment resource (`nmstate.io/v1beta1`).
pub fn nnce_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nmstate.io", "v1beta1", "NodeNetworkConfigurationEnactment"),
        "nodenetworkconfigurationenactments",
    )
}

/// The NodeNetworkState resource (`nmstate.io/v1beta1`).
pub fn nns_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nmstate.io", "v1beta1", "NodeNetworkState"),
        "nodenetworkstates",
    )
}

/// A connection to the cluster under test.
#[derive(Clone)]
pub struct E2e {
    /// The client (from `KUBECONFIG`).
    pub client: Client,
    /// Policies.
    pub nncp: Api<DynamicObject>,
    /// Enactments.
    pub nnce: Api<DynamicObject>,
    /// Node network states.
    pub nns: Api<DynamicObject>,
    /// Nodes.
    pub nodes: Api<Node>,
}

/// Why the suites cannot run here, if they cannot: `KUBECONFIG` is unset.
pub fn skip_reason() -> Option<String> {
    match std::env::var_os("KUBECONFIG") {
        Some(v) if !v.is_empty() => None,
        _ => Some(
            "KUBECONFIG is not set: the end-to-end suites need a cluster \
             (hack/e2e.sh brings up the cluster in a box and runs them)"
                .into(),
        ),
    }
}

/// Print that `what` is skipped and why; with `KNMSTATE_REQUIRE_E2E` set (hack/e2e.sh sets it)
/// a skip is a failure instead: a run against the box must never pass by skipping.
pub fn skip(what: &str, why: &str) {
    assert!(
        std::env::var_os("KNMSTATE_REQUIRE_E2E").is_none(),
        "{what} is required (KNMSTATE_REQUIRE_E2E) but cannot run: {why}"
    );
    eprintln!("skipping {what}: {why}");
}

/// Connect, or print why the suite is skipped and return `None`.
pub async fn connect(suite: &str) -> Option<E2e> {
    if let Some(why) = skip_reason() {
        skip(suite, &why);
        return None;
    }
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG is set but no client can be built from it");
    Some(E2e {
        nncp: Api::all_with(client.clone(), &nncp_resource()),
        nnce: Api::all_with(client.clone(), &nnce_resource()),
        nns: Api::all_with(client.clone(), &nns_resource()),
        nodes: Api::all(client.clone()),
        client,
    })
}

/// The type of a condition list's first `True` condition (what kubectl's Status column shows
/// first), with its reason and message.
pub fn active_condition(obj: &DynamicObject) -> Option<(String, String, String)> {
    conditions(obj).into_iter().find_map(|c| {
        (c["status"] == "True").then(|| {
            (
                c["type"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// The `status.conditions` of an object (empty when it has none).
pub fn conditions(obj: &DynamicObject) -> Vec<Value> {
    obj.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The condition of type `type_`, if present.
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<Value> {
    conditions(obj).into_iter().find(|c| c["type"] == type_)
}

/// Whether condition `type_` is `True`.
pub fn is_true(obj: &DynamicObject, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c["status"] == "True")
}

impl E2e {
    /// Names of the nodes that run a handler (those with a NodeNetworkState), sorted.
    pub async fn handler_nodes(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .nns
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(kube::ResourceExt::name_any)
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("no NodeNetworkState: no handler runs in this cluster");
        }
        Ok(names)
    }

    /// Create or replace policy `p` (server-side apply, field manager `knmstate-e2e`).
    pub async fn apply_policy(&self, p: &DynamicObject) -> Result<DynamicObject> {
        let mut body = serde_json::to_value(p)?;
        body["apiVersion"] = json!("nmstate.io/v1");
        body["kind"] = json!("NodeNetworkConfigurationPolicy");
        let name = p.name_any();
        self.nncp
            .patch(
                &name,
                &PatchParams::apply("knmstate-e2e").force(),
                &Patch::Apply(body),
            )
            .await
            .with_context(|| format!("applying policy {name}"))
    }

    /// Delete a policy (if present) and wait until it and its enactments are gone.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        match self.nncp.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        let lp = ListParams::default().labels(&format!("{POLICY_LABEL}={name}"));
        self.wait_until(
            &format!("policy {name} and its enactments to be deleted"),
            Duration::from_secs(90),
            || async {
                let gone = self.nncp.get_opt(name).await?.is_none();
                let left = self.nnce.list(&lp).await?.items.len();
                Ok((gone && left == 0).then_some(()))
            },
        )
        .await
    }

    /// Apply `desired_state` as policy `name` (optionally on the nodes of `selector`), wait
    /// until it is Available, then delete it: used to undo what a test configured.
    pub async fn restore(
        &self,
        name: &str,
        selector: Option<Value>,
        desired_state: Value,
    ) -> Result<()> {
        self.restore_spec(name, selector, json!({ "desiredState": desired_state }))
            .await
    }

    /// Like [`E2e::restore`] with a whole policy spec (e.g. with captures).
    pub async fn restore_spec(
        &self,
        name: &str,
        selector: Option<Value>,
        mut spec: Value,
    ) -> Result<()> {
        spec["maxUnavailable"] = json!("100%");
        if let Some(sel) = selector {
            spec["nodeSelector"] = sel;
        }
        self.delete_policy(name).await?;
        self.apply_policy(&policy(name, spec)).await?;
        self.wait_policy(name, "Available", Duration::from_mins(2))
            .await?;
        self.delete_policy(name).await
    }

    /// The enactments of a policy, by node name.
    pub async fn enactments(&self, policy: &str) -> Result<BTreeMap<String, DynamicObject>> {
        let lp = ListParams::default().labels(&format!("{POLICY_LABEL}={policy}"));
        Ok(self
            .nnce
            .list(&lp)
            .await?
            .items
            .into_iter()
            .map(|e| {
                let node = e
                    .labels()
                    .get("nmstate.io/node")
                    .cloned()
                    .unwrap_or_else(|| e.name_any());
                (node, e)
            })
            .collect())
    }

    /// Poll `check` every [`POLL_INTERVAL`] until it returns `Some`, or fail after `timeout`
    /// naming `what` (and the check's last error).
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        Ok(eventually_every(what, timeout, POLL_INTERVAL, check).await?)
    }

    /// Wait until policy `name` has condition `type_` True and return it; the error lists the
    /// enactments' active conditions.
    pub async fn wait_policy(
        &self,
        name: &str,
        type_: &str,
        timeout: Duration,
    ) -> Result<DynamicObject> {
        let r = self
            .wait_until(&format!("policy {name} to be {type_}"), timeout, || async {
                let p = self.nncp.get(name).await?;
                Ok(is_true(&p, type_).then_some(p))
            })
            .await;
        match r {
            Ok(p) => Ok(p),
            Err(e) => Err(e.context(format!("enactments:\n{}", self.describe(name).await))),
        }
    }

    /// The enactments' active conditions as `node: Type/Reason: message` lines.
    pub async fn describe(&self, policy: &str) -> String {
        match self.enactments(policy).await {
            Ok(es) => es
                .iter()
                .map(|(node, e)| match active_condition(e) {
                    Some((t, r, m)) => format!("{node}: {t}/{r}: {m}"),
                    None => format!("{node}: no True condition"),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(e) => format!("listing enactments: {e}"),
        }
    }

    /// The NodeNetworkState of `node`.
    pub async fn state(&self, node: &str) -> Result<DynamicObject> {
        Ok(self.nns.get(node).await?)
    }

    /// The interface called `iface` in `node`'s reported current state.
    pub async fn reported_interface(&self, node: &str, iface: &str) -> Result<Option<Value>> {
        let s = self.state(node).await?;
        Ok(s.data["status"]["currentState"]["interfaces"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == iface).cloned()))
    }

    /// Wait until `node`'s reported state has (`present`) or lacks interface `iface`. After a
    /// successful apply the state follows within seconds (upstream's bar is 5 s).
    pub async fn wait_reported(&self, node: &str, iface: &str, present: bool) -> Result<()> {
        let what = format!(
            "{node}'s NodeNetworkState to {} {iface}",
            if present { "show" } else { "drop" }
        );
        self.wait_until(&what, Duration::from_secs(5), || async {
            let found = self.reported_interface(node, iface).await?.is_some();
            Ok((found == present).then_some(()))
        })
        .await
    }

    /// Set (`Some`) or remove (`None`) a label on a Node.
    pub async fn label_node(&self, node: &str, key: &str, value: Option<&str>) -> Result<()> {
        let patch = json!({ "metadata": { "labels": { key: value } } });
        self.nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("labelling node {node}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_active_condition_is_the_first_true_one() {
        let mut e = DynamicObject::new("node1.p", &nnce_resource());
        e.data = json!({"status": {"conditions": [
            {"type": "Failing", "status": "False", "reason": "x"},
            {"type": "Available", "status": "True", "reason": "SuccessfullyConfigured", "message": "ok"}
        ]}});
        assert_eq!(
            active_condition(&e),
            Some((
                "Available".into(),
                "SuccessfullyConfigured".into(),
                "ok".into()
            ))
        );
        assert!(is_true(&e, "Available"));
        assert!(!is_true(&e, "Failing"));
    }
}
