//! Name servers that NetworkManager keeps after an apply turned `auto-dns` off.
//!
//! NetworkManager 1.42 registers the DNS of a DHCPv6 lease or of router advertisements (RDNSS)
//! with the "ignore auto DNS" flag of the profile as it was when the lease or advertisement
//! arrived. nmstate applies a profile change with `Device.Reapply`, which leaves those registered
//! configurations alone: after `ipv6.auto-dns: false`, `ipv6.ignore-auto-dns=yes` is in the
//! applied profile, yet the DHCPv6 name server stays in `DnsManager.Configuration`,
//! `/etc/resolv.conf` and nmstate's `dns-resolver.running` until the device is activated again.
//! The node then still resolves names, so a policy removing every name server would pass the DNS
//! probe and be committed although the node loses name resolution on its next activation.
//!
//! [`stale_auto_dns`] finds the interfaces in that state; the backend reactivates them (their
//! applied profile, through `ActivateConnection`) while the checkpoint is held, so that the
//! running state the probes check is the one the applied configuration gives.

use std::{collections::BTreeSet, net::IpAddr};

use serde_json::Value;

/// One entry of NetworkManager's `DnsManager.Configuration`: the interface (none for the global
/// configuration) and its name servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEntry {
    /// Interface the name servers belong to.
    pub interface: Option<String>,
    /// Name servers, as NetworkManager writes them.
    pub nameservers: Vec<String>,
}

fn auto_dns_off(iface: &Value, family: &str) -> bool {
    iface
        .pointer(&format!("/{family}/auto-dns"))
        .and_then(Value::as_bool)
        == Some(false)
}

fn server_ip(s: &str) -> Option<IpAddr> {
    s.split('%').next()?.parse().ok()
}

/// The interfaces of `desired` that turn `auto-dns` off for an address family while
/// NetworkManager still runs a name server of that family on them that `desired` does not
/// configure statically (`dns-resolver.config.server`), sorted and without duplicates.
pub fn stale_auto_dns(desired: &Value, running: &[DnsEntry]) -> Vec<String> {
    let static_servers: BTreeSet<IpAddr> = desired
        .pointer("/dns-resolver/config/server")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(server_ip)
        .collect();
    let mut out = BTreeSet::new();
    for iface in desired
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = iface.get("name").and_then(Value::as_str) else {
            continue;
        };
        if matches!(
            iface.get("state").and_then(Value::as_str),
            Some("absent" | "down" | "ignore")
        ) {
            continue;
        }
        let (v4_off, v6_off) = (auto_dns_off(iface, "ipv4"), auto_dns_off(iface, "ipv6"));
        if !v4_off && !v6_off {
            continue;
        }
        let stale = running
            .iter()
            .filter(|e| e.interface.as_deref() == Some(name))
            .flat_map(|e| &e.nameservers)
            .filter_map(|s| server_ip(s))
            .filter(|ip| !static_servers.contains(ip))
            .any(|ip| if ip.is_ipv4() { v4_off } else { v6_off });
        if stale {
            out.insert(name.to_string());
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(interface: Option<&str>, servers: &[&str]) -> DnsEntry {
        DnsEntry {
            interface: interface.map(str::to_string),
            nameservers: servers
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        }
    }

    fn no_auto_dns(v4: bool, v6: bool, servers: &[&str]) -> Value {
        json!({
            "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
                "ipv4": {"enabled": true, "dhcp": true, "auto-dns": !v4},
                "ipv6": {"enabled": true, "dhcp": true, "autoconf": true, "auto-dns": !v6}}],
            "dns-resolver": {"config": {"server": servers}}
        })
    }

    #[test]
    fn learned_server_left_after_auto_dns_off_is_stale() {
        let running = [entry(Some("eth0"), &["2001:db8::1"])];
        assert_eq!(
            stale_auto_dns(&no_auto_dns(true, true, &[]), &running),
            ["eth0"]
        );
        // Only IPv4 turned off: the IPv6 server is still wanted.
        assert!(stale_auto_dns(&no_auto_dns(true, false, &[]), &running).is_empty());
    }

    #[test]
    fn static_global_and_other_interface_servers_are_not_stale() {
        let running = [
            entry(Some("eth0"), &["2001:db8::1", "198.18.0.53"]),
            entry(Some("eth1"), &["198.18.1.1"]),
            entry(None, &["198.18.0.54"]),
        ];
        let desired = no_auto_dns(true, true, &["2001:db8::1", "198.18.0.53"]);
        assert!(stale_auto_dns(&desired, &running).is_empty());
        let scoped = [entry(Some("eth0"), &["fe80::1%eth0"])];
        assert_eq!(stale_auto_dns(&desired, &scoped), ["eth0"]);
    }

    #[test]
    fn interfaces_going_away_or_keeping_auto_dns_are_left_alone() {
        let running = [entry(Some("eth0"), &["198.18.0.1"])];
        assert!(stale_auto_dns(&no_auto_dns(false, false, &[]), &running).is_empty());
        let mut down = no_auto_dns(true, true, &[]);
        down["interfaces"][0]["state"] = json!("down");
        assert!(stale_auto_dns(&down, &running).is_empty());
        assert!(stale_auto_dns(&json!({}), &running).is_empty());
    }
}
