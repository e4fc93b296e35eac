//! The handler's watch caches of the cluster's rollouts, which the slot path reads instead of
//! listing (upstream lists every Node and every enactment on each slot attempt: O(N²) reads
//! per rollout, #684/#1242): every Node's metadata (which nodes a policy selects, for
//! maxUnavailable), every enactment trimmed to its slot state, and the slot ledgers (the
//! per-policy Leases of [`crate::slots`]). A handler that waits for a slot, or is idle, sends
//! no request: its watches keep these fresh.
//!
//! Safety stays with the ledger write's `resourceVersion` precondition: a stale ledger costs a
//! conflict and a fresh read. The slot protocol ([`slot::decide`]) also trusts the enactment
//! states to be read after the ledger (a holder whose enactment shows an end no longer counts;
//! a node that released has its end state counted), an order two watches do not keep. So the
//! nodes whose cached state disagrees with the ledger read — a holder or tombstone whose
//! enactment is missing from the cache or at an end, a node applying without an entry — are
//! read again from the API server before a decision that writes ([`disputed`]), unless they
//! were already read at the version the cache shows against the same ledger entry
//! ([`DisputeMemo`]). A holder whose cached enactment ended under the very claim its ledger
//! entry names (`status.lastApply.slotClaim`) is not disputed: that end was written after the
//! claim. And a claim that a free slot allows even with every disputed node at its worst
//! needs no read at all (the slot path's `claim_at_worst`).
//!
//! [`slot::decide`]: knmstate_state_engine::slot::decide

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use knmstate_api::names;
use knmstate_api::shared::{ApplyReport, NodeNetworkConfigurationEnactmentStatus};
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::NodeNetworkConfigurationEnactment;
use knmstate_state_engine::concurrency::{self, SlotState};
use knmstate_state_engine::selector;
use knmstate_state_engine::slot::SlotLedger;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;

/// The watch caches of the slot path.
#[derive(Clone)]
pub struct SlotCaches {
    /// Every Node, metadata only.
    pub nodes: Store<PartialObjectMeta<Node>>,
    /// Every enactment, trimmed by [`trim_enactment`].
    pub enactments: Store<NodeNetworkConfigurationEnactment>,
    /// The slot ledgers: Leases labelled with their policy in the handler's namespace.
    pub ledgers: Store<Lease>,
    /// The disputed enactments already read again, and what they agreed on.
    pub disputes: Arc<DisputeMemo>,
}

/// The disputed enactments a decision already read from the API server: per enactment, the
/// `resourceVersion` read and the node's ledger entry it was read against. While the cache
/// shows that version and the ledger that entry, reading again would answer the same (a node
/// that ended without releasing its entry, a ghost already marked), so the cached state stands.
/// A new claim or renewal changes the entry, a new status the version: then it is read again.
#[derive(Debug, Default)]
pub struct DisputeMemo(Mutex<HashMap<String, (Option<String>, String)>>);

impl DisputeMemo {
    /// Whether `enactment` was read at `version` against `entry` already.
    pub fn settled(&self, enactment: &str, version: Option<&str>, entry: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(enactment)
            .is_some_and(|(v, e)| v.as_deref() == version && e == entry)
    }

    /// Remember that `enactment` was read at `version` against `entry`.
    pub fn record(&self, enactment: &str, version: Option<String>, entry: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(enactment.to_owned(), (version, entry));
    }
}

/// `node`'s entry in `ledger` (holder, lease, tombstone), as text to compare.
pub fn ledger_entry(ledger: Option<&SlotLedger>, node: &str) -> String {
    let Some(l) = ledger else {
        return String::new();
    };
    format!(
        "{}:{}:{}:{}",
        l.generation,
        l.holders.contains(node),
        serde_json::to_string(&l.leases.get(node)).unwrap_or_default(),
        serde_json::to_string(&l.expired.get(node)).unwrap_or_default()
    )
}

impl SlotCaches {
    /// Wait until every cache holds its first full list (until then a holder would look gone).
    pub async fn ready(&self) {
        // A store's readiness wakes only its latest waiter: look again until it says ready.
        let step = Duration::from_millis(100);
        while tokio::time::timeout(step, self.nodes.wait_until_ready())
            .await
            .is_err()
        {}
        while tokio::time::timeout(step, self.enactments.wait_until_ready())
            .await
            .is_err()
        {}
        while tokio::time::timeout(step, self.ledgers.wait_until_ready())
            .await
            .is_err()
        {}
    }

