//! Up-front detection of what the running kernel cannot do: interface types it cannot create,
//! and linux-bridge VLAN filtering.
//!
//! nmstate only notices a missing link type after its verification retries (about two minutes).
//! Before an apply, every interface of the desired state that does not exist yet is checked: the
//! kernel module is loaded (`/sys/module/<name>`), or a throw-away link of that kind can be
//! created with `ip link add` in the node's network namespace. A kernel without the link kind
//! answers "Unknown device type" at once; one without bridge VLAN filtering refuses a bridge
//! with `vlan_filtering 1` as "not supported".

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
    v.iter().map(std::string::ToString::to_string).collect()
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
        if let Some(known) = self.known(kind) {
            return known;
        }
        let supported = Path::new("/sys/module").join(module_of(kind)).exists()
            || self
                .try_create(kind, |name| {
                    let mut args = Vec::new();
                    if matches!(kind, "vlan" | "macvlan" | "macvtap" | "ipvlan" | "macsec") {
                        args.extend(["link".to_owned(), "lo".to_owned()]);
                    }
                    args.extend(["type".to_owned(), kind.to_owned()]);
                    args.extend(probe_args(kind, name));
                    args
                })
                .await;
        self.remember(kind, supported)
    }

    /// Whether the kernel can filter VLANs on a linux bridge (a bridge with `vlan_filtering 1`
    /// can be created). When it cannot tell, it answers `true`.
    pub async fn bridge_vlan_filtering(&self) -> bool {
        const KEY: &str = "bridge vlan_filtering";
        if let Some(known) = self.known(KEY) {
            return known;
        }
        let supported = self
            .try_create(KEY, |_| {
                ["type", "bridge", "vlan_filtering", "1"]
                    .map(str::to_owned)
                    .to_vec()
            })
            .await;
        if !supported {
            tracing::warn!(
                "the kernel lacks bridge VLAN filtering: linux-bridge VLAN configuration cannot be applied"
            );
        }
        self.remember(KEY, supported)
    }

    fn known(&self, key: &str) -> Option<bool> {
        self.known.lock().ok().and_then(|m| m.get(key).copied())
    }

    fn remember(&self, key: &str, supported: bool) -> bool {
        if let Ok(mut m) = self.known.lock() {
            m.insert(key.to_string(), supported);
        }
        supported
    }

    /// Create (then delete) a throw-away link with `ip link add NAME <args(NAME)>`; only a kernel
    /// that refuses it as unknown or not supported counts as lacking `what`.
    async fn try_create(&self, what: &str, args: impl FnOnce(&str) -> Vec<String>) -> bool {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) % 1000;
        let name = format!("knmk{}x{n}", std::process::id() % 10_000);
        let out = tokio::process::Command::new("ip")
            .args(["link", "add", &name])
            .args(args(&name))
            .output()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(what, error = %e, "cannot run `ip` to check kernel support");
                return true;
            }
        };
        if out.status.success() {
            let deleted = tokio::process::Command::new("ip")
                .args(["link", "del", &name])
                .output()
                .await;
            if deleted.map_or(true, |o| !o.status.success()) {
                tracing::warn!(link = %name, "failed to delete the kernel support probe link");
            }
            return true;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let unsupported = refused_as_unsupported(&stderr);
        tracing::debug!(what, %stderr, unsupported, "kernel support probe");
        !unsupported
    }
}

/// Whether `ip link add` refused because the kernel lacks the link kind or feature (not for
/// some other reason, such as a missing permission).
fn refused_as_unsupported(stderr: &str) -> bool {
    let stderr = stderr.to_lowercase();
    stderr.contains("unknown device type") || stderr.contains("not supported")
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
        assert!(refused_as_unsupported("Error: Unknown device type.\n"));
        assert!(refused_as_unsupported("Error: Operation not supported.\n"));
        assert!(!refused_as_unsupported(
            "RTNETLINK answers: Operation not permitted\n"
        ));
    }
}
