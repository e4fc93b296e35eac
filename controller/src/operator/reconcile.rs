//! The NMState reconciler: render the installation for the honoured resource, apply it, and
//! report how far the rollout is.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::names::nmstate::HONOURED_NAME;
use knmstate_api::v1::NMState;
use knmstate_deploy::rbac::CLUSTER_READER;
use knmstate_deploy::rollout::Verdict;
use knmstate_deploy::topology::infra_node_count;
use knmstate_deploy::{InstallSettings, Knobs, render};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};

use super::error::OperatorError;
use super::{apply, certs, prune, status};

/// Everything a reconcile needs.
pub struct OperatorContext {
    /// API client.
    pub client: Client,
    /// Namespace, image, prefix (topology and CA bundle are filled in per reconcile).
    pub settings: InstallSettings,
    /// How soon to look again while workloads roll out.
    pub progress_interval: Duration,
    /// How soon to look again once everything is deployed.
    pub resync: Duration,
}

/// Why a resource with another name is left alone.
fn ignored_message(name: &str) -> String {
    format!(
        "only the NMState named {HONOURED_NAME:?} is reconciled; {name:?} is ignored (rename it to {HONOURED_NAME:?} or delete it)"
    )
}

/// Reconcile one NMState resource.
#[tracing::instrument(skip_all, fields(nmstate = %cr.name_any()))]
pub async fn reconcile(
    cr: Arc<NMState>,
    ctx: Arc<OperatorContext>,
) -> Result<Action, OperatorError> {
    // Deleted: the garbage collector removes what it owned (every object but CRDs and the
    // Namespace carries it as controller owner).
    if cr.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = cr.name_any();
    if name != HONOURED_NAME {
        tracing::info!("ignored: not the honoured name");
        status::write(&ctx.client, &cr, &Verdict::Ignored(ignored_message(&name))).await?;
        return Ok(Action::await_change());
    }
    let Some(owner) = cr.controller_owner_ref(&()) else {
        return Ok(Action::await_change());
    };
    let knobs = Knobs::of(&cr.spec);
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| OperatorError::ListNodes { source })?;
    let mut settings = ctx.settings.clone();
    settings.infra_nodes = infra_node_count(&knobs, &nodes.items);
    settings.cluster_reader = has_cluster_reader(&ctx.client).await?;
    // CRDs and the Namespace first: the certificates' Secrets live in it, and the webhook
    // configurations are applied only once they can carry the CA bundle.
    let foundation = render(&cr.spec, &settings)?.objects;
    let split = foundation
        .iter()
        .position(knmstate_deploy::Object::owned_by_cr)
        .unwrap_or(foundation.len());
    let mut skipped = apply::apply_all(&ctx.client, &foundation[..split], &owner).await?;
    let now = Timestamp::now().as_second();
    let issued = certs::ensure(
        &ctx.client,
        &settings.namespace,
        &knobs.rotation,
        &owner,
        now,
    )
    .await?;
    settings.webhook_ca_bundle = Some(issued.bundle);
    let installation = render(&cr.spec, &settings)?;
    let rest: Vec<_> = installation
        .objects
        .iter()
        .filter(|o| o.owned_by_cr())
        .cloned()
        .collect();
    skipped.extend(apply::apply_all(&ctx.client, &rest, &owner).await?);
    prune::prune(&ctx.client, &installation, &owner.uid).await?;
    let pending = status::pending(&ctx.client, &installation).await?;
    let (verdict, next) = if pending.is_empty() {
        (Verdict::Deployed { skipped }, ctx.resync)
    } else {
        (
            Verdict::Deploying { pending, skipped },
            ctx.progress_interval,
        )
    };
    status::write(&ctx.client, &cr, &verdict).await?;
    tracing::info!(?verdict, "reconciled");
    Ok(Action::requeue(
        next.min(issued.due_in.max(Duration::from_secs(1))),
    ))
}

/// Whether the cluster has a `cluster-reader` cluster role (`OpenShift`) to aggregate a
/// read-only role into; looked up every reconcile, so one created or deleted later is followed
/// at the next resync (a role no longer rendered is pruned).
async fn has_cluster_reader(client: &Client) -> Result<bool, OperatorError> {
    Api::<ClusterRole>::all(client.clone())
        .get_opt(CLUSTER_READER)
        .await
        .map(|role| role.is_some())
        .map_err(|source| OperatorError::LookUpClusterReader {
            name: CLUSTER_READER,
            source,
        })
}

/// On failure: say so in the status (`InternalError`), retry soon.
#[tracing::instrument(skip_all, fields(nmstate = %cr.name_any()))]
pub fn error_policy(cr: Arc<NMState>, error: &OperatorError, ctx: Arc<OperatorContext>) -> Action {
    tracing::warn!(category = error.category(), "{}", error.report());
    let verdict = Verdict::Failed(format!("{}: {}", error.category(), error.report()));
    tokio::spawn(async move {
        if let Err(e) = status::write(&ctx.client, &cr, &verdict).await {
            tracing::warn!(category = e.category(), "{}", e.report());
        }
    });
    Action::requeue(Duration::from_secs(10))
}
