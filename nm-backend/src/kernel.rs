//! Up-front detection of interface types the running kernel cannot create.
//!
//! nmstate only notices a missing link type after its verification retries (about two minutes).
//! Before an apply, every interface of the desired state that does not exist yet is checked: the
//! kernel module is loaded (`/sys/module/<name>`), or a throw-away link of that kind can be
//! created with `ip link add` in the node's network namespace. A kernel without the link kind
//! answers "Unknown device type" at once.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

/// The kernel link kind (`ip link add ... type KIND`) behind an nmstate interface type, for the
/// types that are created as kernel links.
pub fn kernel_link_kind(nmstate_type: &str) -> Option<&'static str> {
    Some(match nmstate_type {
        "bond" => "bond",
        "vlan" => "vlan",
        "dummy" => "dummy",
        "vrf" => "vrf",
        "vxlan" => "vxlan",
        "linux-bridge" => "bridge",
        "mac-vlan" => "macvlan",
        "mac-vtap" => "macvtap",
        "ipvlan" => "ipvlan",
        "veth" => "veth",
        "hsr" => "hsr",
        "macsec" => "macsec",
        "xfrm" => "xfrm",
        _ => return None,
    })
}

/// Module that provides a link kind when it is not built in.
fn module_of(kind: &str) -> &str {
    match kind {
        "bond" => "bonding",
        "vlan" => "8021q",
        other => other,
    }
}

/// Extra `ip link add` arguments so that a supported kind is created (or at least parsed).
fn probe_args(kind: &str, name: &str) -> Vec<String> {
    let v: &[&str] = match kind {
        "vrf" => &["table", "4242"],
        "vxlan" => &["id", "42", "dstport", "4789"],
        "vlan" => &["id", "42"],
        "veth" => return vec!["peer".into(), "name".into(), format!("{name}p")],
        _ => &[],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// Cached answers to "can this kernel create links of kind X?".
#[derive(Debug, Default)]
pub struct KernelSupport {
    known: Mutex<HashMap<String, bool>>,
    counter: AtomicU32,
}

impl KernelSupport {
    /// A fresh cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the kernel can create links of `kind` (an `ip link` type such as `bond`).
    ///
    /// When it cannot tell (no `ip` binary), it answers `true` and leaves the verdict to nmstate.
    pub async fn supports(&self, kind: &str) -> bool {
        if let Some(known) = self.known.lock().ok().and_then(|m| m.get(kind).copied()) {
            return known;
        }
        let supported =
            Path::new("/sys/module").join(module_of(kind)).exists() || self.try_create(kind).await;
        if let Ok(mut m) = self.known.lock() {
            m.insert(kind.to_string(), supported);
        }
        supported
    }

    async fn try_create(&self, kind: &str) -> bool {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) % 1000;
        let name = format!("knmk{}x{n}", std::process::id() % 10_000);
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["link", "add", &name]);
        if matches!(kind, "vlan" | "macvlan" | "macvtap" | "ipvlan" | "macsec") {
            cmd.args(["link", "lo"]);
        }
        cmd.args(["type", kind]).args(probe_args(kind, &name));
        let out = match cmd.output().await {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(kind, error = %e, "cannot run `ip` to check kernel link support");
                return true;
            }
        };
        if out.status.success() {
            let deleted = tokio::process::Command::new("ip")
                .args(["link", "del", &name])
                .output()
                .await;
            if deleted.map(|o| !o.status.success()).unwrap_or(true) {
                tracing::warn!(link = %name, "could not delete the kernel support probe link");
            }
            return true;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let unsupported =
            stderr.contains("Unknown device type") || stderr.contains("Operation not supported");
        tracing::debug!(kind, %stderr, unsupported, "kernel link support probe");
        !unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_nmstate_types_to_link_kinds() {
        assert_eq!(kernel_link_kind("bond"), Some("bond"));
        assert_eq!(kernel_link_kind("linux-bridge"), Some("bridge"));
        assert_eq!(kernel_link_kind("mac-vlan"), Some("macvlan"));
        assert_eq!(kernel_link_kind("ethernet"), None);
        assert_eq!(kernel_link_kind("ovs-bridge"), None);
        assert_eq!(module_of("bond"), "bonding");
        assert_eq!(module_of("vlan"), "8021q");
        assert_eq!(probe_args("veth", "x"), vec!["peer", "name", "xp"]);
    }
}
