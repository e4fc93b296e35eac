//! Golden NetworkManager keyfiles of the examples this machine cannot run.
//!
//! The test kernel has no bond, VLAN, VRF or dummy links and no bridge VLAN filtering, and its
//! NetworkManager has no Open vSwitch plugin, so the examples that need them fail on its nodes
//! (fast and clearly: `e2e_examples.rs`). What they would apply is checked here instead: each
//! such example is rendered as the handler renders it — captures resolved by
//! [`resolve_policy`] against the fixed node state `golden/keyfiles/current.yml`, the default
//! bridge VLAN trunk injected as on a node that filters VLANs — and given to nmstate's
//! offline configuration generation (`NetworkState::gen_conf`, the library of `nmstatectl gc`).
//! The keyfiles it writes must equal `golden/keyfiles/<example>/*.nmconnection`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p knmstate-nm-backend --test keyfiles` rewrites the goldens;
//! review the diff before committing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_nm_backend::resolve_policy;
use knmstate_state_engine::render;
use knmstate_testkit::golden;
use serde_json::Value;

const KEYFILE: &str = "nmconnection";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_root() -> PathBuf {
    manifest_dir().join("tests/golden/keyfiles")
}

/// The examples, by file stem.
fn examples() -> BTreeMap<String, Value> {
    let dir = manifest_dir().join("../examples");
    golden::files(&dir, "yaml")
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().expect("a file name").to_string_lossy();
            (stem.into_owned(), golden::load(&p))
        })
        .collect()
}

/// What of `desired` this machine's kernel or NetworkManager lacks, with the keyfile line
/// that shows it in the generated configuration.
fn lacking(desired: &Value) -> BTreeMap<&'static str, &'static str> {
    let mut found = BTreeMap::new();
    let ifaces = desired["interfaces"].as_array().into_iter().flatten();
    for iface in ifaces.filter(|i| i["state"].as_str() != Some("absent")) {
        let (what, line) = match iface["type"].as_str().unwrap_or_default() {
            "bond" => ("bond", "type=bond"),
            "vlan" => ("vlan", "type=vlan"),
            "vrf" => ("vrf", "type=vrf"),
            "dummy" => ("dummy", "type=dummy"),
            "ovs-bridge" | "ovs-interface" => ("open vswitch", "type=ovs-bridge"),
            _ => continue,
        };
        found.insert(what, line);
    }
    if render::bridge_vlan_filtering_needed(desired).is_some() {
        found.insert("bridge vlan filtering", "vlan-filtering=true");
    }
    found
}

/// The desired state of `example` on the node `current`: its captures resolved, as the
/// handler resolves them, nothing injected yet.
fn resolved(example: &Value, current: &Value) -> Value {
    let policy: NodeNetworkConfigurationPolicy =
        serde_json::from_value(example.clone()).expect("an example is a policy");
    let resolved = resolve_policy(&render::nmpolicy(&policy.spec), current, &BTreeMap::new())
        .expect("the example's captures resolve");
    render::finish(resolved.desired_state, false)
}

/// nmstate's NetworkManager keyfiles for `desired`, by file name.
fn keyfiles(desired: &Value) -> BTreeMap<String, String> {
    let state: nmstate::NetworkState =
        serde_json::from_value(desired.clone()).expect("an nmstate state");
    let mut conf = state
        .gen_conf()
        .expect("nmstate generates the configuration");
    conf.remove("NetworkManager")
        .expect("NetworkManager keyfiles")
        .into_iter()
        .collect()
}

/// The golden keyfiles in `dir` (none when it does not exist).
fn stored(dir: &Path) -> BTreeMap<String, String> {
    if !dir.is_dir() {
        return BTreeMap::new();
    }
    golden::files(dir, KEYFILE)
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("a file name").to_string_lossy();
            (name.into_owned(), golden::text(&p))
        })
        .collect()
}

/// Replace the golden keyfiles in `dir` (it holds nothing else) with `files`.
fn rewrite(dir: &Path, files: &BTreeMap<String, String>) {
    if dir.is_dir() {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (name, text) in files {
        golden::write(&dir.join(name), text);
    }
}

#[test]
fn keyfiles_of_the_examples_this_kernel_cannot_run() {
    let current = golden::load(&golden_root().join("current.yml"));
    let update = golden::update_requested("UPDATE_GOLDEN");
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for (stem, example) in examples() {
        let desired = resolved(&example, &current);
        let missing = lacking(&desired);
        if missing.is_empty() {
            continue;
        }
        covered.insert(stem.clone());
        // Applied on a node that has what the example needs, whose handler injects the
        // default bridge VLAN trunk (it does when the kernel filters VLANs).
        let generated = keyfiles(&render::rendered(&desired));
        // What the example needs is in its keyfiles, so a golden rewritten by mistake without
        // it cannot pass.
        for (what, line) in &missing {
            assert!(
                generated.values().any(|k| k.lines().any(|l| l == *line)),
                "{stem}: needs {what}, but no keyfile has `{line}`: {generated:#?}"
            );
        }
        let dir = golden_root().join(&stem);
        if update {
            rewrite(&dir, &generated);
        } else if stored(&dir) != generated {
            failures.push(format!(
                "{stem}: the keyfiles differ from {} (UPDATE_GOLDEN=1 rewrites them):\n{generated:#?}",
                dir.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let dirs: BTreeSet<String> = golden::cases(golden_root())
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        dirs, covered,
        "one golden directory per example this kernel cannot run, and no other"
    );
}

#[test]
fn an_example_this_kernel_can_run_needs_nothing_missing() {
    let current = golden::load(&golden_root().join("current.yml"));
    let examples = examples();
    for stem in ["linux-bridge", "ethernet", "static-ip"] {
        let desired = resolved(&examples[stem], &current);
        assert!(lacking(&desired).is_empty(), "{stem}: {desired}");
    }
}
