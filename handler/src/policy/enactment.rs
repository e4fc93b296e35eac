//! This node's enactment of a policy: deleted when the policy does not select the node,
//! created (owned by the Node, all conditions Unknown) when missing.

use std::ops::ControlFlow;

use k8s_openapi::api::core::v1::Node;
use knmstate_api::names;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::selector;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;

use super::Step;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::objects;

/// This node's enactment of `policy`, created when missing; ends the reconcile when the policy
/// does not select this node (its enactment deleted) or is gone on the API server.
pub(super) async fn of_this_node<B: Backend>(
    ctx: &Context<B>,
    policy: &NodeNetworkConfigurationPolicy,
    node: &Node,
) -> Result<Step<NodeNetworkConfigurationEnactment>> {
    let name = policy.name_any();
    let enactment = names::enactment_name(ctx.node_name(), &name);
    let matches = selector::policy_matches_node(&policy.spec, node.labels()).unwrap_or_else(|e| {
        tracing::warn!(policy = %name, error = %e, "invalid node selector: treated as not matching");
        false
    });
    if !matches {
        delete_enactment(ctx, &enactment).await?;
        return Ok(ControlFlow::Break(Action::await_change()));
    }
    Ok(
        match ensure_enactment(ctx, policy, node, &enactment).await? {
            Some(existing) => ControlFlow::Continue(existing),
            None => ControlFlow::Break(Action::await_change()),
        },
    )
}

/// Delete this node's enactment of a policy (absent is fine).
pub async fn delete_enactment<B: Backend>(ctx: &Context<B>, name: &str) -> Result<()> {
    match ctx
        .enactment_api()
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => {
            tracing::info!(enactment = name, "deleted enactment");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(source) => Err(Error::DeleteEnactment {
            name: name.to_owned(),
            source,
        }),
    }
}

/// The enactment, created (owned by the Node, all conditions Unknown) when missing; `None`
/// when the policy is gone on the API server. Read from the API server unless the cache shows
/// the version this process last wrote or read ([`Context::known_enactment`]), or does not
/// show it at all (then created at once).
async fn ensure_enactment<B: Backend>(
    ctx: &Context<B>,
    policy: &NodeNetworkConfigurationPolicy,
    node: &Node,
    name: &str,
) -> Result<Option<NodeNetworkConfigurationEnactment>> {
    if let Some(known) = ctx.known_enactment(name) {
        return Ok(Some(known));
    }
    let api = ctx.enactment_api();
    // Not in the synced cache of every enactment: most likely missing (a new policy), so
    // created without a read first; a cache behind an existing one fails the creation, which
    // then reads it.
    ctx.caches.ready().await;
    let cached = ctx.caches.enactment_version(name).is_some();
    let read = if cached {
        api.get_opt(name)
            .await
            .map_err(|e| Error::read(format!("enactment {name}"), e))?
    } else {
        None
    };
    if let Some(e) = read {
        ctx.remember_enactment(&e);
        return Ok(Some(e));
    }
    // Re-read the policy from the API server (not the cache) before creating (upstream #1415).
    let policy_name = policy.name_any();
    let Some(fresh) = ctx
        .policy_api()
        .get_opt(&policy_name)
        .await
        .map_err(|e| Error::read(format!("policy {policy_name}"), e))?
    else {
        return Ok(None);
    };
    if !selector::policy_matches_node(&fresh.spec, node.labels()).unwrap_or(false) {
        return Ok(None);
    }
    let mut labels = ctx.config.extra_labels.clone();
    labels.insert(names::POLICY_LABEL.into(), policy_name.clone());
    labels.insert(names::NODE_LABEL.into(), ctx.node_name().to_owned());
    let obj = NodeNetworkConfigurationEnactment {
        metadata: objects::node_owned(name, labels, node),
        spec: Default::default(),
        status: None,
    };
    let pp = PostParams {
        field_manager: Some(names::field_manager::HANDLER.to_owned()),
        ..Default::default()
    };
    let created = match api.create(&pp, &obj).await {
        Ok(e) => e,
        Err(kube::Error::Api(s)) if s.is_already_exists() => api
            .get(name)
            .await
            .map_err(|e| Error::read(format!("enactment {name}"), e))?,
        Err(source) => {
            return Err(Error::CreateEnactment {
                name: name.to_owned(),
                source,
            });
        }
    };
    tracing::info!(enactment = name, "created enactment");
    ctx.remember_enactment(&created);
    Ok(Some(created))
}
