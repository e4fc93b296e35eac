//! Well-known names: the API group, labels, annotations, condition types and reasons, and the
//! enactment naming rule. Values are upstream's, so existing selectors, alerts and scripts keep
//! working.

use std::collections::BTreeMap;

/// The API group of every kind in this crate.
pub const GROUP: &str = "nmstate.io";

/// Label on an enactment naming its policy.
pub const POLICY_LABEL: &str = "nmstate.io/policy";
/// Label on an enactment naming its node.
pub const NODE_LABEL: &str = "nmstate.io/node";
/// Label on a NodeNetworkState whose change asks the node's handler to re-read its state now.
pub const FORCE_NNS_REFRESH_LABEL: &str = "nmstate.io/force-nns-refresh";
/// Annotation the mutating webhook sets on every policy write, in Unix nanoseconds.
pub const WEBHOOK_MUTATING_TIMESTAMP_ANNOTATION: &str = "nmstate.io/webhook-mutating-timestamp";

/// Field managers, one per binary, for server-side apply.
pub mod field_manager {
    /// The per-node handler.
    pub const HANDLER: &str = "knmstate-handler";
    /// The leader-elected controller.
    pub const CONTROLLER: &str = "knmstate-controller";
    /// The admission webhook.
    pub const WEBHOOK: &str = "knmstate-webhook";
    /// The NMState operator (the controller binary's `operator` mode): the installation's
    /// objects and the NMState status.
    pub const OPERATOR: &str = "knmstate-operator";
}

/// Enactment name for a node and a policy: `<node>.<policy>` (upstream's `EnactmentKey`).
///
/// ```
/// assert_eq!(knmstate_api::names::enactment_name("node01", "br1"), "node01.br1");
/// ```
pub fn enactment_name(node: &str, policy: &str) -> String {
    format!("{node}.{policy}")
}

/// The node and the policy of an enactment name `<node>.<policy>`, split at the first dot
/// (the inverse of [`enactment_name`] for node names without dots; the `nmstate.io/node` and
/// `nmstate.io/policy` labels are authoritative where present, see
/// [`NodeNetworkConfigurationEnactment::node_name`](crate::v1beta1::NodeNetworkConfigurationEnactment::node_name)).
///
/// ```
/// use knmstate_api::names::split_enactment_name;
/// assert_eq!(split_enactment_name("node01.br1.v2"), Some(("node01", "br1.v2")));
/// assert_eq!(split_enactment_name("nodot"), None);
/// ```
pub fn split_enactment_name(name: &str) -> Option<(&str, &str)> {
    name.split_once('.')
}

/// Annotation on a policy: `"true"` makes every selected handler plan the policy without
/// applying it (the plan goes to each enactment's `status.plan`). Removing it applies the
/// policy. An annotation, not a spec field, so the CRD stays upstream's.
pub const DRY_RUN_ANNOTATION: &str = "nmstate.io/dry-run";
/// Annotation on a policy: `"true"` makes a handler re-apply the policy when its node drifts
/// from it (through the same slot, probes and rollback as any apply); without it drift is only
/// reported.
pub const REAPPLY_ON_DRIFT_ANNOTATION: &str = "nmstate.io/reapply-on-drift";

/// Annotation of a policy's slot-ledger Lease that holds the ledger (state-engine's
/// `SlotLedger` as JSON).
pub const SLOT_LEDGER_ANNOTATION: &str = "nmstate.io/slot-ledger";

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The name of a policy's slot-ledger Lease (in the handlers' namespace): `nncp-slots-<policy>`, lower-cased with invalid characters
/// replaced, plus a hash suffix when that changed the name.
///
/// ```
/// use knmstate_api::names::slot_lease_name;
/// assert_eq!(slot_lease_name("linux-bridge"), "nncp-slots-linux-bridge");
/// assert!(slot_lease_name("Br_1").starts_with("nncp-slots-br-1-"));
/// ```
pub fn slot_lease_name(policy: &str) -> String {
    let clean: String = policy
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if clean == policy {
        format!("nncp-slots-{clean}")
    } else {
        format!("nncp-slots-{clean}-{:08x}", fnv1a(policy))
    }
}

