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
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn read(dir: &Path, file: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    Some(
        serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display())),
    )
}

fn need(dir: &Path, file: &str) -> Value {
    read(dir, file).unwrap_or_else(|| panic!("{} is missing", dir.join(file).display()))
}

fn run(case: &str, dir: &Path) -> Value {
    if case.starts_with("render-") {
        rendered(&need(dir, "desired.yml"))
    } else if case.starts_with("filter-") {
        let mut opts = FilterOptions::default();
        if let Some(o) = read(dir, "options.yml") {
            opts.max_bytes = o["max-bytes"].as_u64().expect("max-bytes") as usize;
        }
        let state = filter_state(&need(dir, "current.yml"), &opts).state;
        let size = serde_json::to_vec(&state).unwrap().len();
        assert!(size <= opts.max_bytes, "{case}: {size} bytes over the cap");
        state
    } else if case.starts_with("plan-") {
        let current = need(dir, "current.yml");
        let p = plan(&current, &need(dir, "desired.yml"));
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
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 9,
        "expected the fixture set, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let got = run(&case, dir);
        if update {
            let yaml = serde_saphyr::to_string(&got).expect("yaml");
            std::fs::write(dir.join("expected.yml"), yaml).expect("write expected");
            continue;
        }
        let want = need(dir, "expected.yml");
        if got != want {
            failures.push(format!(
                "{case}:\n{}",
                pretty_assertions::Comparison::new(&want, &got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
