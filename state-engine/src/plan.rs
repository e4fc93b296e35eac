//! A per-node plan: what a desired state would change on a node's current state.
//!
//! nmstate desired states are partial: a key that is not written is left as it is. So an interface
//! is **changed** when one of the keys the desired state writes differs from the current value
//! (objects compared key by key, recursively; lists compared as a whole, order-insensitive; MAC
//! addresses case-insensitive; `ethernet` fits a `veth`), **created** when no current interface has
//! its name, and **removed** when it says `state: absent` and exists. Routes are compared on
//! `routes.config` (a route with `state: absent` removes every current route it matches), DNS on
//! `dns-resolver.config`. Ports are compared on their controller: a port listed by a desired bridge
//! or bond (or naming a `controller` itself) that is not its port now is **attached**; a current
//! port of a desired bridge or bond that its full port list leaves out, or of one being removed, is
//! **detached**. The plan also says whether it touches the default route
//! (`0.0.0.0/0` or `::/0` in the main table) or the interface carrying it, which decides the
//! probes in [`crate::rollback`].
//!
//! ```
//! use knmstate_state_engine::plan::{plan, InterfaceChangeKind};
//! use serde_json::json;
//!
//! let current = json!({
//!     "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up", "mtu": 1500}],
//!     "routes": {"running": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0",
//!                             "next-hop-address": "198.18.0.1", "table-id": 254}]}
//! });
//! let desired = json!({"interfaces": [
//!     {"name": "eth0", "type": "ethernet", "state": "up", "mtu": 9000},
//!     {"name": "br1", "type": "linux-bridge", "state": "up"}
//! ]});
//! let p = plan(&current, &desired);
//! assert_eq!(p.interfaces.len(), 2);
//! assert_eq!(p.interfaces[0].name, "br1");
//! assert_eq!(p.interfaces[0].kind, InterfaceChangeKind::Create);
//! assert_eq!(p.interfaces[1].kind, InterfaceChangeKind::Change { fields: vec!["mtu".into()] });
//! assert!(p.touches_default_route_interface && !p.touches_default_route);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What happens to one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum InterfaceChangeKind {
    /// It does not exist yet.
    Create,
    /// It exists; these top-level keys change.
    Change {
        /// The keys, sorted.
        fields: Vec<String>,
    },
    /// `state: absent` on an existing interface.
    Remove,
}

/// One interface the plan touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterfaceChange {
    /// Interface name.
    pub name: String,
    /// Interface type, from the desired state or else the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// What happens.
    #[serde(flatten)]
    pub kind: InterfaceChangeKind,
}

/// A DNS configuration change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DnsChange {
    /// `dns-resolver.config` now (`{}` when none).
    pub before: Value,
    /// `dns-resolver.config` after the apply.
    pub after: Value,
}

/// A port moving to another controller (bridge, OVS bridge, bond), or leaving one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PortChange {
    /// The port's name.
    pub port: String,
    /// Its controller now (`None` when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Its controller after the apply (`None` when detached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What a desired state changes on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
// A plain report of independent facts, serialised as-is into golden files: no state machine.
#[allow(clippy::struct_excessive_bools)]
pub struct Plan {
    /// Interfaces created, changed or removed, sorted by name.
    pub interfaces: Vec<InterfaceChange>,
    /// Ports attached to, moved between or detached from controllers, sorted by port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortChange>,
    /// Routes added to `routes.config`.
    pub routes_added: Vec<Value>,
    /// Current `routes.config` entries removed.
    pub routes_removed: Vec<Value>,
    /// The DNS change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsChange>,
    /// Whether the node has a default route in the main table now (in `routes.running`).
    pub has_default_route: bool,
    /// Interfaces carrying a main-table default route now.
    pub default_route_interfaces: Vec<String>,
    /// Whether a default route is added or removed.
    pub touches_default_route: bool,
    /// Whether an interface carrying the default route is changed or removed, or becomes a
    /// port of another interface (e.g. moved under a bridge).
    pub touches_default_route_interface: bool,
    /// Whether the plan leaves the node without any main-table default route.
    pub removes_all_default_routes: bool,
}

impl Plan {
    /// Whether applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
            && self.ports.is_empty()
            && self.routes_added.is_empty()
            && self.routes_removed.is_empty()
            && self.dns.is_none()
    }
}

