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
//! | `KNMSTATE_E2E_METRICS_URL` | the controller's `/metrics` over plain HTTP | the metrics test skips |
//! | `KNMSTATE_REQUIRE_E2E` | set: a skip is a failure (hack/e2e.sh sets it) | skips are allowed |
//!
//! `hack/cluster.sh env` prints all three for the cluster in a box. Policies are handled as
//! [`DynamicObject`]s: the suites check the API as a client sees it, not this repository's types.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    },
};
use serde_json::{Value, json};

/// Label of an enactment naming its policy.
pub const POLICY_LABEL: &str = "nmstate.io/policy";

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

/// A policy object: `spec` as given.
pub fn policy(name: &str, spec: Value) -> DynamicObject {
    let mut p = DynamicObject::new(name, &nncp_resource());
    p.data = json!({ "spec": spec });
    p
}

/// A node selector matching exactly one node by its hostname label.
pub fn on_node(node: &str) -> Value {
    json!({ "kubernetes.io/hostname": node })
}

/// A linux-bridge without ports (so no VLAN filtering is involved) and without addresses.
pub fn bridge(name: &str) -> Value {
    json!({
        "name": name,
        "type": "linux-bridge",
        "state": "up",
        "ipv4": {"enabled": false},
        "ipv6": {"enabled": false},
        "bridge": {"options": {"stp": {"enabled": false}}, "port": []}
    })
}

/// An interface removed.
pub fn absent(name: &str) -> Value {
    json!({"name": name, "state": "absent"})
}

/// The interface of a node's IPv4 default route, as an nmpolicy capture expression.
const GW_IFACE: &str = "{{ capture.gw.routes.running.0.next-hop-interface }}";

/// A policy spec that breaks connectivity: the node's default-route interface keeps its DHCP
/// address but its default route goes through 198.18.0.250, which does not answer. Portable:
/// the interface is found with a capture. The default-gateway probe fails and the handler must
/// roll back.
pub fn bad_gateway_spec() -> Value {
    json!({
        "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
        "desiredState": {
            "interfaces": [{
                "name": GW_IFACE, "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-gateway": false}
            }],
            "routes": {"config": [{
                "destination": "0.0.0.0/0",
                "next-hop-address": "198.18.0.250",
                "next-hop-interface": GW_IFACE
            }]}
        }
    })
}

/// A policy spec whose DNS servers do not answer: the default-route interface ignores the
/// servers DHCP and router advertisements give (`auto-dns: false` on both stacks) and the only
/// server is `servers` (none at all when empty), as upstream's rollback tests do. The DNS probe
/// fails and the handler must roll back.
pub fn bad_dns_spec(servers: &[&str]) -> Value {
    json!({
        "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
        "desiredState": {
            "interfaces": [{
                "name": GW_IFACE, "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-dns": false},
                "ipv6": {"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": false}
            }],
            "dns-resolver": {"config": {"server": servers, "search": []}}
        }
    })
}

