//! This node's enactments whose policy is gone are deleted (the policy was deleted while the
//! handler was down, or its deletion was just seen). Triggered by enactment events and by
//! policy deletions (seen after the policy cache forgot them); otherwise every enactment is
//! looked at again after about 5 hours, as upstream.

use std::sync::Arc;
use std::time::Duration;

use knmstate_api::names;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::policy::delete_enactment;

/// How long before an enactment is looked at again.
pub const SWEEP_INTERVAL: Duration = Duration::from_hours(5);

/// Delete the enactment if its policy no longer exists on the API server.
#[tracing::instrument(skip_all, fields(enactment = %enactment.name_any()))]
pub async fn reconcile<B: Backend>(
    enactment: Arc<NodeNetworkConfigurationEnactment>,
    ctx: Arc<Context<B>>,
) -> Result<Action> {
    let Some(policy) = enactment.labels().get(names::POLICY_LABEL).cloned() else {
        return Ok(Action::await_change());
    };
    if ctx
        .policies
        .get(&ObjectRef::<NodeNetworkConfigurationPolicy>::new(&policy))
        .is_some()
    {
        return Ok(Action::requeue(SWEEP_INTERVAL));
    }
    // The cache may lag: ask the API server before deleting (upstream #1440).
    let fresh = ctx
        .policy_api()
        .get_opt(&policy)
        .await
        .map_err(|e| Error::read(format!("policy {policy}"), e))?;
    if fresh.is_none() {
        delete_enactment(&ctx, &enactment.name_any()).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(SWEEP_INTERVAL))
}

/// Log and try again soon.
// kube's `Controller::run` hands the object and the context over by value.
#[allow(clippy::needless_pass_by_value)]
pub fn error_policy<B: Backend>(
    enactment: Arc<NodeNetworkConfigurationEnactment>,
    err: &Error,
    _ctx: Arc<Context<B>>,
) -> Action {
    tracing::warn!(enactment = %enactment.name_any(), category = err.category(), error = %err.report(), "failed to sweep the enactment");
    Action::requeue(Duration::from_secs(5))
}