/// The optional `app.kubernetes.io/*` relationship labels upstream puts on created NNS and
/// NNCE objects, from the `COMPONENT`, `PART_OF`, `VERSION` and `MANAGED_BY` settings; empty
/// values are left out.
pub fn relationship_labels(
    component: Option<&str>,
    part_of: Option<&str>,
    version: Option<&str>,
    managed_by: Option<&str>,
) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/component", component),
        ("app.kubernetes.io/part-of", part_of),
        ("app.kubernetes.io/version", version),
        ("app.kubernetes.io/managed-by", managed_by),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        v.filter(|v| !v.is_empty())
            .map(|v| (k.to_owned(), v.to_owned()))
    })
    .collect()
}

/// Condition types and reasons of NodeNetworkConfigurationEnactments.
pub mod enactment {
    /// The desired state is applied on the node.
    pub const AVAILABLE: &str = "Available";
    /// The last apply failed (also while retries remain).
    pub const FAILING: &str = "Failing";
    /// An apply is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// Waiting for a maxUnavailable slot.
    pub const PENDING: &str = "Pending";
    /// Not applied because enough other nodes already failed.
    pub const ABORTED: &str = "Aborted";
    /// Every enactment condition type, in upstream's order.
    pub const TYPES: [&str; 5] = [AVAILABLE, FAILING, PROGRESSING, PENDING, ABORTED];

    /// Reason while applying.
    pub const REASON_PROGRESSING: &str = "ConfigurationProgressing";
    /// Reason after a successful apply.
    pub const REASON_SUCCESS: &str = "SuccessfullyConfigured";
    /// Reason after retries were exhausted or rendering failed.
    pub const REASON_FAILED: &str = "FailedToConfigure";
    /// Reason while retries remain.
    pub const REASON_RETRYING: &str = "Retrying";
    /// Reason while waiting for a slot.
    pub const REASON_MAX_UNAVAILABLE: &str = "MaxUnavailableLimitReached";
    /// Reason when aborted.
    pub const REASON_ABORTED: &str = "ConfigurationAborted";
    /// Reason on `Pending` while NetworkManager holds a checkpoint another tool created (the
    /// apply waits for it to go). Our addition.
    pub const REASON_FOREIGN_CHECKPOINT: &str = "ForeignCheckpointHeld";
    /// Reason on `Available` of a dry-run policy: planned (`status.plan`), not applied. Our
    /// addition; no condition type is added.
    pub const REASON_PLANNED: &str = "ConfigurationPlanned";
}

/// Condition types and reasons of NodeNetworkConfigurationPolicies.
pub mod policy {
    /// Every matching node applied the policy.
    pub const AVAILABLE: &str = "Available";
    /// At least one node failed or aborted.
    pub const DEGRADED: &str = "Degraded";
    /// The rollout is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// No node matches the selector.
    pub const IGNORED: &str = "Ignored";
    /// Every policy condition type, in upstream's order.
    pub const TYPES: [&str; 4] = [AVAILABLE, DEGRADED, PROGRESSING, IGNORED];

    /// Reason while the rollout is under way.
    pub const REASON_PROGRESSING: &str = "ConfigurationProgressing";
    /// Reason once every node succeeded.
    pub const REASON_SUCCESS: &str = "SuccessfullyConfigured";
    /// Reason once a node failed.
    pub const REASON_FAILED: &str = "FailedToConfigure";
    /// Reason when no node matches.
    pub const REASON_NO_MATCHING_NODE: &str = "NoMatchingNode";
    /// Reason on `Available` of a dry-run policy once every node planned it (our addition).
    pub const REASON_PLANNED: &str = "ConfigurationPlanned";
}

/// Reasons and actions of Kubernetes events that are not condition reasons (the controller's
/// transition events reuse the [`policy`] reasons).
pub mod event {
    /// A reconcile failed; the note starts with the error category.
    pub const REASON_RECONCILE_FAILED: &str = "ReconcileFailed";
    /// The handler's action: reconciling a policy on its node.
    pub const ACTION_RECONCILE: &str = "Reconcile";
    /// The controller's action: aggregating a policy's status from its enactments.
    pub const ACTION_AGGREGATE: &str = "Aggregate";
    /// A node no longer satisfies a policy it applied (Warning on the policy).
    pub const REASON_DRIFTED: &str = "ConfigurationDrifted";
    /// The handler's action: comparing its node with the policies it applied.
    pub const ACTION_DETECT_DRIFT: &str = "DetectDrift";
    /// A maxUnavailable slot's lease ran out (its handler gone for good, or its node cut off):
    /// the holder was pruned and its enactment Aborted (Warning on the policy).
    pub const REASON_SLOT_EXPIRED: &str = "SlotExpired";
    /// A handler restarted while holding a maxUnavailable slot: its previous process died
    /// mid-apply (Warning on the policy).
    pub const REASON_HANDLER_RESTARTED: &str = "HandlerRestarted";
    /// An enactment status over the size cap was written Failing without its large fields
    /// (Warning on the policy).
    pub const REASON_STATUS_TOO_LARGE: &str = "EnactmentStatusTooLarge";
    /// The handler's action: taking, keeping or freeing a maxUnavailable slot.
    pub const ACTION_SLOT: &str = "Slot";
}

