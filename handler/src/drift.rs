//! Drift detection riding on the NodeNetworkState refresh: every time the node's state is read
//! (NetworkManager's change stream, each apply, the safety re-read), this node's enactments
//! are compared with it, and a policy whose enactment's drift report no longer says the truth
//! (drifted, drifted elsewhere, or no longer drifted) is reconciled again. The policy
//! reconcile writes the report and decides whether to re-apply (`policy/drift.rs`): every
//! enactment write stays on the one policy reconcile path, so the report can never overwrite
//! an apply's status.

use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::{drift, secrets};
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use crate::context::Context;

/// Ask for a reconcile of every policy whose enactment on this node is out of date with the
/// node's `current` state (as read from the backend, secrets in clear).
pub fn detect<B: Backend>(ctx: &Context<B>, current: &Value) {
    let current = secrets::hidden(current);
    for enactment in ctx.enactments.state() {
        let Some(policy) = enactment
            .policy_name()
            .and_then(|name| ctx.policies.get(&ObjectRef::new(name)))
        else {
            continue;
        };
        let generation = policy.metadata.generation.unwrap_or(0);
        if drift::needs_look(enactment.status.as_ref(), generation, &current) {
            tracing::debug!(policy = ?policy.metadata.name, "looking at the policy again: drift");
            ctx.recheck_policy(ObjectRef::<NodeNetworkConfigurationPolicy>::from_obj(
                &policy,
            ));
        }
    }
}