    /// Per node with an enactment of `policy` in the cache, what `pick` takes from it.
    fn per_node<T>(
        &self,
        policy: &str,
        pick: impl Fn(&NodeNetworkConfigurationEnactment) -> Option<T>,
    ) -> BTreeMap<String, T> {
        self.enactments
            .state()
            .iter()
            .filter(|e| e.labels().get(names::POLICY_LABEL).map(String::as_str) == Some(policy))
            .filter_map(|e| Some((e.labels().get(names::NODE_LABEL)?.clone(), pick(e)?)))
            .collect()
    }

    /// The slot state for `generation` of each node with an enactment of `policy`.
    pub fn states(&self, policy: &str, generation: i64) -> BTreeMap<String, SlotState> {
        self.per_node(policy, |e| {
            Some(SlotState::of(e.status.as_ref(), generation))
        })
    }

    /// Per node, the slot claim its enactment of `policy` last applied under
    /// (`status.lastApply.slotClaim`), as cached.
    pub fn claims(&self, policy: &str) -> BTreeMap<String, String> {
        self.per_node(policy, |e| {
            e.status.as_ref()?.last_apply.as_ref()?.slot_claim.clone()
        })
    }

    /// The `resourceVersion` of enactment `name` in the cache.
    pub fn enactment_version(&self, name: &str) -> Option<String> {
        self.enactments
            .get(&kube::runtime::reflector::ObjectRef::new(name))
            .and_then(|e| e.metadata.resource_version.clone())
    }

    /// The names of the nodes `policy` selects.
    pub fn matching(&self, policy: &NodeNetworkConfigurationPolicy) -> Vec<String> {
        self.nodes
            .state()
            .iter()
            .filter(|n| selector::policy_matches_node(&policy.spec, n.labels()).unwrap_or(false))
            .map(|n| n.name_any())
            .collect()
    }

    /// maxUnavailable of `policy` over `nodes` nodes (those it selects, at least those with
    /// an enactment).
    pub fn max_unavailable(&self, policy: &NodeNetworkConfigurationPolicy, nodes: usize) -> usize {
        let m = concurrency::max_unavailable(policy.spec.max_unavailable.as_ref(), nodes);
        if let Some(e) = &m.error {
            tracing::warn!(policy = %policy.name_any(), error = %e, "invalid maxUnavailable, using 50%");
        }
        m.value
    }
}

/// What the slot cache keeps of an enactment: its labels and the status fields a slot state
/// is read from (the rest, desired and captured states above all, is never read there).
pub fn trim_enactment(e: &mut NodeNetworkConfigurationEnactment) {
    e.metadata.managed_fields = None;
    e.metadata.annotations = None;
    e.metadata.owner_references = None;
    if let Some(status) = e.status.take() {
        e.status = Some(NodeNetworkConfigurationEnactmentStatus {
            policy_generation: status.policy_generation,
            conditions: status.conditions,
            last_apply: status.last_apply.map(|r| ApplyReport {
                slot_claim: r.slot_claim,
                ..ApplyReport::default()
            }),
            ..Default::default()
        });
    }
}