/// Condition types and reasons of the NMState operator resource.
pub mod nmstate {
    /// All components are available.
    pub const AVAILABLE: &str = "Available";
    /// Components are being rolled out.
    pub const PROGRESSING: &str = "Progressing";
    /// Something went wrong.
    pub const DEGRADED: &str = "Degraded";
    /// Reason while deploying.
    pub const REASON_DEPLOYING: &str = "Deploying";
    /// Reason once everything is ready.
    pub const REASON_DEPLOYED: &str = "SuccessfullyDeployed";
    /// Reason on a render or apply error.
    pub const REASON_INTERNAL_ERROR: &str = "InternalError";
    /// Reason on an NMState resource that is not reconciled (only the one named
    /// [`HONOURED_NAME`] is).
    pub const REASON_IGNORED: &str = "Ignored";
    /// The name of the one NMState resource the operator reconciles.
    pub const HONOURED_NAME: &str = "nmstate";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_valid_and_distinct() {
        let a = slot_lease_name("Br_1");
        let b = slot_lease_name("br-1");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn relationship_labels_skip_empty_values() {
        let l = relationship_labels(Some("handler"), None, Some(""), Some("knmstate"));
        assert_eq!(l.len(), 2);
        assert_eq!(l["app.kubernetes.io/component"], "handler");
        assert_eq!(l["app.kubernetes.io/managed-by"], "knmstate");
    }
}

/// Kubernetes name syntax checks (label values, qualified names), as the API server applies
/// them; the webhook and the selectors use them.
pub mod syntax {
    fn alnum(c: char) -> bool {
        c.is_ascii_alphanumeric()
    }

    /// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters, not empty.
    fn is_name_part(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.starts_with(alnum)
            && s.ends_with(alnum)
            && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
    }

    /// A DNS-1123 subdomain: lowercase labels joined by dots, at most 253 characters.
    pub fn is_dns1123_subdomain(s: &str) -> bool {
        let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.starts_with(lower)
                    && l.ends_with(lower)
                    && l.chars().all(|c| lower(c) || c == '-')
            })
    }

    /// A label value: empty, or a name part of at most 63 characters.
    ///
    /// ```
    /// use knmstate_api::names::syntax::is_label_value;
    /// assert!(is_label_value(""));
    /// assert!(is_label_value("worker-1.a_b"));
    /// assert!(!is_label_value("-worker"));
    /// assert!(!is_label_value(&"a".repeat(64)));
    /// ```
    pub fn is_label_value(s: &str) -> bool {
        s.is_empty() || is_name_part(s)
    }

    /// A qualified name (label key): `[prefix/]name` with a DNS-1123 subdomain prefix.
    ///
    /// ```
    /// use knmstate_api::names::syntax::is_qualified_name;
    /// assert!(is_qualified_name("node-role.kubernetes.io/worker"));
    /// assert!(is_qualified_name("kubernetes.io/hostname"));
    /// assert!(is_qualified_name("zone"));
    /// assert!(!is_qualified_name("Bad_Prefix/x"));
    /// assert!(!is_qualified_name("a/b/c"));
    /// assert!(!is_qualified_name(""));
    /// ```
    pub fn is_qualified_name(s: &str) -> bool {
        match s.split_once('/') {
            Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_name_part(name),
            None => is_name_part(s),
        }
    }

    /// A policy name must also be a label value (it becomes `nmstate.io/policy`): not empty,
    /// at most 63 characters, label-value syntax.
    pub fn is_policy_name(s: &str) -> bool {
        is_name_part(s)
    }
}
