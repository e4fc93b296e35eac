//! Types shared by every version of a kind: statuses and nested spec types.

use crate::condition::ConditionList;
use crate::state::State;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Observed status of a NodeNetworkConfigurationPolicy, written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationPolicyStatus {
    /// Aggregated rollout conditions: `Available`, `Degraded`, `Progressing`, `Ignored`.
    #[serde(default, skip_serializing_if = "ConditionList::is_empty")]
    pub conditions: ConditionList,
    /// Vestigial (kept for compatibility, never written): total number of potentially
    /// unavailable nodes processing this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_node_count: Option<i64>,
    /// Vestigial (kept for compatibility, never written): time of the last
    /// `unavailableNodeCount` update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unavailable_node_count_update: Option<Time>,
    /// Policy generation (decimal string) to number of nodes applying it at once. Kept for
    /// compatibility with upstream readers; concurrency here is decided from the enactments
    /// themselves, so this map is informational and can never deadlock a rollout.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unavailable_node_count_map: BTreeMap<String, i64>,
}

/// Version and time of a rendered or captured state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationEnactmentMetaInfo {
    /// Version of the state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// When the state was produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// A resolved nmpolicy capture, cached so that captures stay stable once the node's network
/// has changed (e.g. after the default-gateway NIC was moved under a bridge).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationEnactmentCapturedState {
    /// The captured state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// When and from which version it was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_info: Option<NodeNetworkConfigurationEnactmentMetaInfo>,
}

/// One probe run while the checkpoint was held.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// Probe name: `default-gateway`, `dns`, `api-server` or `node-readiness`.
    pub name: String,
    /// Whether the probe passed.
    pub succeeded: bool,
    /// How long the probe ran, in seconds.
    pub duration_seconds: f64,
    /// Why it failed, when it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What the last apply attempt on this node did (our addition; the controller turns it into
/// the apply-duration, rollback and probe-duration metrics).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// When the attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// Wall time from checkpoint to commit or rollback, in seconds.
    pub duration_seconds: f64,
    /// Whether the change was rolled back.
    #[serde(default)]
    pub rolled_back: bool,
    /// Stable category of the failure that caused the rollback, e.g. `probe-failed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rollback_reason: String,
    /// The probes that ran while the checkpoint was held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeReport>,
    /// After a rollback, whether the same probes passed again (connectivity came back); absent
    /// when nothing was rolled back or the probes did not run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_restored: Option<bool>,
    /// How long each step of the handler's reconcile that made this attempt took, so that the
    /// slowest step is visible (our addition); absent for an attempt that died with its
    /// handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<ApplySteps>,
    /// The maxUnavailable slot claim this attempt was made under, as the policy's slot ledger
    /// names it (our addition): the other nodes know from it that this node's entry in the
    /// ledger is ended, without reading the enactment again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_claim: Option<String>,
}

/// How long each step of the reconcile that made an apply attempt took, in seconds, in the
/// order they ran. The status write that reports the attempt is not among them (it carries
/// them); the handler logs its duration. Each step is optional in the schema (0 when absent):
/// a later status write that drops the steps (an attempt that died with its handler) may leave
/// an emptied `steps` behind under server-side apply, and that must not be refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ApplySteps {
    /// Rendering the desired state and deciding to apply it: captures resolved against the
    /// node's state (as the handler keeps it, read again only when the node changed), the
    /// checks of the rendered state, the plan against the node's state.
    pub render_seconds: f64,
    /// Claiming a concurrency slot of the policy (maxUnavailable): the slot ledger read and
    /// written, and whatever state the protocol decides from.
    pub slot_claim_seconds: f64,
    /// Writing the `Progressing` status, then choosing the probes (the external probes, API
    /// server and node readiness, are checked before the apply, together).
    pub progressing_seconds: f64,
    /// The check that the slot is still held (the fence), then nmstate's apply holding a
    /// checkpoint, its verification included, up to the start of the probes.
    pub apply_seconds: f64,
    /// The probes, run together: from the first one's start to the last verdict needed (each
    /// probe's own time is in `probes`).
    pub probes_seconds: f64,
    /// From the last verdict of the probes: the check that the slot is still held (the
    /// fence), then the commit of the checkpoint; or the rollback, with the probes run again
    /// after it.
    pub commit_seconds: f64,
}

/// Observed status of one node × policy enactment, written by that node's handler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkConfigurationEnactmentStatus {
    /// The desired state rendered for this node: captures resolved and the default
    /// linux-bridge VLAN trunk injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<State>,
    /// Vestigial (kept for compatibility, never written): meta information of the rendered
    /// desired state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state_meta_info: Option<NodeNetworkConfigurationEnactmentMetaInfo>,
    /// Resolved captures by name, reused on the next render.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captured_states: BTreeMap<String, NodeNetworkConfigurationEnactmentCapturedState>,
    /// The policy `metadata.generation` this status belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_generation: Option<i64>,
    /// Enactment conditions: `Available`, `Failing`, `Progressing`, `Pending`, `Aborted`.
    #[serde(default, skip_serializing_if = "ConditionList::is_empty")]
    pub conditions: ConditionList,
    /// nmstate features used by the rendered desired state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
    /// Policy generation (decimal string) to failed apply attempts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retry_count: BTreeMap<String, i64>,
    /// What the last apply attempt did: duration, rollback, probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<ApplyReport>,
    /// What applying the policy would change on this node, written instead of applying while
    /// the policy carries `nmstate.io/dry-run: "true"` (our addition).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    #[schemars(with = "Option<EnactmentPlan>")]
    pub plan: Option<EnactmentPlan>,
    /// Set while the node no longer satisfies the desired state it applied (our addition).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_as_none"
    )]
    #[schemars(with = "Option<DriftReport>")]
    pub drift: Option<DriftReport>,
}

