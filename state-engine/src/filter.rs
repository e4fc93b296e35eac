//! What of a node's current state is reported in its NodeNetworkState (upstream's
//! `pkg/state/filter.go`), plus a size cap upstream lacks (upstream #1505).
//!
//! [`filter_state`] keeps only `interfaces`, `routes.{config,running}`,
//! `dns-resolver.{config,running}.{search,server}` and `ovn.bridge-mappings[{localnet,bridge,state}]`,
//! and within them drops:
//! * interfaces with `type: veth` **and** `state: ignore` (CNI pod veths NetworkManager does not manage);
//! * linux-bridge `bridge.options.gc-timer` and `hello-timer` (they change every second);
//! * `preferred-life-time` and `valid-life-time` of IPv4/IPv6 addresses;
//! * routes whose `next-hop-interface` is not a kept interface (so routes without one too).
//!
//! Then, if the JSON form is larger than [`FilterOptions::max_bytes`], it trims in steps until
//! it fits: (1) verbose per-interface fields (`ethtool`, `lldp`, …), (2) bulk interfaces
//! (VLANs, VXLANs, veths, …) compacted to their identity and addresses, (3) bulk interfaces
//! dropped from the end of the name order, then any interface. Whatever was trimmed is
//! described under the top-level key [`TRIM_MARKER_KEY`], so a reader sees that the state is
//! partial and why.
//!
//! ```
//! use knmstate_state_engine::filter::{filter_state, FilterOptions};
//! use serde_json::json;
//!
//! let current = json!({
//!     "hostname": {"running": "node01"},
//!     "interfaces": [
//!         {"name": "eth0", "type": "ethernet", "state": "up"},
//!         {"name": "veth1", "type": "veth", "state": "ignore"}
//!     ],
//!     "routes": {"running": [
//!         {"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "198.18.0.1"},
//!         {"destination": "198.19.0.0/24", "next-hop-interface": "veth1"}
//!     ]}
//! });
//! let out = filter_state(&current, &FilterOptions::default());
//! assert_eq!(out.state, json!({
//!     "interfaces": [{"name": "eth0", "type": "ethernet", "state": "up"}],
//!     "routes": {"running": [
//!         {"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "198.18.0.1"}
//!     ]}
//! }));
//! assert!(out.trim.is_none());
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Top-level key of the filtered state that describes what the size cap trimmed.
pub const TRIM_MARKER_KEY: &str = "knmstate-trimmed";

/// Default size cap of the filtered state, in bytes of compact JSON: half of 1 MiB, leaving
/// room for the rest of the object under etcd's 1.5 MB request limit.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;

/// Interface keys removed first when the state is too large.
pub const VERBOSE_INTERFACE_KEYS: &[&str] = &[
    "ethtool",
    "lldp",
    "ieee-802-1x",
    "dispatch",
    "802.1x",
    "permanent-mac-address",
    "accept-all-mac-addresses",
    "wait-ip",
    "profile-name",
    "driver",
    "min-mtu",
    "max-mtu",
    "identifier",
    "ethernet",
    "description",
];

/// Interface types that are never compacted or dropped before the bulk ones: they carry the
/// node's own connectivity.
pub const CORE_INTERFACE_TYPES: &[&str] = &[
    "ethernet",
    "bond",
    "linux-bridge",
    "ovs-bridge",
    "ovs-interface",
    "loopback",
    "team",
];

/// Options of [`filter_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterOptions {
    /// Size cap in bytes of compact JSON; `usize::MAX` disables it.
    pub max_bytes: usize,
}

