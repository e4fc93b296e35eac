//! The per-policy slot ledger state-engine's concurrency protocol asks for: a `Lease` in the
//! handler's namespace, named after the policy, whose annotation [`LEDGER_ANNOTATION`] holds
//! the [`SlotLedger`] as JSON. Writes carry the `resourceVersion` that was read (creation
//! fails if someone else created it first), so two handlers racing for the last slot cannot
//! both win. The Lease is owned by the policy and goes away with it.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_state_engine::concurrency::{SlotLedger, SlotState};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};

use crate::error::{Error, Result};

/// Annotation of the ledger Lease that holds the ledger.
pub const LEDGER_ANNOTATION: &str = "nmstate.io/slot-ledger";

/// A ledger as read, with the `resourceVersion` to write against (`None`: no Lease yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadLedger {
    /// The ledger, if any.
    pub ledger: Option<SlotLedger>,
    /// Version of the Lease read.
    pub resource_version: Option<String>,
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The Lease name for a policy: `nncp-slots-<policy>`, lower-cased with invalid characters
/// replaced, plus a hash suffix when that changed the name.
///
/// ```
/// use knmstate_handler::slots::lease_name;
/// assert_eq!(lease_name("linux-bridge"), "nncp-slots-linux-bridge");
/// assert!(lease_name("Br_1").starts_with("nncp-slots-br-1-"));
/// ```
pub fn lease_name(policy: &str) -> String {
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

/// Count a ledger entry as a holder until its enactment reaches an end: an entry of
/// `generation` whose node's state is [`SlotState::Idle`] or [`SlotState::Pending`] becomes
/// [`SlotState::Progressing`] in `states`.
///
/// A node writes `Progressing` only after its ledger write won the slot, so between the two its
/// enactment still says `Idle` or `Pending`; without this another handler would prune the
/// fresh entry and take the slot too. An entry is still dropped once its enactment says
/// Available, failed or Aborted, or its node no longer matches (no key in `states`), so no
/// slot leaks; a node that crashed between the two writes resumes its slot on restart.
///
/// ```
/// use knmstate_handler::slots::count_ledger_claims;
/// use knmstate_state_engine::concurrency::{SlotLedger, SlotState};
/// use std::collections::BTreeMap;
/// let mut ledger = SlotLedger::new(1);
/// ledger.holders.insert("n1".into());
/// let mut states = BTreeMap::from([("n1".to_string(), SlotState::Pending)]);
/// count_ledger_claims(&mut states, 1, Some(&ledger));
/// assert_eq!(states["n1"], SlotState::Progressing);
/// ```
pub fn count_ledger_claims(
    states: &mut BTreeMap<String, SlotState>,
    generation: i64,
    ledger: Option<&SlotLedger>,
) {
    let Some(ledger) = ledger.filter(|l| l.generation == generation) else {
        return;
    };
    for holder in &ledger.holders {
        if let Some(s) = states.get_mut(holder)
            && matches!(s, SlotState::Idle | SlotState::Pending)
        {
            *s = SlotState::Progressing;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use knmstate_state_engine::concurrency::{SlotDecision, decide_slot};

    #[test]
    fn a_fresh_claim_counts_before_its_enactment_says_progressing() {
        let mut ledger = SlotLedger::new(2);
        ledger
            .holders
            .extend(["n1".to_owned(), "n3".to_owned(), "gone".to_owned()]);
        let mut states = BTreeMap::from([
            ("n1".to_owned(), SlotState::Idle),
            ("n2".to_owned(), SlotState::Idle),
            ("n3".to_owned(), SlotState::Available),
        ]);
        count_ledger_claims(&mut states, 2, Some(&ledger));
        assert_eq!(states["n1"], SlotState::Progressing);
        assert_eq!(states["n2"], SlotState::Idle);
        assert_eq!(
            states["n3"],
            SlotState::Available,
            "a finished entry is pruned"
        );
        assert!(!states.contains_key("gone"));
        assert_eq!(
            decide_slot("n2", 2, Some(&ledger), &states, 1),
            SlotDecision::Wait
        );
        // Another generation's ledger says nothing.
        let mut other = BTreeMap::from([("n1".to_owned(), SlotState::Pending)]);
        count_ledger_claims(&mut other, 3, Some(&ledger));
        assert_eq!(other["n1"], SlotState::Pending);
    }

    #[test]
    fn lease_names_are_valid_and_distinct() {
        let a = lease_name("Br_1");
        let b = lease_name("br-1");
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