/// One change of a plan in words, for people: what is done, to what, and the details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeLine {
    /// `create`, `change`, `remove`, `attach`, `move`, `detach` or `add`.
    pub verb: &'static str,
    /// `interface br1 (linux-bridge)`, `port eth1`, `route`, `dns`.
    pub what: String,
    /// The changed fields, the controllers, the route, or the DNS before → after.
    pub detail: String,
}

impl std::fmt::Display for ChangeLine {
    /// `attach port eth1: becomes a port of br1`; `create interface br1 (linux-bridge)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.what)?;
        if self.detail.is_empty() {
            Ok(())
        } else {
            write!(f, ": {}", self.detail)
        }
    }
}

impl Plan {
    /// The plan in words, one line per change: interfaces, ports, routes, DNS.
    ///
    /// ```
    /// use knmstate_state_engine::plan::plan;
    /// use serde_json::json;
    /// let current = json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}]});
    /// let desired = json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
    ///     "bridge": {"port": [{"name": "eth1"}]}}]});
    /// let lines = plan(&current, &desired).change_lines();
    /// assert_eq!(lines[1].verb, "attach");
    /// assert_eq!(format!("{} {}: {}", lines[1].verb, lines[1].what, lines[1].detail),
    ///            "attach port eth1: becomes a port of br1");
    /// ```
    pub fn change_lines(&self) -> Vec<ChangeLine> {
        let mut out = Vec::new();
        for i in &self.interfaces {
            let what = match &i.r#type {
                Some(t) => format!("interface {} ({t})", i.name),
                None => format!("interface {}", i.name),
            };
            let (verb, detail) = match &i.kind {
                InterfaceChangeKind::Create => ("create", String::new()),
                InterfaceChangeKind::Change { fields } => ("change", fields.join(", ")),
                InterfaceChangeKind::Remove => ("remove", String::new()),
            };
            out.push(ChangeLine { verb, what, detail });
        }
        for p in &self.ports {
            let (verb, detail) = match (&p.from, &p.to) {
                (None, Some(to)) => ("attach", format!("becomes a port of {to}")),
                (Some(from), Some(to)) => {
                    ("move", format!("leaves {from}, becomes a port of {to}"))
                }
                (Some(from), None) => ("detach", format!("leaves {from}")),
                (None, None) => continue,
            };
            let what = format!("port {}", p.port);
            out.push(ChangeLine { verb, what, detail });
        }
        for (verb, routes) in [
            ("add", &self.routes_added),
            ("remove", &self.routes_removed),
        ] {
            for r in routes {
                let what = "route".to_owned();
                out.push(ChangeLine {
                    verb,
                    what,
                    detail: route_summary(r),
                });
            }
        }
        if let Some(dns) = &self.dns {
            let detail = format!("{} → {}", dns.before, dns.after);
            out.push(ChangeLine {
                verb: "change",
                what: "dns".to_owned(),
                detail,
            });
        }
        out
    }
}

/// A route in one line: `198.19.0.0/24 via 198.18.1.1 dev eth1 table 254 metric 100`, with
/// the parts it has.
pub fn route_summary(route: &Value) -> String {
    let part = |k: &str| {
        route
            .get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    let mut parts = vec![part("destination").unwrap_or_else(|| "*".to_owned())];
    for (key, word) in [
        ("next-hop-address", "via"),
        ("next-hop-interface", "dev"),
        ("table-id", "table"),
        ("metric", "metric"),
    ] {
        if let Some(v) = part(key) {
            parts.push(format!("{word} {v}"));
        }
    }
    parts.join(" ")
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return &[],
        }
    }
    cur.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Whether `current` already satisfies the partial `desired` value.
pub fn satisfies(desired: &Value, current: &Value) -> bool {
    contains(desired, current, "")
}