impl Default for FilterOptions {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What the size cap did (also written under [`TRIM_MARKER_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrimReport {
    /// Always `size-cap`.
    pub reason: String,
    /// The cap.
    pub max_bytes: usize,
    /// Size of the filtered state before trimming.
    pub original_bytes: usize,
    /// Interface keys removed from every interface.
    pub fields_dropped: Vec<String>,
    /// Interfaces reduced to their identity and addresses.
    pub interfaces_compacted: usize,
    /// Interfaces left out entirely.
    pub interfaces_dropped: usize,
    /// Up to 20 of the names left out.
    pub dropped_interfaces_sample: Vec<String>,
    /// Routes left out because their interface was.
    pub routes_dropped: usize,
}

/// The result of [`filter_state`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filtered {
    /// The state to report.
    pub state: Value,
    /// What the size cap trimmed, when it trimmed anything.
    pub trim: Option<TrimReport>,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn keep_interface(iface: &Value) -> bool {
    !(str_of(iface, "type") == Some("veth") && str_of(iface, "state") == Some("ignore"))
}

fn clean_interface(iface: &mut Value) {
    if str_of(iface, "type") == Some("linux-bridge")
        && let Some(opts) = iface
            .get_mut("bridge")
            .and_then(|b| b.get_mut("options"))
            .and_then(Value::as_object_mut)
    {
        opts.remove("gc-timer");
        opts.remove("hello-timer");
    }
    for family in ["ipv4", "ipv6"] {
        if let Some(addrs) = iface
            .get_mut(family)
            .and_then(|f| f.get_mut("address"))
            .and_then(Value::as_array_mut)
        {
            for a in addrs.iter_mut().filter_map(Value::as_object_mut) {
                a.remove("preferred-life-time");
                a.remove("valid-life-time");
            }
        }
    }
}

fn filter_routes(list: &Value, kept: &BTreeSet<String>) -> (Vec<Value>, usize) {
    let all = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let out: Vec<Value> = all
        .iter()
        .filter(|r| str_of(r, "next-hop-interface").is_some_and(|n| kept.contains(n)))
        .cloned()
        .collect();
    let dropped = all.len() - out.len();
    (out, dropped)
}

fn pick(src: &Value, keys: &[&str]) -> Option<Map<String, Value>> {
    let obj = src.as_object()?;
    Some(
        keys.iter()
            .filter_map(|k| obj.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect(),
    )
}

/// Names of the interfaces in `interfaces`.
fn names(interfaces: &[Value]) -> BTreeSet<String> {
    interfaces
        .iter()
        .filter_map(|i| str_of(i, "name").map(str::to_owned))
        .collect()
}

/// Everything of the filtered state but `interfaces`, keeping routes of `kept` interfaces
/// only; also returns how many routes were left out.
fn assemble_rest(current: &Value, kept: &BTreeSet<String>) -> (Map<String, Value>, usize) {
    let mut out = Map::new();
    let mut routes_dropped = 0;
    if let Some(routes) = current.get("routes") {
        let mut r = Map::new();
        for k in ["config", "running"] {
            if let Some(list) = routes.get(k) {
                let (kept_routes, dropped) = filter_routes(list, kept);
                routes_dropped += dropped;
                r.insert(k.into(), Value::Array(kept_routes));
            }
        }
        out.insert("routes".into(), Value::Object(r));
    }
    if let Some(dns) = current.get("dns-resolver") {
        let mut d = Map::new();
        for k in ["config", "running"] {
            if let Some(part) = dns.get(k).and_then(|p| pick(p, &["search", "server"])) {
                d.insert(k.into(), Value::Object(part));
            }
        }
        out.insert("dns-resolver".into(), Value::Object(d));
    }
    if let Some(maps) = current
        .get("ovn")
        .and_then(|o| o.get("bridge-mappings"))
        .and_then(Value::as_array)
    {
        let maps: Vec<Value> = maps
            .iter()
            .filter_map(|m| pick(m, &["localnet", "bridge", "state"]).map(Value::Object))
            .collect();
        out.insert("ovn".into(), serde_json::json!({ "bridge-mappings": maps }));
    }
    (out, routes_dropped)
}

/// Build the filtered state from parts, keeping routes of `interfaces` only.
fn assemble(current: &Value, interfaces: Vec<Value>) -> (Value, usize) {
    let (mut out, routes_dropped) = assemble_rest(current, &names(&interfaces));
    if current.get("interfaces").is_some() {
        out.insert("interfaces".into(), Value::Array(interfaces));
    }
    (Value::Object(out), routes_dropped)
}

/// The JSON size [`assemble`] would produce, without building it.
fn assembled_len(current: &Value, interfaces: &[Value]) -> usize {
    let (rest, _) = assemble_rest(current, &names(interfaces));
    let rest_len = json_len(&rest);
    if current.get("interfaces").is_none() {
        return rest_len;
    }
    // `"interfaces":` plus a separating comma when other keys exist.
    let sep = usize::from(!rest.is_empty());
    rest_len + "\"interfaces\":".len() + sep + json_len(&interfaces)
}

/// Counts bytes instead of storing them.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    let mut c = ByteCounter(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

fn is_core(iface: &Value) -> bool {
    str_of(iface, "type").is_some_and(|t| CORE_INTERFACE_TYPES.contains(&t))
}

fn compact(iface: &Value) -> Value {
    let mut c = pick(
        iface,
        &[
            "name",
            "type",
            "state",
            "mtu",
            "mac-address",
            "controller",
            "vlan",
            "vxlan",
            "mac-vlan",
        ],
    )
    .unwrap_or_default();
    for family in ["ipv4", "ipv6"] {
        if let Some(f) = iface
            .get(family)
            .and_then(|f| pick(f, &["enabled", "address"]))
        {
            c.insert(family.into(), Value::Object(f));
        }
    }
    Value::Object(c)
}

/// The interfaces of `current` that a NodeNetworkState reports (before cleaning and capping).
fn kept_interfaces(current: &Value) -> impl Iterator<Item = &Value> {
    current
        .get("interfaces")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|i| keep_interface(i))
}

/// Filter a node's current state (the output of `nmstatectl show` as JSON) for its
/// NodeNetworkState, then apply the size cap.
pub fn filter_state(current: &Value, opts: &FilterOptions) -> Filtered {
    let mut interfaces: Vec<Value> = kept_interfaces(current).cloned().collect();
    interfaces.iter_mut().for_each(clean_interface);
    let original_bytes = assembled_len(current, &interfaces);
    if original_bytes <= opts.max_bytes {
        let (state, _) = assemble(current, interfaces);
        return Filtered { state, trim: None };
    }

    let mut report = TrimReport {
        reason: "size-cap".into(),
        max_bytes: opts.max_bytes,
        original_bytes,
        ..Default::default()
    };
    // Room for the marker itself: an upper bound of its JSON (its sample list is bounded).
    let budget = opts
        .max_bytes
        .saturating_sub(marker_bound(&interfaces, &report));

    // Step 1: verbose fields.
    let mut dropped_fields = BTreeSet::new();
    for iface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
        for k in VERBOSE_INTERFACE_KEYS {
            if iface.remove(*k).is_some() {
                dropped_fields.insert((*k).to_owned());
            }
        }
    }
    report.fields_dropped = dropped_fields.into_iter().collect();
    let mut size = assembled_len(current, &interfaces);

    // Step 2: compact bulk interfaces.
    if size > budget {
        for iface in interfaces.iter_mut().filter(|i| !is_core(i)) {
            let c = compact(iface);
            if c != *iface {
                *iface = c;
                report.interfaces_compacted += 1;
            }
        }
        size = assembled_len(current, &interfaces);
    }

    // Step 3: drop interfaces, bulk ones first, last names first.
    if size > budget {
        let mut order: Vec<usize> = (0..interfaces.len()).collect();
        order.sort_by(|&a, &b| {
            let key = |i: usize| {
                (
                    !is_core(&interfaces[i]),
                    str_of(&interfaces[i], "name")
                        .unwrap_or_default()
                        .to_owned(),
                )
            };
            key(b).cmp(&key(a))
        });
        let mut drop = BTreeSet::new();
        let mut excess = size - budget;
        for i in order {
            if excess == 0 {
                break;
            }
            // Each element costs its JSON plus a separating comma.
            let cost = json_len(&interfaces[i]) + 1;
            excess = excess.saturating_sub(cost);
            drop.insert(i);
            if report.dropped_interfaces_sample.len() < 20 {
                let name = str_of(&interfaces[i], "name").unwrap_or_default();
                report.dropped_interfaces_sample.push(name.to_owned());
            }
        }
        report.interfaces_dropped = drop.len();
        interfaces = interfaces
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, iface)| iface)
            .collect();
    }

    let untrimmed_drops = untrimmed_route_drops(current);
    let (mut state, routes_dropped) = assemble(current, interfaces);
    report.routes_dropped = routes_dropped.saturating_sub(untrimmed_drops);
    if let Value::Object(m) = &mut state {
        m.insert(
            TRIM_MARKER_KEY.into(),
            serde_json::to_value(&report).unwrap_or(Value::Null),
        );
    }
    Filtered {
        state,
        trim: Some(report),
    }
}

/// An upper bound of the marker's JSON size: every count at its widest, the sample made of
/// the longest names, every verbose key listed.
fn marker_bound(interfaces: &[Value], report: &TrimReport) -> usize {
    let mut names: Vec<&str> = interfaces
        .iter()
        .filter_map(|i| str_of(i, "name"))
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let widest = TrimReport {
        reason: report.reason.clone(),
        max_bytes: usize::MAX,
        original_bytes: usize::MAX,
        fields_dropped: VERBOSE_INTERFACE_KEYS
            .iter()
            .map(|k| (*k).to_owned())
            .collect(),
        interfaces_compacted: usize::MAX,
        interfaces_dropped: usize::MAX,
        dropped_interfaces_sample: names.iter().take(20).map(|n| (*n).to_owned()).collect(),
        routes_dropped: usize::MAX,
    };
    // The key, its quotes, a colon and a comma.
    serde_json::to_vec(&widest).map_or(4096, |b| b.len()) + TRIM_MARKER_KEY.len() + 4
}

/// Routes the plain filter (no size cap) drops, so the report counts only cap-caused drops.
fn untrimmed_route_drops(current: &Value) -> usize {
    let kept: BTreeSet<String> = kept_interfaces(current)
        .filter_map(|i| str_of(i, "name").map(str::to_owned))
        .collect();
    assemble_rest(current, &kept).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn keeps_only_known_sections() {
        let cur = json!({
            "hostname": {"running": "x"}, "route-rules": {"config": []}, "ovs-db": {},
            "dns-resolver": {"config": {"server": ["198.18.0.1"], "options": ["rotate"]},
                              "running": {"search": ["example.test"], "server": ["2001:db8::1"]}},
            "ovn": {"bridge-mappings": [{"localnet": "l", "bridge": "br-ex", "state": "present", "x": 1}]}
        });
        let out = filter_state(&cur, &FilterOptions::default()).state;
        assert_eq!(
            out,
            json!({
                "dns-resolver": {"config": {"server": ["198.18.0.1"]},
                                  "running": {"search": ["example.test"], "server": ["2001:db8::1"]}},
                "ovn": {"bridge-mappings": [{"localnet": "l", "bridge": "br-ex", "state": "present"}]}
            })
        );
    }

    #[test]
    fn managed_veths_stay() {
        let cur = json!({"interfaces": [
            {"name": "v1", "type": "veth", "state": "up"},
            {"name": "v2", "type": "veth", "state": "ignore"},
            {"name": "e1", "type": "ethernet", "state": "ignore"}
        ]});
        let out = filter_state(&cur, &FilterOptions::default()).state;
        let names: Vec<_> = out["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["v1", "e1"]);
    }

    fn many_vlans(n: usize) -> Value {
        let mut ifaces = vec![json!({"name": "eth0", "type": "ethernet", "state": "up",
            "ipv4": {"enabled": true, "address": [{"ip": "198.18.0.10", "prefix-length": 24}]}})];
        for i in 0..n {
            ifaces.push(json!({
                "name": format!("eth0.{i}"), "type": "vlan", "state": "up", "mtu": 1500,
                "mac-address": "02:00:00:00:00:01", "accept-all-mac-addresses": false,
                "ethtool": {"feature": {"rx-checksum": true, "tx-checksum-ip-generic": true,
                    "tx-generic-segmentation": true, "rx-gro": true, "rx-vlan-filter": true}},
                "lldp": {"enabled": false}, "wait-ip": "any", "profile-name": format!("eth0.{i}"),
                "ipv4": {"enabled": false, "dhcp": false}, "ipv6": {"enabled": false, "autoconf": false, "dhcp": false},
                "vlan": {"base-iface": "eth0", "id": i % 4094 + 1, "protocol": "802.1q"}
            }));
        }
        json!({"interfaces": ifaces, "routes": {"running": [
            {"destination": "0.0.0.0/0", "next-hop-interface": "eth0", "next-hop-address": "198.18.0.1"},
            {"destination": "198.19.0.0/24", "next-hop-interface": format!("eth0.{}", n.saturating_sub(1))}
        ]}})
    }

    #[test]
    fn five_thousand_interfaces_fit_with_a_marker() {
        let cur = many_vlans(5000);
        assert!(json_len(&cur) > 2 * 1024 * 1024, "input is large");
        let out = filter_state(&cur, &FilterOptions::default());
        let size = json_len(&out.state);
        assert!(size <= DEFAULT_MAX_BYTES, "{size}");
        let trim = out.trim.unwrap();
        assert!(trim.interfaces_compacted > 0);
        assert!(trim.fields_dropped.contains(&"ethtool".to_string()));
        assert_eq!(
            out.state[TRIM_MARKER_KEY]["interfaces-dropped"],
            json!(trim.interfaces_dropped)
        );
        // eth0 and its default route survive.
        assert_eq!(out.state["interfaces"][0]["name"], "eth0");
        assert_eq!(
            out.state["routes"]["running"][0]["destination"],
            "0.0.0.0/0"
        );
    }

    #[test]
    fn small_cap_drops_interfaces_and_their_routes() {
        let cur = many_vlans(50);
        let out = filter_state(&cur, &FilterOptions { max_bytes: 4096 });
        let trim = out.trim.unwrap();
        assert!(json_len(&out.state) <= 4096);
        assert!(trim.interfaces_dropped > 0);
        assert_eq!(trim.dropped_interfaces_sample[0], "eth0.9");
        assert_eq!(trim.routes_dropped, 1);
        assert_eq!(out.state["routes"]["running"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn assembled_len_is_exact() {
        for cur in [
            many_vlans(3),
            json!({"interfaces": []}),
            json!({"interfaces": [{"name": "a"}], "dns-resolver": {"running": {"server": []}}}),
            json!({"routes": {"running": []}}),
        ] {
            let ifaces = cur
                .get("interfaces")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let built = assemble(&cur, ifaces.clone()).0;
            assert_eq!(assembled_len(&cur, &ifaces), json_len(&built), "{cur}");
        }
    }

    #[test]
    fn under_the_cap_nothing_is_trimmed() {
        let cur = many_vlans(3);
        let out = filter_state(&cur, &FilterOptions::default());
        assert!(out.trim.is_none());
        assert!(out.state.get(TRIM_MARKER_KEY).is_none());
        assert_eq!(
            out.state["interfaces"][1]["ethtool"]["feature"]["rx-gro"],
            true
        );
    }
}
