//! Golden-directory tests: every `fixtures/<case>/` holds YAML inputs and the reviewed
//! `expected.yml`. The case name's prefix says what runs:
//!
//! | prefix | inputs | expected |
//! |---|---|---|
//! | `render-` | `desired.yml` | the desired state with the default bridge VLAN trunk injected |
//! | `filter-` | `current.yml` (+ optional `options.yml` with `max-bytes`) | the NodeNetworkState `currentState` |
//! | `plan-` | `current.yml`, `desired.yml` | the plan, plus the probes chosen for it |
//!
//! `UPDATE_GOLDEN=1 cargo test -p knmstate-state-engine --test golden` rewrites the expected
//! files; review the diff before committing it.

use knmstate_state_engine::filter::{FilterOptions, filter_state};
use knmstate_state_engine::plan::plan;
use knmstate_state_engine::render::rendered;
use knmstate_state_engine::rollback::{HandlerDefaults, select_probes};
use knmstate_testkit::golden::{self, Case};
use serde_json::{Value, json};
use std::path::PathBuf;

fn run(c: &Case) -> Value {
    let case = c.name.as_str();
    if case.starts_with("render-") {
        rendered(&c.need("desired.yml"))
    } else if case.starts_with("filter-") {
        let mut opts = FilterOptions::default();
        if let Some(o) = c.read("options.yml") {
            opts.max_bytes = usize::try_from(o["max-bytes"].as_u64().expect("max-bytes"))
                .expect("max-bytes fits in usize");
        }
        let state = filter_state(&c.need("current.yml"), &opts).state;
        let size = serde_json::to_vec(&state).unwrap().len();
        assert!(size <= opts.max_bytes, "{case}: {size} bytes over the cap");
        state
    } else if case.starts_with("plan-") {
        let current = c.need("current.yml");
        let p = plan(&current, &c.need("desired.yml"));
        let probes = select_probes(&p, &current, None, &HandlerDefaults::default());
        json!({
            "plan": p,
            "probes": probes.probes.iter().map(|p| p.kind.name()).collect::<Vec<_>>(),
            "skipped-probes": probes.skipped,
            "checkpoint-timeout-seconds": probes.checkpoint_timeout.as_secs(),
        })
    } else {
        panic!("fixture {case}: name must start with render-, filter- or plan-")
    }
}

#[test]
fn golden_fixtures() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let update = golden::update_requested("UPDATE_GOLDEN");
    let cases = golden::cases(&root);
    assert!(
        cases.len() >= 9,
        "expected the fixture set, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        let got = run(c);
        if update {
            c.write_yaml("expected.yml", &got);
            continue;
        }
        let want = c.need("expected.yml");
        if got != want {
            failures.push(format!(
                "{}:\n{}",
                c.name,
                pretty_assertions::Comparison::new(&want, &got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
