//! Writes the CRDs generated from the Rust types into a directory (default `config/crd`), or
//! with `--check` fails when the stored files differ from what the types generate.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).collect::<Vec<_>>();
    let check = args.iter().any(|a| a == "--check");
    args.retain(|a| a != "--check");
    let dir = PathBuf::from(args.pop().unwrap_or_else(|| "config/crd".into()));
    let mut stale = Vec::new();
    for (file, crd) in knmstate_api::crd::all()? {
        let path = dir.join(file);
        let yaml = knmstate_api::crd::to_yaml(&crd)?;
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "stale CRDs (run `cargo run -p knmstate-api --bin crdgen`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}