/// Undo [`bad_gateway_spec`] and [`bad_dns_spec`]: the default-route interface back on DHCP for
/// addresses, gateway and DNS on both stacks, no static DNS.
pub fn healthy_uplink_spec() -> Value {
    json!({
        "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
        "desiredState": {
            "interfaces": [{
                "name": GW_IFACE, "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-dns": true, "auto-gateway": true},
                "ipv6": {"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": true,
                         "auto-gateway": true}
            }],
            "dns-resolver": {"config": {"server": [], "search": []}}
        }
    })
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
            .map(|n| n.name_any())
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
        self.wait_policy(name, "Available", Duration::from_secs(120))
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

    /// Poll `check` every 500 ms until it returns `Some`, or fail after `timeout`.
    pub async fn wait_until<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last_err = None;
        loop {
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_err = Some(e),
            }
            if Instant::now() >= deadline {
                return Err(match last_err {
                    Some(e) => e.context(format!("timed out after {timeout:?} waiting for {what}")),
                    None => anyhow!("timed out after {timeout:?} waiting for {what}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
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

/// What a watch on a policy's enactments saw: per node, the sequence of active conditions
/// (`Type/Reason`, consecutive repeats folded), and the most enactments ever seen `True` at
/// once per condition type.
#[derive(Debug, Default, Clone)]
pub struct EnactmentLog {
    /// Node → active condition sequence.
    pub sequences: BTreeMap<String, Vec<String>>,
    /// Condition type → most enactments with it `True` at the same time.
    pub peak: BTreeMap<String, usize>,
    current: BTreeMap<String, DynamicObject>,
}

impl EnactmentLog {
    fn observe(&mut self, e: DynamicObject) {
        let node = e
            .labels()
            .get("nmstate.io/node")
            .cloned()
            .unwrap_or_else(|| e.name_any());
        let active = active_condition(&e)
            .map(|(t, r, _)| format!("{t}/{r}"))
            .unwrap_or_else(|| "None".into());
        let seq = self.sequences.entry(node.clone()).or_default();
        if seq.last() != Some(&active) {
            seq.push(active);
        }
        self.current.insert(node, e);
        self.count();
    }

    fn forget(&mut self, e: &DynamicObject) {
        let node = e
            .labels()
            .get("nmstate.io/node")
            .cloned()
            .unwrap_or_else(|| e.name_any());
        self.current.remove(&node);
    }

    fn count(&mut self) {
        for t in ["Progressing", "Failing", "Available", "Pending", "Aborted"] {
            let n = self.current.values().filter(|e| is_true(e, t)).count();
            let peak = self.peak.entry(t.to_owned()).or_default();
            *peak = (*peak).max(n);
        }
    }

    /// The sequence of condition types only (reasons dropped, repeats folded).
    pub fn types(&self, node: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.sequences.get(node).into_iter().flatten() {
            let t = s.split('/').next().unwrap_or_default().to_owned();
            if out.last() != Some(&t) {
                out.push(t);
            }
        }
        out
    }
}

/// A running watch on a policy's enactments; see [`EnactmentLog`].
pub struct EnactmentWatch {
    log: std::sync::Arc<std::sync::Mutex<EnactmentLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl EnactmentWatch {
    /// Start watching the enactments of `policy` (start before creating the policy).
    pub fn start(e2e: &E2e, policy: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let log = std::sync::Arc::new(std::sync::Mutex::new(EnactmentLog::default()));
        let cfg = watcher::Config::default().labels(&format!("{POLICY_LABEL}={policy}"));
        let stream = watcher(e2e.nnce.clone(), cfg);
        let sink = log.clone();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                let Ok(mut l) = sink.lock() else { return };
                match ev {
                    watcher::Event::Apply(e) | watcher::Event::InitApply(e) => l.observe(e),
                    watcher::Event::Delete(e) => l.forget(&e),
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
        });
        Self { log, task }
    }

    /// What was seen so far.
    pub fn snapshot(&self) -> EnactmentLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stop watching and return what was seen.
    pub fn stop(self) -> EnactmentLog {
        self.task.abort();
        self.snapshot()
    }
}

/// Runs commands on nodes through `KNMSTATE_E2E_NODE_EXEC`.
#[derive(Debug, Clone)]
pub struct NodeExec {
    prefix: Vec<String>,
}

impl NodeExec {
    /// From `KNMSTATE_E2E_NODE_EXEC`, or print why the test is skipped and return `None`.
    pub fn from_env(test: &str) -> Option<Self> {
        let prefix: Vec<String> = std::env::var("KNMSTATE_E2E_NODE_EXEC")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if prefix.is_empty() {
            skip(
                test,
                "KNMSTATE_E2E_NODE_EXEC is not set (a command prefix that runs a command on a \
                 node; the cluster in a box: hack/cluster.sh exec)",
            );
            return None;
        }
        Some(Self { prefix })
    }

    /// Run `cmd` on `node`; fail with its output when it exits non-zero. Returns stdout.
    pub fn run(&self, node: &str, cmd: &[&str]) -> Result<String> {
        let out = Command::new(&self.prefix[0])
            .args(&self.prefix[1..])
            .arg(node)
            .args(cmd)
            .output()
            .with_context(|| format!("running {:?} on {node}", cmd))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} on {node} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// GET a plain-HTTP URL (`http://host:port/path`) and return the body.
pub async fn http_get(url: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .with_context(|| format!("connecting to {hostport}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {url}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The value of the sample `name{labels}` in a Prometheus text exposition, where every pair of
/// `labels` must be present (in any order).
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_metric_by_name_and_labels() {
        let text = "# HELP x y\nkubernetes_nmstate_enactments_status{node=\"node1\",status=\"Available\"} 2\n\
                    kubernetes_nmstate_enactments_status{node=\"node2\",status=\"Available\"} 0\n\
                    kubernetes_nmstate_policies_status{status=\"Available\"} 3\n";
        assert_eq!(
            metric_value(
                text,
                "kubernetes_nmstate_enactments_status",
                &[("status", "Available"), ("node", "node1")]
            ),
            Some(2.0)
        );
        assert_eq!(
            metric_value(
                text,
                "kubernetes_nmstate_policies_status",
                &[("status", "Available")]
            ),
            Some(3.0)
        );
        assert_eq!(
            metric_value(
                text,
                "kubernetes_nmstate_policies_status",
                &[("status", "Ignored")]
            ),
            None
        );
    }

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
