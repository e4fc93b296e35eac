//! The krew manifest of kubectl-nmstate names this crate's version and binary.

use anyhow::Result;
use serde_json::Value;

#[test]
fn krew_manifest_follows_the_crate() -> Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/krew/nmstate.yaml");
    let manifest: Value = serde_saphyr::from_str(&std::fs::read_to_string(path)?)?;
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "nmstate");
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["spec"]["version"], version.as_str());
    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    assert!(!platforms.is_empty());
    for p in platforms {
        assert_eq!(p["bin"], "kubectl-nmstate");
        let uri = p["uri"].as_str().expect("uri");
        assert!(uri.contains(&format!("/download/{version}/")), "{uri}");
        let os = p["selector"]["matchLabels"]["os"].as_str().expect("os");
        let arch = p["selector"]["matchLabels"]["arch"].as_str().expect("arch");
        assert!(
            uri.ends_with(&format!("kubectl-nmstate-{os}-{arch}.tar.gz")),
            "{uri}"
        );
    }
    Ok(())
}
