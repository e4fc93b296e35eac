//! A corpus of 10,000 malformed policies through the real admission entry point
//! (`Admission::review`): mutations (`mutate`, fixed seed) of the example policies and of the
//! fixture reviews' policies, anywhere in the object (name, selectors, `maxUnavailable`,
//! `capture`, the desired state), as creates and as updates. No review may panic or go
//! unanswered, and every denial names its fields. The figures are printed
//! (`cargo test -p knmstate-webhook --test corpus -- --nocapture`).

mod mutate;

use knmstate_webhook::admission::{
    Admission, MUTATE_PATH, STATUS_MUTATE_PATH, TIMESTAMP_MUTATE_PATH,
};
use mutate::{Answer, Rng, base_policies, mutate, review, validate};
use serde_json::Value;
use std::time::Instant;

const POLICIES: usize = 10_000;
const SEED: u64 = 0x636f_7270_7573_0001;

/// What one worker saw.
#[derive(Default)]
struct Tally {
    rejected: usize,
    panics: usize,
    without_field: Vec<String>,
}

/// The corpus: `POLICIES` mutated policies with their reviews, the same on every run.
fn corpus() -> Vec<(Value, Vec<u8>)> {
    let bases: Vec<Value> = base_policies().into_iter().map(|(_, p)| p).collect();
    assert!(bases.len() >= 30, "{} base policies", bases.len());
    let mut rng = Rng::new(SEED);
    let mut out = Vec::with_capacity(POLICIES);
    while out.len() < POLICIES {
        let base = rng.pick(&bases).clone();
        let mut policy = base.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut policy, &mut rng);
        }
        if policy == base || !policy.is_object() {
            // Unchanged, or no longer an object at all: not a policy (the API server's schema
            // check answers that before any webhook).
            continue;
        }
        let body = if rng.below(4) == 0 {
            review("UPDATE", &policy, Some(&base))
        } else {
            review("CREATE", &policy, None)
        };
        out.push((policy, body));
    }
    out
}

fn judge(cases: &[(Value, Vec<u8>)]) -> Tally {
    let mut t = Tally::default();
    let admission = Admission::with_clock(|| 1);
    for (policy, body) in cases {
        match validate(body) {
            Answer::ServerError(e) => {
                t.panics += 1;
                eprintln!("no answer for {policy}: {e}");
            }
            Answer::Allowed => {}
            Answer::Denied { message, fields } => {
                t.rejected += 1;
                let named = !fields.is_empty()
                    && fields
                        .iter()
                        .all(|f| f.starts_with("spec") || f.starts_with("metadata"));
                if !named {
                    t.without_field.push(format!("{message} ({fields:?})"));
                }
            }
        }
        // The mutating hooks see the same objects: they must answer too.
        for path in [MUTATE_PATH, STATUS_MUTATE_PATH, TIMESTAMP_MUTATE_PATH] {
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                admission.review(path, body)
            }))
            .is_ok_and(|out| out.pointer("/response/allowed").is_some());
            if !answered {
                t.panics += 1;
                eprintln!("{path} did not answer for {policy}");
            }
        }
    }
    t
}

#[test]
fn ten_thousand_malformed_policies_never_panic_and_every_denial_names_its_field() {
    let started = Instant::now();
    let cases = corpus();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(workers))
            .map(|chunk| s.spawn(|| judge(chunk)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rejected: usize = tallies.iter().map(|t| t.rejected).sum();
    let panics: usize = tallies.iter().map(|t| t.panics).sum();
    let without_field: Vec<&String> = tallies.iter().flat_map(|t| &t.without_field).collect();
    println!(
        "malformed-policy corpus (seed {SEED:#x}): policies tried {}, rejected {rejected}, \
         panics {panics}, denials without field path {}, in {:.1} s on {workers} threads",
        cases.len(),
        without_field.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(cases.len(), POLICIES);
    assert_eq!(panics, 0);
    assert!(without_field.is_empty(), "{without_field:#?}");
    assert!(
        rejected >= POLICIES / 2,
        "only {rejected} of {POLICIES} rejected"
    );
}