fn contains(d: &Value, c: &Value, key: &str) -> bool {
    match (d, c) {
        (Value::Null, _) => true,
        (Value::Object(dm), Value::Object(cm)) => dm
            .iter()
            .all(|(k, dv)| dv.is_null() || cm.get(k).is_some_and(|cv| contains(dv, cv, k))),
        (Value::Array(da), Value::Array(ca)) => {
            // The kernel adds IPv6 link-local addresses by itself; desired states never list them.
            let ca: Vec<&Value> = ca
                .iter()
                .filter(|cv| !(key == "address" && is_link_local(cv)))
                .collect();
            da.len() == ca.len()
                && da
                    .iter()
                    .all(|dv| ca.iter().any(|cv| contains(dv, cv, key)))
        }
        (Value::String(ds), Value::String(cs)) if key == "mac-address" => {
            ds.eq_ignore_ascii_case(cs)
        }
        // nmstate reports a veth as `veth` and accepts `ethernet` for it.
        (Value::String(ds), Value::String(cs)) if key == "type" => {
            ds == cs || (ds == "ethernet" && cs == "veth")
        }
        (Value::Object(dm), _) => dm.is_empty() && c.is_null(),
        _ => d == c,
    }
}

fn is_link_local(addr: &Value) -> bool {
    str_of(addr, "ip").is_some_and(|ip| {
        let ip = ip.to_ascii_lowercase();
        ["fe8", "fe9", "fea", "feb"]
            .iter()
            .any(|p| ip.starts_with(p))
    })
}

/// A route as nmstate reports it: `table-id` defaults to the main table (254).
fn with_default_table(route: &Value) -> Value {
    let mut r = route.clone();
    if let Some(m) = r.as_object_mut() {
        m.entry("table-id").or_insert(Value::from(254));
    }
    r
}

/// Whether a route is a default route of the main table.
pub fn is_default_route(route: &Value) -> bool {
    let dest = str_of(route, "destination");
    let table = route.get("table-id").and_then(Value::as_u64).unwrap_or(254);
    matches!(dest, Some("0.0.0.0/0" | "::/0")) && (table == 254 || table == 0)
}

fn without_state(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("state");
    }
    v
}

fn is_absent(v: &Value) -> bool {
    str_of(v, "state") == Some("absent")
}

/// Ports a desired interface puts under itself (bridge, OVS bridge, bond).
fn ports_of(iface: &Value) -> Vec<String> {
    let mut out: Vec<String> = list(iface, &["bridge", "port"])
        .iter()
        .filter_map(|p| str_of(p, "name").map(str::to_owned))
        .collect();
    out.extend(
        list(iface, &["link-aggregation", "port"])
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned)),
    );
    out
}

/// The controller of each current interface that has one.
fn current_controllers(current: &Value) -> BTreeMap<String, String> {
    list(current, &["interfaces"])
        .iter()
        .filter_map(|c| {
            let controller = str_of(c, "controller").filter(|s| !s.is_empty())?;
            Some((str_of(c, "name")?.to_owned(), controller.to_owned()))
        })
        .collect()
}

/// Whether a desired controller interface lists its ports in full (a `port` list is given).
fn lists_ports(iface: &Value) -> bool {
    iface
        .get("bridge")
        .and_then(|b| b.get("port"))
        .or_else(|| iface.get("link-aggregation").and_then(|b| b.get("port")))
        .is_some_and(Value::is_array)
}

fn diff_ports(current: &Value, desired: &Value) -> Vec<PortChange> {
    let now = current_controllers(current);
    let mut after: BTreeMap<String, Option<String>> = BTreeMap::new();
    for d in list(desired, &["interfaces"]) {
        let Some(name) = str_of(d, "name") else {
            continue;
        };
        if is_absent(d) || lists_ports(d) {
            // Its current ports leave it unless it lists them again (below).
            for (port, _) in now.iter().filter(|(_, c)| c.as_str() == name) {
                after.entry(port.clone()).or_insert(None);
            }
        }
        if !is_absent(d) {
            for port in ports_of(d) {
                after.insert(port, Some(name.to_owned()));
            }
        }
    }
    for d in list(desired, &["interfaces"]) {
        if let (Some(name), Some(controller)) = (str_of(d, "name"), str_of(d, "controller")) {
            let to = (!controller.is_empty()).then(|| controller.to_owned());
            after.insert(name.to_owned(), to);
        }
    }
    after
        .into_iter()
        .filter_map(|(port, to)| {
            let from = now.get(&port).cloned();
            (from != to).then_some(PortChange { port, from, to })
        })
        .collect()
}

