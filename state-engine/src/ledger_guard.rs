//! Node restriction of the slot ledger: which changes of a policy's [`SlotLedger`] a node's
//! handler may write. The webhook runs [`check`] on every write of a ledger Lease by an identity
//! bound to a node (its `authentication.kubernetes.io/node-name`), with its own clock as `now`.
//!
//! A node owns its own entry (holder or not, its lease, its tombstone): it may claim, renew,
//! release, or mark itself expired. Another node's entry it may change in exactly one way: move
//! a holder whose lease ran out **by the checker's clock** to the tombstones with that same
//! lease (the ghost prune of [`crate::slot`]). Everything else of another node stays as it was:
//! its holder flag, its lease, its tombstone. A write that starts a ledger (none before, one
//! that could not be read, or one of an older policy generation) may name only the writer. A
//! ledger's generation never goes back.
//!
//! That is why [`crate::slot::decide`] leaves other nodes' ended holders and cleared ghosts in
//! the ledger (they no longer count) instead of dropping them: a compromised node can neither
//! free another node's live slot (and so let more than maxUnavailable nodes apply) nor take one
//! in another node's name. The property test `tests/concurrency.rs` checks that every write the
//! protocol makes passes this guard.
//!
//! ```
//! use knmstate_state_engine::ledger_guard::check;
//! use knmstate_state_engine::slot::{SlotLease, SlotLedger};
//! use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
//! use k8s_openapi::jiff::Timestamp;
//! use std::time::Duration;
//!
//! let t = |s| Time(Timestamp::from_second(s).unwrap());
//! let mut old = SlotLedger::new(1);
//! old.holders.insert("node3".into());
//! old.leases.insert("node3".into(), SlotLease::new(&t(0), Duration::from_mins(1), "a"));
//! let mut freed = old.clone();
//! freed.holders.remove("node3");
//! freed.leases.remove("node3");
//! let refused = check(Some(&old), &freed, "node2", &t(30)).unwrap_err();
//! assert_eq!(refused.node(), "node3");
//! // node2 may claim a slot of its own beside node3's.
//! let mut claim = old.clone();
//! claim.holders.insert("node2".into());
//! assert!(check(Some(&old), &claim, "node2", &t(30)).is_ok());
//! ```

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::slot::{SlotLease, SlotLedger};

/// One node's part of a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Entry<'a> {
    holder: bool,
    lease: Option<&'a SlotLease>,
    tombstone: Option<&'a SlotLease>,
}

impl<'a> Entry<'a> {
    fn of(ledger: &'a SlotLedger, node: &str) -> Self {
        Self {
            holder: ledger.holders.contains(node),
            lease: ledger.leases.get(node),
            tombstone: ledger.expired.get(node),
        }
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Why a ledger write was refused; the message names the writer, the other node and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerRefusal {
    /// The write would move the ledger to an older policy generation.
    #[error(
        "the slot ledger is of policy generation {current}; a write of generation {written} would take it back"
    )]
    OlderGeneration {
        /// The generation of the stored ledger.
        current: i64,
        /// The generation written.
        written: i64,
    },
    /// A new ledger (or one of a new generation) names another node.
    #[error(
        "{writer} starts the slot ledger of generation {generation} with an entry for {node}: a new ledger may name only its writer"
    )]
    ForeignEntryInNewLedger {
        /// The writing node.
        writer: String,
        /// The generation written.
        generation: i64,
        /// The other node named.
        node: String,
    },
    /// Another node's holder entry moved to the tombstones while its lease still holds.
    #[error(
        "{writer} prunes {node}'s slot, but {node}'s lease runs until {expires} (now {now}): only an expired holder may be pruned"
    )]
    PrunedLiveHolder {
        /// The writing node.
        writer: String,
        /// The holder.
        node: String,
        /// When its lease runs out.
        expires: String,
        /// The checker's clock.
        now: String,
    },
    /// Any other change of another node's entry.
    #[error(
        "{writer} may change only its own entry of the slot ledger, and this write changes {node}'s ({what}); only {node}'s handler may"
    )]
    ForeignChange {
        /// The writing node.
        writer: String,
        /// The other node.
        node: String,
        /// What changed, in words.
        what: &'static str,
    },
}

