//! The per-policy slot ledger state-engine's concurrency protocol asks for: a `Lease` in the
//! handler's namespace, named after the policy, whose annotation [`LEDGER_ANNOTATION`] holds
//! the [`SlotLedger`] as JSON. Writes carry the `resourceVersion` that was read (creation
//! fails if someone else created it first), so two handlers racing for the last slot cannot
//! both win. The Lease is owned by the policy and goes away with it.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_state_engine::concurrency::SlotLedger;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::error::{Error, Result};
use knmstate_api::names::{
    SLOT_LEDGER_ANNOTATION as LEDGER_ANNOTATION, slot_lease_name as lease_name,
};

/// A ledger as read, with the `resourceVersion` to write against (`None`: no Lease yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadLedger {
    /// The ledger, if any.
    pub ledger: Option<SlotLedger>,
    /// Version of the Lease read.
    pub resource_version: Option<String>,
}

/// Read the ledger of `policy`.
pub async fn read(leases: &Api<Lease>, policy: &str) -> Result<ReadLedger> {
    let name = lease_name(policy);
    let lease = leases
        .get_opt(&name)
        .await
        .map_err(|e| Error::read(format!("lease {name}"), e))?;
    Ok(match lease {
        None => ReadLedger {
            ledger: None,
            resource_version: None,
        },
        Some(l) => ReadLedger {
            ledger: l
                .annotations()
                .get(LEDGER_ANNOTATION)
                .and_then(|s| serde_json::from_str(s).ok()),
            resource_version: l.resource_version(),
        },
    })
}

/// Write `next` against what was read. `Ok(false)` on a conflict (someone wrote in between).
pub async fn write(
    leases: &Api<Lease>,
    policy: &NodeNetworkConfigurationPolicy,
    read: &ReadLedger,
    next: &SlotLedger,
) -> Result<bool> {
    let policy_name = policy.name_any();
    let json = serde_json::to_string(next).map_err(|source| Error::Serialize {
        what: "slot ledger".into(),
        source,
    })?;
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(&policy_name)),
            resource_version: read.resource_version.clone(),
            annotations: Some(BTreeMap::from([(LEDGER_ANNOTATION.to_owned(), json)])),
            labels: Some(BTreeMap::from([(
                knmstate_api::names::POLICY_LABEL.to_owned(),
                policy_name.clone(),
            )])),
            owner_references: policy.owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: None,
    };
    let pp = PostParams {
        field_manager: Some(knmstate_api::names::field_manager::HANDLER.to_owned()),
        ..Default::default()
    };
    let res = match read.resource_version {
        None => leases.create(&pp, &lease).await.map(|_| ()),
        Some(_) => leases
            .replace(&lease_name(&policy_name), &pp, &lease)
            .await
            .map(|_| ()),
    };
    match res {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
        Err(source) => Err(Error::WriteSlotLedger {
            policy: policy_name,
            source,
        }),
    }
}
