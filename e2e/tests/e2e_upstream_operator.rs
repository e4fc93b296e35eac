//! End-to-end: upstream's operator suite (`nmstate_install_test`) on a running installation —
//! the NMState resource installs the handler DaemonSet and the webhook Deployment (ready),
//! deleting it uninstalls them and creating it again reinstalls a working system; `logLevel:
//! debug` reaches the handler; and the aggregated `nmstate-cluster-reader` role follows the
//! cluster's `cluster-reader` role. Needs a cluster (`KUBECONFIG`) installed by the operator
//! in namespace `nmstate`; skips without one. The cases change the whole installation: one at
//! a time, each leaving it as it found it.

use std::time::Duration;

use knmstate_testkit::cluster::{E2e, bridge, connect, is_true, on_node, policy, skip};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const NS: &str = "nmstate";
const NMSTATE: &str = "nmstate";
const HANDLER: &str = "nmstate-handler";
const WEBHOOK: &str = "nmstate-webhook";
const CONTROLLER: &str = "nmstate-controller";
const READER: &str = "nmstate-cluster-reader";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The APIs the operator's objects live in.
struct Installation {
    nmstate: Api<DynamicObject>,
    daemonsets: Api<DynamicObject>,
    deployments: Api<DynamicObject>,
    cluster_roles: Api<DynamicObject>,
    nodes: usize,
}

impl Installation {
    async fn new(e2e: &E2e) -> anyhow::Result<Self> {
        let c = e2e.client.clone();
        let nodes = e2e.handler_nodes().await?.len();
        Ok(Self {
            nmstate: Api::all_with(
                c.clone(),
                &resource("nmstate.io", "v1", "NMState", "nmstates"),
            ),
            daemonsets: Api::namespaced_with(
                c.clone(),
                NS,
                &resource("apps", "v1", "DaemonSet", "daemonsets"),
            ),
            deployments: Api::namespaced_with(
                c.clone(),
                NS,
                &resource("apps", "v1", "Deployment", "deployments"),
            ),
            cluster_roles: Api::all_with(
                c,
                &resource(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "ClusterRole",
                    "clusterroles",
                ),
            ),
            nodes,
        })
    }

    /// Whether the handler DaemonSet runs an up-to-date, ready pod on every node and the
    /// webhook and controller Deployments have every replica available; the reason when not.
    async fn ready(&self) -> anyhow::Result<Result<(), String>> {
        let Some(ds) = self.daemonsets.get_opt(HANDLER).await? else {
            return Ok(Err(format!("no DaemonSet {HANDLER}")));
        };
        let s = &ds.data["status"];
        let n = |k: &str| s[k].as_u64().unwrap_or_default();
        let rolled = s["observedGeneration"].as_i64() == ds.metadata.generation;
        let want = u64::try_from(self.nodes)?;
        if !(rolled
            && n("desiredNumberScheduled") == want
            && n("numberReady") == want
            && n("updatedNumberScheduled") == want)
        {
            return Ok(Err(format!("{HANDLER} status {s}")));
        }
        // The webhook (upstream's check), and the controller the other suites read metrics from.
        for name in [WEBHOOK, CONTROLLER] {
            let Some(d) = self.deployments.get_opt(name).await? else {
                return Ok(Err(format!("no Deployment {name}")));
            };
            let s = &d.data["status"];
            let replicas = d.data["spec"]["replicas"].as_u64().unwrap_or(1);
            if s["availableReplicas"].as_u64().unwrap_or_default() < replicas.max(1) {
                return Ok(Err(format!("{name} status {s}")));
            }
        }
        Ok(Ok(()))
    }

    /// Wait until NMState `nmstate` is Available and [`Installation::ready`].
    async fn wait_ready(&self, e2e: &E2e, what: &str) -> anyhow::Result<()> {
        e2e.wait_until(what, Duration::from_mins(3), || async {
            let Some(cr) = self.nmstate.get_opt(NMSTATE).await? else {
                return Err(anyhow::anyhow!("no NMState {NMSTATE}"));
            };
            anyhow::ensure!(is_true(&cr, "Available"), "NMState not Available yet");
            self.ready().await?.map_err(|e| anyhow::anyhow!(e))?;
            Ok(Some(()))
        })
        .await
    }