/// An optional status object read as absent when it holds nothing: removing a field by
/// server-side apply may leave its parent behind as `{}`.
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialEq,
{
    Ok(Option::<T>::deserialize(d)?.filter(|v| *v != T::default()))
}

/// A dry run's plan for one node: what applying the desired state would change, and the probes
/// that would guard the apply.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnactmentPlan {
    /// When the plan was computed, from the node's state at that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// One line per change, e.g. `interface br1 (linux-bridge): create` or
    /// `interface eth1 (ethernet): change controller`; empty when the node already satisfies
    /// the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<String>,
    /// The full plan (interfaces created, changed or removed; routes added and removed; the
    /// DNS change; the default-route facts), as the handler computes it.
    #[serde(default, skip_serializing_if = "State::is_empty")]
    pub changes: State,
    /// The probes that would run after the apply, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<String>,
    /// The probes that would be skipped, each as `<probe>: <why>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_probes: Vec<String>,
}

/// How the node departs from the desired state it applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    /// When the handler first saw this drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// The paths of the desired state the node no longer satisfies, e.g.
    /// `interfaces[br1].bridge.port`, `routes.config[198.19.0.0/24]`, `dns-resolver.config`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Whether the handler re-applies the policy (`nmstate.io/reapply-on-drift: "true"`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reapply: bool,
}

/// Observed network state of one node, written by that node's handler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetworkStateStatus {
    /// The node's current network state, filtered (unmanaged veths, timers and address
    /// lifetimes dropped) and size-capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_state: Option<State>,
    /// When `currentState` last changed and was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_update_time: Option<Time>,
    /// Vestigial (kept for compatibility, never written).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handler_network_manager_version: String,
    /// Version of the nmstate library the handler uses.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handler_nmstate_version: String,
    /// Version of NetworkManager running on the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_network_manager_version: String,
    /// Vestigial (kept for compatibility, never written).
    #[serde(default, skip_serializing_if = "ConditionList::is_empty")]
    pub conditions: ConditionList,
}

/// Per-policy override of one connectivity probe (upstream #831).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOverride {
    /// Set to false to skip this probe for this policy (e.g. when the policy removes the
    /// default gateway on purpose). Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long the probe may keep failing before the change is rolled back, in seconds.
    /// Defaults to the handler's setting (120 s upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
}

/// Per-policy override of the DNS probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsProbeOverride {
    /// Set to false to skip the DNS probe for this policy. Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How long the probe may keep failing before rollback, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,
    /// Name to resolve instead of the handler's `PROBE_DNS_HOST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Per-policy control of the connectivity probes that guard an apply (our addition; absent
/// means the handler's defaults, exactly as upstream behaves).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProbes {
    /// The default-gateway reachability probe (ICMP, with a TCP fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_gateway: Option<ProbeOverride>,
    /// The name-resolution probe against the node's running name servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsProbeOverride>,
    /// The API-server reachability probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ProbeOverride>,
    /// The node-readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_readiness: Option<ProbeOverride>,
    /// How long NetworkManager holds the checkpoint before it rolls back by itself, in
    /// seconds. Defaults to the handler's setting (480 s upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 7200))]
    pub checkpoint_timeout_seconds: Option<u32>,
}

/// Observed status of the NMState operator resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NMStateStatus {
    /// `Available`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "ConditionList::is_empty")]
    pub conditions: ConditionList,
}

/// Rotation settings of the self-signed webhook certificates (Go durations, e.g. `8760h0m0s`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfSignConfiguration {
    /// How long the CA is valid. Default `8760h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotate_interval: Option<String>,
    /// How long an old CA stays trusted after rotation. Default `24h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_overlap_interval: Option<String>,
    /// How long a serving certificate is valid. Default `4380h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_rotate_interval: Option<String>,
    /// How long an old certificate stays valid after rotation. Default `24h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_overlap_interval: Option<String>,
}

/// DNS probe settings of the NMState resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NMStateDnsProbe {
    /// Host the DNS probe resolves. Default `root-servers.net`.
    #[serde(default = "default_probe_host")]
    pub host: String,
}

fn default_probe_host() -> String {
    "root-servers.net".to_owned()
}

/// Probe settings of the NMState resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NMStateProbeConfiguration {
    /// The DNS probe; becomes the handler's `PROBE_DNS_HOST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<NMStateDnsProbe>,
}

/// Metrics settings of the NMState resource.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NMStateMetricsConfiguration {
    /// Address the metrics endpoint binds to. Default `:8089`.
    #[serde(default = "default_metrics_bind")]
    pub bind_address: String,
}

fn default_metrics_bind() -> String {
    ":8089".to_owned()
}

/// Handler log level.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Normal logging.
    #[default]
    Info,
    /// Verbose logging, including nmstate's own debug output.
    Debug,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_or_drift_left_empty_reads_as_absent() {
        let s: NodeNetworkConfigurationEnactmentStatus =
            serde_json::from_value(serde_json::json!({"plan": {}, "drift": {"reapply": false}}))
                .unwrap();
        assert_eq!((s.plan, s.drift), (None, None));
        let s: NodeNetworkConfigurationEnactmentStatus =
            serde_json::from_value(serde_json::json!({"drift": {"paths": ["interfaces[br1]"]}}))
                .unwrap();
        assert_eq!(s.drift.unwrap().paths, ["interfaces[br1]"]);
    }
}
