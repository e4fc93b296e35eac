//! Server-side apply of a rendered installation, in order, with the NMState resource as
//! controller owner (CRDs and the Namespace excepted), skipping kinds the cluster does not
//! serve.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use knmstate_api::names::field_manager;
use knmstate_deploy::Object;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;

use super::error::OperatorError;

/// Whether the cluster serves the object's kind, asked once per group/version. The core
/// group is always served.
pub(super) async fn served(
    client: &Client,
    o: &Object,
    known: &mut HashMap<String, Vec<String>>,
) -> Result<bool, OperatorError> {
    let ar = o.api_resource();
    if ar.group.is_empty() {
        return Ok(true);
    }
    if !known.contains_key(&ar.api_version) {
        let plurals = match client.list_api_group_resources(&ar.api_version).await {
            Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(source) => {
                return Err(OperatorError::Discover {
                    api_version: ar.api_version.clone(),
                    source,
                });
            }
        };
        known.insert(ar.api_version.clone(), plurals);
    }
    Ok(known[&ar.api_version].contains(&ar.plural))
}

/// Apply one object as the operator's field manager, taking over conflicting fields.
async fn apply(client: &Client, o: &Object, owner: &OwnerReference) -> Result<(), OperatorError> {
    let ar = o.api_resource();
    let mut obj: DynamicObject = o.to_dynamic()?;
    if o.owned_by_cr() {
        obj.metadata.owner_references = Some(vec![owner.clone()]);
    }
    let api: Api<DynamicObject> = match o.namespace() {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let params = PatchParams::apply(field_manager::OPERATOR).force();
    api.patch(&o.name_any(), &params, &Patch::Apply(&obj))
        .await
        .map(|_| ())
        .map_err(|source| OperatorError::ApplyObject {
            object: o.describe(),
            source,
        })
}

/// Apply `objects` in order; returns the objects skipped because the cluster does not serve
/// their kind (each logged once per reconcile).
pub async fn apply_all(
    client: &Client,
    objects: &[Object],
    owner: &OwnerReference,
) -> Result<Vec<String>, OperatorError> {
    let mut known = HashMap::new();
    let mut skipped = Vec::new();
    for o in objects {
        if !served(client, o, &mut known).await? {
            tracing::info!(object = %o.describe(), "skipped: the cluster does not serve this kind");
            skipped.push(o.describe());
            continue;
        }
        apply(client, o, owner).await?;
    }
    Ok(skipped)
}