    /// Touch the NMState (an annotation) so the operator reconciles it now.
    async fn nudge(&self, why: &str) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"annotations": {"knmstate-e2e/nudge": why}}});
        self.nmstate
            .patch(NMSTATE, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn handler_rust_log(&self) -> anyhow::Result<String> {
        let ds = self.daemonsets.get(HANDLER).await?;
        Ok(ds.data["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "RUST_LOG")
            .and_then(|e| e["value"].as_str())
            .unwrap_or_default()
            .to_owned())
    }
}

async fn setup(test: &str) -> Option<(E2e, Installation)> {
    let e2e = connect(test).await?;
    let inst = match Installation::new(&e2e).await {
        Ok(i) => i,
        Err(e) => panic!("{test}: {e:#}"),
    };
    match inst.nmstate.get_opt(NMSTATE).await {
        Ok(Some(_)) => Some((e2e, inst)),
        Ok(None) => {
            skip(
                test,
                "no NMState resource: knmstate was not installed by its operator",
            );
            None
        }
        Err(e) => panic!("{test}: reading the NMState: {e}"),
    }
}

/// Upstream "installed" and "uninstalled": with the NMState resource the handler DaemonSet and
/// the webhook Deployment are ready; deleting it removes both; created again, the installation
/// is ready again and a policy goes through the webhook and a handler to Available.
#[tokio::test]
async fn the_nmstate_resource_installs_uninstalls_and_reinstalls() -> anyhow::Result<()> {
    let Some((e2e, inst)) = setup("install and uninstall").await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    inst.wait_ready(&e2e, "the installation to be ready")
        .await?;
    let spec = inst.nmstate.get(NMSTATE).await?.data["spec"].clone();

    inst.nmstate
        .delete(NMSTATE, &DeleteParams::default())
        .await?;
    let gone = e2e
        .wait_until(
            "the handler DaemonSet and the webhook Deployment to be removed",
            Duration::from_mins(2),
            || async {
                let ds = inst.daemonsets.get_opt(HANDLER).await?;
                let d = inst.deployments.get_opt(WEBHOOK).await?;
                let cr = inst.nmstate.get_opt(NMSTATE).await?;
                Ok((ds.is_none() && d.is_none() && cr.is_none()).then_some(()))
            },
        )
        .await;

    // Whatever happened: install again, as a user does.
    let mut cr = DynamicObject::new(
        NMSTATE,
        &resource("nmstate.io", "v1", "NMState", "nmstates"),
    );
    cr.data = json!({"spec": spec});
    inst.nmstate.create(&PostParams::default(), &cr).await?;
    inst.wait_ready(&e2e, "the installation to be ready again")
        .await?;
    gone?;
    let node = e2e.handler_nodes().await?.remove(0);
    let name = "e2e-ups-reinstalled";
    e2e.delete_policy(name).await?;
    e2e.apply_policy(&policy(
        name,
        json!({"nodeSelector": on_node(&node),
               "desiredState": {"interfaces": [bridge("e2ereins0")]}}),
    ))
    .await?;
    let available = e2e
        .wait_policy(name, "Available", Duration::from_mins(2))
        .await;
    e2e.delete_policy(name).await?;
    e2e.restore(
        &format!("{name}-undo"),
        Some(on_node(&node)),
        json!({"interfaces": [knmstate_testkit::cluster::absent("e2ereins0")]}),
    )
    .await?;
    available.map(|_| ())
}

async fn set_log_level(inst: &Installation, level: Value) -> anyhow::Result<()> {
    inst.nmstate
        .patch(
            NMSTATE,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"logLevel": level}})),
        )
        .await?;
    Ok(())
}