/// The nodes other than `me` whose cached state disagrees with `ledger` (see the module page):
/// to be read again before a decision.
pub fn disputed(
    ledger: Option<&SlotLedger>,
    generation: i64,
    states: &BTreeMap<String, SlotState>,
    claims: &BTreeMap<String, String>,
    me: &str,
) -> Vec<String> {
    let ledger = ledger.filter(|l| l.generation == generation);
    // A holder whose cached enactment ended under the very claim its entry names: that end
    // was written after the claim, so it stands.
    let ended_under_claim = |n: &String| {
        let claim = ledger.and_then(|l| l.leases.get(n)).map(|l| &l.claim);
        states.get(n).is_some_and(|s| s.is_final())
            && claim.is_some_and(|c| !c.is_empty() && claims.get(n) == Some(c))
    };
    let holders = ledger
        .into_iter()
        .flat_map(|l| l.holders.iter())
        .filter(|n| !ended_under_claim(n));
    let tombstones = ledger.into_iter().flat_map(|l| l.expired.keys());
    let mut nodes: Vec<String> = holders
        .chain(tombstones)
        .filter(|n| states.get(*n).is_none_or(|s| s.is_final()))
        .cloned()
        .collect();
    nodes.extend(
        states
            .iter()
            .filter(|(n, s)| {
                **s == SlotState::Progressing && ledger.is_none_or(|l| !l.holders.contains(*n))
            })
            .map(|(n, _)| n.clone()),
    );
    nodes.retain(|n| n != me);
    nodes.sort();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(holders: &[&str], expired: &[&str]) -> SlotLedger {
        let mut l = SlotLedger::new(1);
        l.holders = holders.iter().map(|h| (*h).to_owned()).collect();
        let lease = knmstate_state_engine::slot::SlotLease::new(
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            Duration::from_secs(1),
            "",
        );
        l.expired = expired
            .iter()
            .map(|h| ((*h).to_owned(), lease.clone()))
            .collect();
        l
    }

    fn states(s: &[(&str, SlotState)]) -> BTreeMap<String, SlotState> {
        s.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    #[test]
    fn a_cache_that_agrees_with_the_ledger_is_trusted() {
        let l = ledger(&["a"], &[]);
        let s = states(&[
            ("a", SlotState::Progressing),
            ("b", SlotState::Pending),
            ("c", SlotState::Available),
        ]);
        assert!(disputed(Some(&l), 1, &s, &BTreeMap::new(), "b").is_empty());
    }

    #[test]
    fn holders_that_look_done_or_unknown_and_appliers_without_an_entry_are_read_again() {
        // a: holder shown done (a drifted node may have written Pending since);
        // b: holder not in the cache yet; g: tombstone shown done; d: applying, no entry
        // (released, its end not seen yet).
        let l = ledger(&["a", "b", "me"], &["g"]);
        let s = states(&[
            ("a", SlotState::Available),
            ("g", SlotState::Aborted),
            ("d", SlotState::Progressing),
            ("me", SlotState::Pending),
        ]);
        assert_eq!(
            disputed(Some(&l), 1, &s, &BTreeMap::new(), "me"),
            ["a", "b", "d", "g"]
        );
    }

    #[test]
    fn a_holder_that_ended_under_the_claim_its_entry_names_is_trusted() {
        let mut l = ledger(&["a", "b", "c"], &[]);
        for (node, claim) in [("a", "c1"), ("b", "c2"), ("c", "")] {
            let mut lease = knmstate_state_engine::slot::SlotLease::new(
                &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                Duration::from_secs(1),
                "",
            );
            claim.clone_into(&mut lease.claim);
            l.leases.insert(node.into(), lease);
        }
        let s = states(&[
            ("a", SlotState::Available),
            ("b", SlotState::Available),
            ("c", SlotState::FailedFinal),
        ]);
        // a ended under c1; b's end is of an earlier claim (it claimed c2 again since); c's
        // entry names no claim (an older handler): both read again.
        let claims = BTreeMap::from([
            ("a".to_owned(), "c1".to_owned()),
            ("b".to_owned(), "c1".to_owned()),
            ("c".to_owned(), String::new()),
        ]);
        assert_eq!(disputed(Some(&l), 1, &s, &claims, "me"), ["b", "c"]);
    }

    #[test]
    fn a_ledger_of_another_generation_names_nobody() {
        let l = ledger(&["a"], &[]);
        let s = states(&[("b", SlotState::Progressing)]);
        let none = BTreeMap::new();
        assert_eq!(disputed(Some(&l), 2, &s, &none, "me"), ["b"]);
        assert_eq!(disputed(None, 2, &s, &none, "me"), ["b"]);
    }

    #[test]
    fn a_trimmed_enactment_keeps_its_slot_state() {
        let mut e: NodeNetworkConfigurationEnactment = serde_json::from_value(serde_json::json!({
            "apiVersion": "nmstate.io/v1beta1", "kind": "NodeNetworkConfigurationEnactment",
            "metadata": {"name": "n.p", "labels": {"nmstate.io/policy": "p", "nmstate.io/node": "n"},
                "managedFields": [{"manager": "x"}]},
            "status": {"policyGeneration": 3, "desiredState": {"interfaces": []},
                "lastApply": {"durationSeconds": 1.0, "slotClaim": "c1"},
                "conditions": [{"type": "Available", "status": "True", "reason": "SuccessfullyConfigured"}]}
        }))
        .expect("enactment");
        let before = SlotState::of(e.status.as_ref(), 3);
        trim_enactment(&mut e);
        assert_eq!(SlotState::of(e.status.as_ref(), 3), before);
        assert_eq!(before, SlotState::Available);
        assert!(e.metadata.managed_fields.is_none());
        assert!(e.status.as_ref().is_some_and(|s| s.desired_state.is_none()));
        let kept = e
            .status
            .and_then(|s| s.last_apply)
            .expect("the claim is kept");
        assert_eq!(kept.slot_claim.as_deref(), Some("c1"));
        assert!(kept.duration_seconds.abs() < f64::EPSILON);
    }
}
