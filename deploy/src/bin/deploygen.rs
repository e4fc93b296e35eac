//! Writes the generated manifest trees (`config/default/`, `config/monitoring/`,
//! `config/operator/`, `config/crd/kustomization.yaml`, `config/samples/nmstate.yaml`) under a
//! repository root (default `.`), or with `--check` fails when a stored file differs.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).collect::<Vec<_>>();
    let check = args.iter().any(|a| a == "--check");
    args.retain(|a| a != "--check");
    let root = PathBuf::from(args.pop().unwrap_or_else(|| ".".into()));
    let mut stale = Vec::new();
    for (file, text) in knmstate_deploy::tree::files()? {
        let path = root.join(&file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(file);
            }
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale deploy manifests (run `cargo run -p knmstate-deploy --bin deploygen`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}