/// Upstream "logLevel debug": set on the NMState, the handler DaemonSet is rolled out with the
/// debug filter for the handler and nmstate; unset, back to the default filter.
#[tokio::test]
async fn debug_log_level_reaches_the_handler() -> anyhow::Result<()> {
    let Some((e2e, inst)) = setup("logLevel debug").await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    inst.wait_ready(&e2e, "the installation to be ready")
        .await?;
    let before = inst.handler_rust_log().await?;
    anyhow::ensure!(!before.contains("=debug"), "RUST_LOG {before} before");
    set_log_level(&inst, json!("debug")).await?;
    let outcome = async {
        e2e.wait_until(
            "the handler DaemonSet to roll out with the debug filter",
            Duration::from_mins(3),
            || async {
                let log = inst.handler_rust_log().await?;
                let ready = inst.ready().await?.is_ok();
                Ok((log.contains("knmstate_handler=debug")
                    && log.contains("nmstate=debug")
                    && ready)
                    .then_some(()))
            },
        )
        .await
    }
    .await;
    set_log_level(&inst, Value::Null).await?;
    e2e.wait_until(
        "the handler DaemonSet to roll back to the default filter",
        Duration::from_mins(3),
        || async {
            let log = inst.handler_rust_log().await?;
            let ready = inst.ready().await?.is_ok();
            Ok((log == before && ready).then_some(()))
        },
    )
    .await?;
    outcome
}

/// Upstream's aggregated cluster-reader role: once the cluster has a `cluster-reader` role
/// (as `OpenShift` has), the operator adds `nmstate-cluster-reader`, labelled to aggregate into
/// it, read-only on the `nmstate.io` kinds; once `cluster-reader` is gone, so is the role.
#[tokio::test]
async fn the_cluster_reader_role_follows_the_clusters_cluster_reader() -> anyhow::Result<()> {
    let Some((e2e, inst)) = setup("cluster-reader role").await else {
        return Ok(());
    };
    let _serial = SERIAL.lock().await;
    if inst
        .cluster_roles
        .get_opt("cluster-reader")
        .await?
        .is_some()
    {
        skip(
            "cluster-reader role",
            "the cluster has its own cluster-reader role",
        );
        return Ok(());
    }
    let mut role = DynamicObject::new(
        "cluster-reader",
        &resource(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
    );
    role.data = json!({"rules": []});
    inst.cluster_roles
        .create(&PostParams::default(), &role)
        .await?;
    inst.nudge("cluster-reader-created").await?;
    let added = e2e
        .wait_until(
            &format!("the operator to add {READER}"),
            Duration::from_mins(1),
            || async { Ok(inst.cluster_roles.get_opt(READER).await?) },
        )
        .await;
    inst.cluster_roles
        .delete("cluster-reader", &DeleteParams::default())
        .await?;
    inst.nudge("cluster-reader-deleted").await?;
    let pruned = e2e
        .wait_until(
            &format!("the operator to prune {READER}"),
            Duration::from_mins(1),
            || async {
                Ok(inst
                    .cluster_roles
                    .get_opt(READER)
                    .await?
                    .is_none()
                    .then_some(()))
            },
        )
        .await;
    let added = added.map_err(|e| e.context(operator_context()))?;
    let labels = added.metadata.labels.clone().unwrap_or_default();
    anyhow::ensure!(
        labels
            .get("rbac.authorization.k8s.io/aggregate-to-cluster-reader")
            .map(String::as_str)
            == Some("true"),
        "{READER} labels {labels:?}"
    );
    let rule = &added.data["rules"][0];
    anyhow::ensure!(
        rule["apiGroups"] == json!(["nmstate.io"])
            && rule["verbs"] == json!(["get", "list", "watch"]),
        "{READER} rule {rule}"
    );
    pruned.map_err(|e| e.context(operator_context()))
}

/// A failure's context: the operator's warnings and errors and its last reconciles, and the API
/// stand-in's refusals, from the box's logs (`KNMSTATE_E2E_LOGS`), when the suite has them.
fn operator_context() -> String {
    let Some(dir) = std::env::var_os("KNMSTATE_E2E_LOGS") else {
        return "(KNMSTATE_E2E_LOGS unset: no logs)".into();
    };
    let dir = std::path::PathBuf::from(dir);
    let mut out = String::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pod-nmstate-operator-") || n == "apiserver.log")
        })
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains(" WARN ")
                    || l.contains(" ERROR ")
                    || l.contains("cluster-reader")
                    || l.contains("reconciled verdict")
            })
            .collect();
        let tail = kept[kept.len().saturating_sub(25)..].join("\n");
        out.push_str(&format!("\n--- {} ---\n{tail}", path.display()));
    }
    out
}
