//! Reading a node's reported network state (its NodeNetworkState) the way upstream's suites
//! do, and waiting for one node's enactment to settle.

use std::time::Duration;

use anyhow::{Result, anyhow};
use kube::api::DynamicObject;
use serde_json::Value;

use super::{E2e, is_true};

/// The default routes of a reported state's `routes.running` in the main table, IPv4 first:
/// `(next-hop-address, next-hop-interface)`.
pub fn default_routes(state: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = state["routes"]["running"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            (r["destination"] == "0.0.0.0/0" || r["destination"] == "::/0")
                && r["table-id"].as_u64().is_none_or(|t| t == 254 || t == 0)
        })
        .map(|r| {
            (
                r["next-hop-address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["next-hop-interface"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    out.sort_by_key(|(gw, _)| gw.contains(':'));
    out
}

/// The `dns-resolver` `running` (or `config`, per `which`) servers of a reported state.
pub fn dns_servers(state: &Value, which: &str) -> Vec<String> {
    strings(&state["dns-resolver"][which]["server"])
}

/// The `dns-resolver` `running` (or `config`) search domains of a reported state.
pub fn dns_search(state: &Value, which: &str) -> Vec<String> {
    strings(&state["dns-resolver"][which]["search"])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The addresses (`ip`, `prefix-length`) of `family` (`ipv4`/`ipv6`) on an interface object.
pub fn addresses(iface: &Value, family: &str) -> Vec<(String, u64)> {
    iface[family]["address"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["ip"].as_str().unwrap_or_default().to_owned(),
                a["prefix-length"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

impl E2e {
    /// `node`'s reported current state (`status.currentState` of its NodeNetworkState).
    pub async fn current_state(&self, node: &str) -> Result<Value> {
        Ok(self.state(node).await?.data["status"]["currentState"].clone())
    }

    /// `node`'s primary NIC, as upstream's suites call it: the interface of its IPv4 default
    /// route in the main table.
    pub async fn primary_nic(&self, node: &str) -> Result<String> {
        default_routes(&self.current_state(node).await?)
            .into_iter()
            .find(|(gw, _)| !gw.contains(':'))
            .map(|(_, iface)| iface)
            .ok_or_else(|| anyhow!("{node} reports no IPv4 default route"))
    }

    /// Wait until `policy`'s enactment on `node` has settled — Available, or Failing with its
    /// retries over (no longer Progressing) — and return it.
    pub async fn wait_enactment_settled(
        &self,
        policy: &str,
        node: &str,
        timeout: Duration,
    ) -> Result<DynamicObject> {
        self.wait_until(
            &format!("{policy}: the enactment on {node} to settle"),
            timeout,
            || async {
                let es = self.enactments(policy).await?;
                Ok(es.get(node).cloned().filter(|e| {
                    is_true(e, "Available") || (is_true(e, "Failing") && !is_true(e, "Progressing"))
                }))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_main_table_default_routes_ipv4_first_and_dns() {
        let state = json!({
            "routes": {"running": [
                {"destination": "::/0", "next-hop-address": "fe80::1", "next-hop-interface": "eth0", "table-id": 254},
                {"destination": "0.0.0.0/0", "next-hop-address": "198.18.9.9", "next-hop-interface": "eth2", "table-id": 100},
                {"destination": "0.0.0.0/0", "next-hop-address": "198.18.0.1", "next-hop-interface": "eth0", "table-id": 254},
                {"destination": "198.18.0.0/24", "next-hop-interface": "eth0", "table-id": 254}
            ]},
            "dns-resolver": {"running": {"server": ["198.18.0.1"], "search": ["a.test"]}}
        });
        assert_eq!(
            default_routes(&state),
            [
                ("198.18.0.1".to_owned(), "eth0".to_owned()),
                ("fe80::1".to_owned(), "eth0".to_owned())
            ]
        );
        assert_eq!(dns_servers(&state, "running"), ["198.18.0.1"]);
        assert_eq!(dns_search(&state, "running"), ["a.test"]);
        assert!(dns_servers(&state, "config").is_empty());
        let iface = json!({"ipv4": {"address": [{"ip": "198.18.0.5", "prefix-length": 24}]}});
        assert_eq!(addresses(&iface, "ipv4"), [("198.18.0.5".to_owned(), 24)]);
    }
}
