//! Records the version of the nmstate crate locked for this build.

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock = std::path::Path::new(&manifest).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let version = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| nmstate_version(&text))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KNMSTATE_NMSTATE_VERSION={version}");
}

fn nmstate_version(lock: &str) -> Option<String> {
    let mut in_nmstate = false;
    for line in lock.lines() {
        if line.starts_with("[[package]]") {
            in_nmstate = false;
        } else if line.trim() == "name = \"nmstate\"" {
            in_nmstate = true;
        } else if in_nmstate && let Some(v) = line.trim().strip_prefix("version = ") {
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}
