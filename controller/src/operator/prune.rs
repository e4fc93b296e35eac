//! Pruning: objects the NMState resource owns that the installation no longer renders (a
//! kind or name an older release rendered, an object a setting no longer calls for) are
//! deleted, so an upgrade or a spec change leaves nothing behind. Only objects carrying the
//! resource's uid as owner are candidates: whatever a user made stays.

use std::collections::{BTreeSet, HashMap};

use knmstate_deploy::Installation;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::{ApiResource, DynamicObject};

use super::apply::served;
use super::error::OperatorError;

/// Delete every object of a kind the installation renders that `owner_uid` owns and the
/// installation does not contain; returns them (`kind/[namespace/]name`).
pub async fn prune(
    client: &Client,
    installation: &Installation,
    owner_uid: &str,
) -> Result<Vec<String>, OperatorError> {
    let mut kinds: Vec<(ApiResource, Option<String>)> = Vec::new();
    let mut keep = BTreeSet::new();
    let mut known = HashMap::new();
    for o in installation.objects.iter().filter(|o| o.owned_by_cr()) {
        keep.insert(o.describe());
        if !served(client, o, &mut known).await? {
            continue;
        }
        let scope = (o.api_resource(), o.namespace());
        if !kinds.iter().any(|(ar, ns)| {
            ar.plural == scope.0.plural && ar.group == scope.0.group && *ns == scope.1
        }) {
            kinds.push(scope);
        }
    }
    let mut pruned = Vec::new();
    for (ar, ns) in kinds {
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let failed = |source| OperatorError::Prune {
            kind: ar.kind.clone(),
            source,
        };
        for obj in api
            .list(&ListParams::default())
            .await
            .map_err(failed)?
            .items
        {
            let owned = obj
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner_uid);
            let name = obj.metadata.name.clone().unwrap_or_default();
            let described = match &ns {
                Some(ns) => format!("{}/{ns}/{name}", ar.kind),
                None => format!("{}/{name}", ar.kind),
            };
            if !owned || keep.contains(&described) || obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Ok(_) => {}
                Err(source) => return Err(failed(source)),
            }
            tracing::info!(object = %described, "pruned: no longer part of the installation");
            pruned.push(described);
        }
    }
    Ok(pruned)
}
