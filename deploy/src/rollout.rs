//! The NMState resource's conditions from its workloads' status (upstream's `reconcileStatus`):
//! which Deployments and DaemonSets are still rolling out, and the Available / Progressing /
//! Degraded set that follows.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::names::nmstate as n;
use knmstate_api::{ConditionList, ConditionStatus};

/// Why a DaemonSet is not rolled out yet (upstream's messages), or `None` when it is.
///
/// ```
/// use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
/// let mut ds = DaemonSet::default();
/// ds.metadata.name = Some("nmstate-handler".into());
/// ds.status = Some(DaemonSetStatus { desired_number_scheduled: 3, number_unavailable: Some(2),
///     updated_number_scheduled: Some(3), ..Default::default() });
/// assert_eq!(knmstate_deploy::rollout::daemon_set_pending(&ds).unwrap(),
///     "DaemonSet \"nmstate-handler\" is not available (awaiting 2 nodes)");
/// ```
pub fn daemon_set_pending(ds: &DaemonSet) -> Option<String> {
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let Some(st) = ds.status.as_ref() else {
        return Some(format!("DaemonSet {name:?} is not yet observed"));
    };
    if st.observed_generation.unwrap_or(0) < ds.metadata.generation.unwrap_or(0) {
        return Some(format!("DaemonSet {name:?} update is being processed"));
    }
    let updated = st.updated_number_scheduled.unwrap_or(0);
    if updated < st.desired_number_scheduled {
        return Some(format!(
            "DaemonSet {name:?} update is rolling out ({updated} out of {} updated)",
            st.desired_number_scheduled
        ));
    }
    let unavailable = st.number_unavailable.unwrap_or(0);
    (unavailable > 0)
        .then(|| format!("DaemonSet {name:?} is not available (awaiting {unavailable} nodes)"))
}

/// Why a Deployment is not rolled out yet, or `None` when it is.
pub fn deployment_pending(d: &Deployment) -> Option<String> {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let want = d.spec.replicas.unwrap_or(1);
    let Some(st) = d.status.as_ref() else {
        return Some(format!("Deployment {name:?} is not yet observed"));
    };
    if st.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Some(format!("Deployment {name:?} update is being processed"));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    if updated < want {
        return Some(format!(
            "Deployment {name:?} update is rolling out ({updated} out of {want} updated)"
        ));
    }
    let available = st.available_replicas.unwrap_or(0);
    (available < want).then(|| {
        format!(
            "Deployment {name:?} is not available (awaiting {} pods)",
            want - available
        )
    })
}

/// What the operator concluded about an NMState resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything applied and rolled out; `skipped` names what the cluster cannot hold.
    Deployed {
        /// Objects left out because their kind is not served (e.g. ServiceMonitor).
        skipped: Vec<String>,
    },
    /// Applied, some workloads still rolling out (one line each).
    Deploying {
        /// Per-workload messages.
        pending: Vec<String>,
        /// Objects left out because their kind is not served.
        skipped: Vec<String>,
    },
    /// Rendering or applying failed.
    Failed(String),
    /// Not reconciled: another name than the honoured one.
    Ignored(String),
}

fn with_skipped(message: String, skipped: &[String]) -> String {
    if skipped.is_empty() {
        message
    } else {
        format!(
            "{message}; not installed, the cluster does not serve their kind: {}",
            skipped.join(", ")
        )
    }
}

/// `current` moved to the conditions of `verdict` (timestamps move only on a transition).
pub fn conditions(current: &ConditionList, verdict: &Verdict, now: &Time) -> ConditionList {
    use ConditionStatus::{False, True};
    let (available, progressing, degraded, reason, message) = match verdict {
        Verdict::Deployed { skipped } => (
            True,
            False,
            False,
            n::REASON_DEPLOYED,
            with_skipped("All components are available and ready".into(), skipped),
        ),
        Verdict::Deploying { pending, skipped } => (
            False,
            True,
            False,
            n::REASON_DEPLOYING,
            with_skipped(pending.join("\n"), skipped),
        ),
        Verdict::Failed(m) => (False, False, True, n::REASON_INTERNAL_ERROR, m.clone()),
        Verdict::Ignored(m) => (False, False, True, n::REASON_IGNORED, m.clone()),
    };
    let mut list = current.clone();
    for (type_, status) in [
        (n::AVAILABLE, available),
        (n::PROGRESSING, progressing),
        (n::DEGRADED, degraded),
    ] {
        let m = if status == True { message.as_str() } else { "" };
        list.set(type_, status, reason, m, now.clone());
    }
    list
}