fn diff_interfaces(current: &Value, desired: &Value) -> Vec<InterfaceChange> {
    let cur = list(current, &["interfaces"]);
    let mut out = Vec::new();
    for d in list(desired, &["interfaces"]) {
        let Some(name) = str_of(d, "name") else {
            continue;
        };
        let dtype = str_of(d, "type");
        let same_name: Vec<&Value> = cur
            .iter()
            .filter(|c| str_of(c, "name") == Some(name))
            .collect();
        let existing = same_name
            .iter()
            .find(|c| dtype.is_none() || str_of(c, "type") == dtype)
            .or(same_name.first())
            .copied();
        let r#type = dtype
            .or_else(|| existing.and_then(|c| str_of(c, "type")))
            .map(str::to_owned);
        let kind = match (existing, is_absent(d)) {
            (None, true) => continue,
            (Some(_), true) => InterfaceChangeKind::Remove,
            (None, false) => InterfaceChangeKind::Create,
            (Some(c), false) => {
                let fields: Vec<String> = d
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, dv)| {
                        *k != "name"
                            && !c.get(k.as_str()).is_some_and(|cv| contains(dv, cv, k))
                            && !(k.as_str() == "state"
                                && dv.as_str() == Some("up")
                                && c.get("state").is_none())
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if fields.is_empty() {
                    continue;
                }
                InterfaceChangeKind::Change { fields }
            }
        };
        out.push(InterfaceChange {
            name: name.to_owned(),
            r#type,
            kind,
        });
    }
    out.sort_by(|a, b| (&a.name, &a.r#type).cmp(&(&b.name, &b.r#type)));
    out
}

fn dns_config(v: &Value) -> Value {
    let cfg = v.get("dns-resolver").and_then(|d| d.get("config"));
    let field = |k: &str| {
        cfg.and_then(|c| c.get(k))
            .cloned()
            .filter(|x| x.as_array().is_some_and(|a| !a.is_empty()))
    };
    let mut m = serde_json::Map::new();
    for k in ["search", "server"] {
        if let Some(x) = field(k) {
            m.insert(k.into(), x);
        }
    }
    Value::Object(m)
}

/// Diff `desired` against `current` (both nmstate states as JSON).
pub fn plan(current: &Value, desired: &Value) -> Plan {
    let mut p = Plan {
        interfaces: diff_interfaces(current, desired),
        ports: diff_ports(current, desired),
        ..Default::default()
    };

    // Routes.
    let cur_cfg = list(current, &["routes", "config"]);
    let cur_norm: Vec<Value> = cur_cfg.iter().map(with_default_table).collect();
    for d in list(desired, &["routes", "config"]) {
        let pattern = without_state(d);
        if is_absent(d) {
            let matching = cur_cfg
                .iter()
                .zip(&cur_norm)
                .filter(|(_, n)| contains(&pattern, n, ""))
                .map(|(c, _)| c);
            for c in matching {
                if !p.routes_removed.contains(c) {
                    p.routes_removed.push(c.clone());
                }
            }
        } else if !cur_norm.iter().any(|c| contains(&pattern, c, "")) {
            p.routes_added.push(pattern);
        }
    }

    // DNS.
    if let Some(dcfg) = desired.get("dns-resolver").and_then(|d| d.get("config")) {
        let before = dns_config(current);
        let after = if dcfg.as_object().is_some_and(serde_json::Map::is_empty) {
            Value::Object(Default::default())
        } else {
            dns_config(desired)
        };
        if before != after {
            p.dns = Some(DnsChange { before, after });
        }
    }

    // Default route.
    let running_defaults: Vec<&Value> = list(current, &["routes", "running"])
        .iter()
        .filter(|r| is_default_route(r))
        .collect();
    p.has_default_route = !running_defaults.is_empty();
    let gw_ifaces: BTreeSet<String> = running_defaults
        .iter()
        .filter_map(|r| str_of(r, "next-hop-interface").map(str::to_owned))
        .collect();
    p.default_route_interfaces = gw_ifaces.iter().cloned().collect();
    let added_default = p.routes_added.iter().any(is_default_route);
    let removed_defaults = p
        .routes_removed
        .iter()
        .filter(|r| is_default_route(r))
        .count();
    p.touches_default_route = added_default || removed_defaults > 0;
    let cfg_defaults = cur_cfg.iter().filter(|r| is_default_route(r)).count();
    p.removes_all_default_routes = removed_defaults > 0
        && !added_default
        && removed_defaults >= cfg_defaults
        && running_defaults.len() <= removed_defaults;
    p.touches_default_route_interface = p
        .interfaces
        .iter()
        .any(|c| gw_ifaces.contains(&c.name) && !matches!(c.kind, InterfaceChangeKind::Create))
        || list(desired, &["interfaces"])
            .iter()
            .flat_map(ports_of)
            .any(|port| gw_ifaces.contains(&port));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "interfaces": [
                {"name": "eth0", "type": "ethernet", "state": "up", "mac-address": "02:00:00:AA:BB:CC",
                 "ipv4": {"enabled": true, "dhcp": true, "address": [{"ip": "198.18.0.10", "prefix-length": 24}]}},
                {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500}
            ],
            "routes": {
                "config": [{"destination": "198.19.0.0/24", "next-hop-interface": "eth1", "next-hop-address": "198.18.1.1", "table-id": 254}],
                "running": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "198.18.0.1", "table-id": 254}]
            },
            "dns-resolver": {"config": {"server": ["198.18.0.1"]}, "running": {"server": ["198.18.0.1"]}}
        })
    }

    #[test]
    fn applying_the_current_state_is_empty() {
        let cur = base();
        let desired = json!({"interfaces": [{"name": "eth0", "type": "ethernet", "state": "up",
            "mac-address": "02:00:00:aa:bb:cc"}, {"name": "eth1", "mtu": 1500}],
            "dns-resolver": {"config": {"server": ["198.18.0.1"]}}});
        assert!(plan(&cur, &desired).is_empty());
        assert!(satisfies(&desired, &cur));
    }

    #[test]
    fn absent_interfaces_and_routes() {
        let desired = json!({
            "interfaces": [{"name": "eth1", "state": "absent"}, {"name": "nope", "state": "absent"}],
            "routes": {"config": [{"next-hop-interface": "eth1", "state": "absent"}]}
        });
        let p = plan(&base(), &desired);
        assert_eq!(
            p.interfaces,
            [InterfaceChange {
                name: "eth1".into(),
                r#type: Some("ethernet".into()),
                kind: InterfaceChangeKind::Remove
            }]
        );
        assert_eq!(p.routes_removed.len(), 1);
        assert!(!p.touches_default_route && !p.touches_default_route_interface);
    }

    #[test]
    fn moving_the_gateway_nic_under_a_bridge_touches_it() {
        let desired = json!({"interfaces": [{"name": "br-ex", "type": "linux-bridge", "state": "up",
            "bridge": {"port": [{"name": "eth0"}]}}]});
        let p = plan(&base(), &desired);
        assert!(p.touches_default_route_interface);
        assert_eq!(p.default_route_interfaces, ["eth0"]);
    }

    #[test]
    fn ports_attach_move_and_detach() {
        let cur = json!({"interfaces": [
            {"name": "eth1", "type": "ethernet", "state": "up", "controller": "br0"},
            {"name": "eth2", "type": "ethernet", "state": "up", "controller": "br0"},
            {"name": "eth3", "type": "ethernet", "state": "up", "controller": "bond0"},
            {"name": "br0", "type": "linux-bridge", "state": "up",
             "bridge": {"port": [{"name": "eth1"}, {"name": "eth2"}]}}
        ]});
        let desired = json!({"interfaces": [
            {"name": "br0", "type": "linux-bridge", "state": "up", "bridge": {"port": [{"name": "eth2"}]}},
            {"name": "br1", "type": "linux-bridge", "state": "up", "bridge": {"port": [{"name": "eth1"}]}},
            {"name": "eth3", "controller": ""},
            {"name": "eth4", "controller": "br1"}
        ]});
        let to = |port: &str, from: Option<&str>, to: Option<&str>| PortChange {
            port: port.into(),
            from: from.map(Into::into),
            to: to.map(Into::into),
        };
        assert_eq!(
            plan(&cur, &desired).ports,
            [
                to("eth1", Some("br0"), Some("br1")),
                to("eth3", Some("bond0"), None),
                to("eth4", None, Some("br1")),
            ]
        );
        let removed = json!({"interfaces": [{"name": "br0", "state": "absent"}]});
        assert_eq!(
            plan(&cur, &removed).ports,
            [to("eth1", Some("br0"), None), to("eth2", Some("br0"), None)]
        );
        let same = json!({"interfaces": [{"name": "br0", "bridge": {"port": [{"name": "eth1"}, {"name": "eth2"}]}}]});
        assert!(plan(&cur, &same).ports.is_empty());
    }

    #[test]
    fn every_change_has_a_line() {
        let desired = json!({
            "interfaces": [{"name": "eth1", "state": "absent"}, {"name": "eth0", "mtu": 9000},
                           {"name": "br1", "type": "linux-bridge", "state": "up",
                            "bridge": {"port": [{"name": "eth0"}]}}],
            "routes": {"config": [{"destination": "198.20.0.0/24", "next-hop-interface": "eth0", "metric": 5},
                                  {"next-hop-interface": "eth1", "state": "absent"}]},
            "dns-resolver": {"config": {"server": ["198.18.0.53"]}}
        });
        let lines: Vec<String> = plan(&base(), &desired)
            .change_lines()
            .iter()
            .map(|l| format!("{} | {} | {}", l.verb, l.what, l.detail))
            .collect();
        assert_eq!(
            lines,
            [
                "create | interface br1 (linux-bridge) | ",
                "change | interface eth0 (ethernet) | mtu",
                "remove | interface eth1 (ethernet) | ",
                "attach | port eth0 | becomes a port of br1",
                "add | route | 198.20.0.0/24 dev eth0 metric 5",
                "remove | route | 198.19.0.0/24 via 198.18.1.1 dev eth1 table 254",
                "change | dns | {\"server\":[\"198.18.0.1\"]} → {\"server\":[\"198.18.0.53\"]}",
            ]
        );
    }

    #[test]
    fn replacing_the_default_route() {
        let desired = json!({"routes": {"config": [
            {"destination": "0.0.0.0/0", "next-hop-interface": "eth1", "next-hop-address": "198.18.1.1"}]}});
        let p = plan(&base(), &desired);
        assert!(p.touches_default_route && !p.removes_all_default_routes);
        assert_eq!(p.routes_added.len(), 1);
    }

    #[test]
    fn dns_change_and_clear() {
        let p = plan(
            &base(),
            &json!({"dns-resolver": {"config": {"server": ["2001:db8::53"]}}}),
        );
        assert_eq!(
            p.dns,
            Some(DnsChange {
                before: json!({"server": ["198.18.0.1"]}),
                after: json!({"server": ["2001:db8::53"]})
            })
        );
        let p = plan(&base(), &json!({"dns-resolver": {"config": {}}}));
        assert_eq!(p.dns.unwrap().after, json!({}));
    }

    #[test]
    fn link_local_addresses_and_default_table_do_not_count_as_changes() {
        let cur = json!({
            "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                "ipv6": {"enabled": true, "address": [
                    {"ip": "2001:db8::1", "prefix-length": 64},
                    {"ip": "FE80::1", "prefix-length": 64}]}}],
            "routes": {"config": [{"destination": "198.19.0.0/24", "next-hop-interface": "eth1"}]}
        });
        let desired = json!({
            "interfaces": [{"name": "eth1", "ipv6": {"enabled": true,
                "address": [{"ip": "2001:db8::1", "prefix-length": 64}]}}],
            "routes": {"config": [{"destination": "198.19.0.0/24", "next-hop-interface": "eth1",
                                   "table-id": 254}]}
        });
        assert!(
            plan(&cur, &desired).is_empty(),
            "{:?}",
            plan(&cur, &desired)
        );
    }

    #[test]
    fn an_ethernet_desired_state_fits_a_veth() {
        let cur = json!({"interfaces": [{"name": "eth1", "type": "veth", "state": "up"}]});
        let desired = json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}]});
        assert!(plan(&cur, &desired).is_empty());
        let bond = json!({"interfaces": [{"name": "eth1", "type": "bond", "state": "up"}]});
        assert!(!plan(&cur, &bond).is_empty());
    }

    #[test]
    fn contains_is_order_insensitive_for_lists() {
        assert!(satisfies(
            &json!({"a": [1, 2]}),
            &json!({"a": [2, 1], "b": 3})
        ));
        assert!(!satisfies(&json!({"a": [1]}), &json!({"a": [1, 2]})));
        assert!(!satisfies(&json!({"a": {"b": 1}}), &json!({"a": {"b": 2}})));
    }
}