impl LedgerRefusal {
    /// The other node whose entry the write touched (empty for [`Self::OlderGeneration`]).
    pub fn node(&self) -> &str {
        match self {
            Self::OlderGeneration { .. } => "",
            Self::ForeignEntryInNewLedger { node, .. }
            | Self::PrunedLiveHolder { node, .. }
            | Self::ForeignChange { node, .. } => node,
        }
    }

    /// A stable kebab-case name of the rule that refused.
    pub fn category(&self) -> &'static str {
        match self {
            Self::OlderGeneration { .. } => "slot-ledger-older-generation",
            Self::ForeignEntryInNewLedger { .. } => "slot-ledger-foreign-entry",
            Self::PrunedLiveHolder { .. } => "slot-ledger-pruned-live-holder",
            Self::ForeignChange { .. } => "slot-ledger-foreign-change",
        }
    }
}

/// Whether `writer` may replace `old` (`None`: no ledger yet, or one that could not be read)
/// with `new` at `now` (the checker's clock). See the module documentation for the rules.
pub fn check(
    old: Option<&SlotLedger>,
    new: &SlotLedger,
    writer: &str,
    now: &Time,
) -> Result<(), LedgerRefusal> {
    let others = |l: &SlotLedger| -> BTreeSet<String> {
        l.holders
            .iter()
            .chain(l.leases.keys())
            .chain(l.expired.keys())
            .filter(|n| *n != writer)
            .cloned()
            .collect()
    };
    let old = match old {
        Some(old) if old.generation > new.generation => {
            return Err(LedgerRefusal::OlderGeneration {
                current: old.generation,
                written: new.generation,
            });
        }
        Some(old) if old.generation == new.generation => old,
        _ => {
            return match others(new).into_iter().next() {
                Some(node) => Err(LedgerRefusal::ForeignEntryInNewLedger {
                    writer: writer.to_owned(),
                    generation: new.generation,
                    node,
                }),
                None => Ok(()),
            };
        }
    };
    let mut nodes = others(old);
    nodes.extend(others(new));
    for node in nodes {
        let (before, after) = (Entry::of(old, &node), Entry::of(new, &node));
        if before == after {
            continue;
        }
        let refuse = |what| LedgerRefusal::ForeignChange {
            writer: writer.to_owned(),
            node: node.clone(),
            what,
        };
        // An entry written by an older handler gets the lease the decision gives it.
        if before.holder && after.holder && before.lease.is_none() {
            if before.tombstone == after.tombstone {
                continue;
            }
            return Err(refuse("its tombstone"));
        }
        // The ghost prune: an expired holder becomes a tombstone with its last lease.
        if before.holder && !after.holder && after.lease.is_none() {
            match (before.lease, after.tombstone) {
                (Some(lease), Some(tomb)) if lease == tomb => {
                    if lease.expired_at(now) {
                        continue;
                    }
                    return Err(LedgerRefusal::PrunedLiveHolder {
                        writer: writer.to_owned(),
                        node: node.clone(),
                        expires: lease.expires.0.to_string(),
                        now: now.0.to_string(),
                    });
                }
                _ => return Err(refuse("it removes its slot")),
            }
        }
        return Err(refuse(if before.holder != after.holder {
            "whether it holds a slot"
        } else if before.lease != after.lease {
            "its lease"
        } else if after.is_empty() {
            "it removes its entry"
        } else {
            "its tombstone"
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use rstest::rstest;
    use std::time::Duration;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn lease(from: i64) -> SlotLease {
        SlotLease::new(&t(from), Duration::from_mins(1), "inc")
    }

    /// Generation 1: node3 holds a slot leased at 0 (until 60), node4 is a tombstone.
    fn ledger() -> SlotLedger {
        let mut l = SlotLedger::new(1);
        l.holders.insert("node3".into());
        l.leases.insert("node3".into(), lease(0));
        l.expired.insert("node4".into(), lease(-100));
        l
    }

    fn claim(l: &mut SlotLedger, node: &str, from: i64) {
        l.holders.insert(node.into());
        l.leases.insert(node.into(), lease(from));
    }

    fn prune(l: &mut SlotLedger, node: &str) {
        l.holders.remove(node);
        let last = l.leases.remove(node).unwrap();
        l.expired.insert(node.into(), last);
    }

    #[rstest]
    #[case::own_claim(|l: &mut SlotLedger| claim(l, "node2", 10), 10, None)]
    #[case::own_renew(|l: &mut SlotLedger| { claim(l, "node2", 10); claim(l, "node2", 20) }, 20, None)]
    #[case::prune_expired(|l: &mut SlotLedger| prune(l, "node3"), 61, None)]
    #[case::prune_live(|l: &mut SlotLedger| prune(l, "node3"), 59, Some("slot-ledger-pruned-live-holder"))]
    #[case::release_other(|l: &mut SlotLedger| { l.holders.remove("node3"); l.leases.remove("node3"); }, 61, Some("slot-ledger-foreign-change"))]
    #[case::renew_other(|l: &mut SlotLedger| claim(l, "node3", 30), 30, Some("slot-ledger-foreign-change"))]
    #[case::claim_for_other(|l: &mut SlotLedger| claim(l, "node5", 30), 30, Some("slot-ledger-foreign-change"))]
    #[case::clear_tombstone(|l: &mut SlotLedger| { l.expired.remove("node4"); }, 30, Some("slot-ledger-foreign-change"))]
    #[case::prune_with_other_lease(|l: &mut SlotLedger| { prune(l, "node3"); l.expired.insert("node3".into(), lease(-500)); }, 61, Some("slot-ledger-foreign-change"))]
    #[case::older_generation(|l: &mut SlotLedger| l.generation = 0, 30, Some("slot-ledger-older-generation"))]
    #[case::new_generation_alone(|l: &mut SlotLedger| { *l = SlotLedger::new(2); claim(l, "node2", 30) }, 30, None)]
    #[case::new_generation_with_other(|l: &mut SlotLedger| { *l = SlotLedger::new(2); claim(l, "node3", 30) }, 30, Some("slot-ledger-foreign-entry"))]
    fn node2_writes(
        #[case] change: fn(&mut SlotLedger),
        #[case] now: i64,
        #[case] refused: Option<&str>,
    ) {
        let old = ledger();
        let mut new = old.clone();
        change(&mut new);
        let got = check(Some(&old), &new, "node2", &t(now));
        assert_eq!(
            got.as_ref().err().map(LedgerRefusal::category),
            refused,
            "{got:?}"
        );
        if let Err(e) = got {
            let text = e.to_string();
            assert!(text.contains("node2") || e.node().is_empty(), "{text}");
        }
    }

    #[test]
    fn a_new_ledger_names_only_its_writer() {
        let mut mine = SlotLedger::new(1);
        claim(&mut mine, "node2", 0);
        assert!(check(None, &mine, "node2", &t(0)).is_ok());
        let refused = check(None, &mine, "node3", &t(0)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "node3 starts the slot ledger of generation 1 with an entry for node2: a new ledger may name only its writer"
        );
    }

    #[test]
    fn the_refusal_says_whose_entry_and_why() {
        let old = ledger();
        let mut new = old.clone();
        new.holders.remove("node3");
        new.leases.remove("node3");
        assert_eq!(
            check(Some(&old), &new, "node2", &t(5))
                .unwrap_err()
                .to_string(),
            "node2 may change only its own entry of the slot ledger, and this write changes node3's (it removes its slot); only node3's handler may"
        );
        let mut pruned = old.clone();
        prune(&mut pruned, "node3");
        assert_eq!(
            check(Some(&old), &pruned, "node2", &t(5))
                .unwrap_err()
                .to_string(),
            "node2 prunes node3's slot, but node3's lease runs until 1970-01-01T00:01:00Z (now 1970-01-01T00:00:05Z): only an expired holder may be pruned"
        );
    }
}
