//! The slot wait's ranking, grace and look intervals.

use super::*;

fn waiting(next_fallback: Instant) -> Waiting {
    Waiting {
        fallback: backoff(),
        next_fallback,
        free_since: None,
        ledger_version: None,
        asked: None,
        next_look: None,
    }
}

#[test]
fn a_node_looks_again_later_the_more_nodes_wait_ahead_of_it() {
    let now = Instant::now();
    assert_eq!(next_look(0, now), now);
    assert_eq!(next_look(10, now), now + Duration::from_millis(100));
    assert_eq!(next_look(499, now), now + Duration::from_millis(4_990));
    assert_eq!(next_look(5_000, now), now + LOOK_MAX);
    // Never later than the grace the rank itself waits once a slot is free.
    for rank in [1, 10, 100, 1_000] {
        let behind = u32::try_from(rank).unwrap();
        assert!(next_look(rank, now) - now <= GRACE_PER_RANK * behind);
    }
}

fn states(s: &[(&str, SlotState)]) -> BTreeMap<String, SlotState> {
    s.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
}

#[test]
fn free_slots_and_rank_come_from_the_ledger_and_the_states() {
    let mut l = SlotLedger::new(1);
    l.holders.insert("a".into());
    l.holders.insert("z".into()); // ended, not released yet: no longer counts
    let s = states(&[
        ("a", SlotState::Progressing),
        ("b", SlotState::FailedFinal),
        ("c", SlotState::Pending),
        ("d", SlotState::Pending),
        ("e", SlotState::Idle),
        ("z", SlotState::Available),
    ]);
    assert_eq!(rank(Some(&l), 1, &s, &[], 4, "e"), (2, 2));
    assert_eq!(rank(Some(&l), 1, &s, &[], 4, "c"), (2, 0));
    // Selected nodes whose enactment is not seen yet wait ahead too: b0 and c0 (named
    // before e), not f.
    let matching = ["b0", "c0", "f", "c", "a"].map(String::from);
    assert_eq!(rank(Some(&l), 1, &s, &matching, 4, "e"), (2, 4));
    // A ledger of another generation holds nothing.
    assert_eq!(rank(Some(&l), 2, &s, &[], 4, "c").0, 3);
}

#[test]
fn the_first_ranked_go_at_once_the_others_after_a_grace() {
    let now = Instant::now();
    let far = now + Duration::from_hours(1);
    let claim = |rank, version: &str| Judgement {
        action: SlotAction::Apply,
        writes: true,
        free: 5,
        rank,
        ledger_version: Some(version.to_owned()),
    };
    // At most CLAIM_BATCH at once.
    assert!(due(&claim(2, "1"), &mut waiting(far), now));
    let mut w = waiting(far);
    assert!(!due(&claim(5, "1"), &mut w, now));
    assert!(!due(
        &claim(5, "1"),
        &mut w,
        now + Duration::from_millis(1400)
    ));
    assert!(due(&claim(5, "1"), &mut w, now + Duration::from_secs(3)));
    // While the ledger changes (the nodes ahead claim), the grace starts over.
    let mut w = waiting(far);
    assert!(!due(&claim(5, "1"), &mut w, now));
    assert!(!due(&claim(5, "2"), &mut w, now + Duration::from_secs(2)));
    assert!(!due(&claim(5, "2"), &mut w, now + Duration::from_secs(3)));
    assert!(due(&claim(5, "2"), &mut w, now + Duration::from_secs(5)));
}

#[test]
fn nothing_to_do_waits_for_the_fallback_and_a_reconcile_is_asked_once() {
    let now = Instant::now();
    let idle = Judgement {
        action: SlotAction::Wait,
        writes: false,
        free: 0,
        rank: 0,
        ledger_version: None,
    };
    let mut w = waiting(now + Duration::from_secs(10));
    assert!(!due(&idle, &mut w, now));
    assert!(due(&idle, &mut w, now + Duration::from_secs(10)));
    w.asked = Some(now);
    let abort = Judgement {
        action: SlotAction::Abort,
        ..idle
    };
    assert!(!due(&abort, &mut w, now + Duration::from_secs(1)));
    assert!(due(&abort, &mut w, now + Duration::from_secs(3)));
}
