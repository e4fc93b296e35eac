//! Deterministic mutations of the example policies and the fixture reviews, shared by the oracle
//! harness (`tests/oracle.rs`) and the malformed-policy corpus (`tests/corpus.rs`).
//!
//! A mutation picks a field of a policy and changes it: a value from a pool of the values users
//! get wrong for that key (prefix lengths past 32 and 128, addresses like `300.1.1.1`, route
//! destinations without a prefix, unknown interface types, MTUs out of range, VLAN ids past
//! 4094, references to interfaces nobody defines), or a structural change (a key removed, an
//! element duplicated, a value of the wrong JSON type, a known key added where it does not
//! belong). The generator is a `SplitMix64` with a fixed seed: every run tries the same policies.

#![allow(dead_code)]

use knmstate_testkit::golden;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// `SplitMix64`: small, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The example policies (`examples/*.yaml`) and the policies of the fixture reviews
/// (`webhook/tests/fixtures/{pass,fail}`), by file name.
pub fn base_policies() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for f in golden::files(root().join("../examples"), "yaml") {
        let policy: Value = serde_saphyr::from_str(&golden::text(&f)).unwrap();
        out.push((name_of(&f), policy));
    }
    for dir in ["pass", "fail"] {
        for f in golden::files(root().join("tests/fixtures").join(dir), "json") {
            let review = golden::load(&f);
            out.push((name_of(&f), review["request"]["object"].clone()));
        }
    }
    out
}

fn name_of(f: &Path) -> String {
    f.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every path in `v` (objects' keys, arrays' indices), the root first.
fn paths(v: &Value) -> Vec<Vec<Step>> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if let Some(node) = get(v, &p) {
            match node {
                Value::Object(m) => out.extend(m.keys().map(|k| extend(&p, Step::Key(k.clone())))),
                Value::Array(a) => out.extend((0..a.len()).map(|j| extend(&p, Step::Index(j)))),
                _ => {}
            }
        }
        i += 1;
    }
    out
}

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object's key.
    Key(String),
    /// An array's index.
    Index(usize),
}

fn extend(p: &[Step], s: Step) -> Vec<Step> {
    let mut p = p.to_vec();
    p.push(s);
    p
}

fn get<'a>(v: &'a Value, p: &[Step]) -> Option<&'a Value> {
    p.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(i),
    })
}

fn get_mut<'a>(v: &'a mut Value, p: &[Step]) -> Option<&'a mut Value> {
    p.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k),
        Step::Index(i) => v.get_mut(i),
    })
}

/// `p` as the webhook names fields: `.routes.config[0].destination`.
pub fn render(p: &[Step]) -> String {
    p.iter()
        .map(|s| match s {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Values users get wrong, by the key they sit under.
fn pool(key: &str) -> Vec<Value> {
    match key {
        "prefix-length" => json!([
            0,
            8,
            24,
            32,
            33,
            64,
            128,
            129,
            200,
            -1,
            "24",
            4_294_967_296u64
        ]),
        "ip" | "next-hop-address" | "ip-from" | "ip-to" => json!([
            "300.1.1.1",
            "198.18.0.256",
            "198.18.3.7",
            "2001:db8::7",
            "::1",
            "not-an-ip",
            "",
            "198.18.0.1/24",
            "0.0.0.0",
            "255.255.255.255",
            "fe80::1",
            "224.0.0.1"
        ]),
        "destination" => json!([
            "not-a-cidr",
            "198.19.0.0/33",
            "2001:db8::/129",
            "198.19.0.0",
            "0.0.0.0/0",
            "::/0",
            "198.19.0.1/24",
            "2001:db8:1::/64",
            "",
            "198.19.0.0/-1"
        ]),
        "server" => json!([
            ["300.1.1.1"],
            ["198.18.0.53"],
            ["2001:db8::53"],
            ["fe80::1%eth1"],
            ["not-dns"],
            [""],
            ["198.18.0.53", "198.18.0.53"],
            []
        ]),
        "search" => json!([["example.com"], [""], ["a..b"], ["-bad-"], []]),
        "mtu" => json!([
            0,
            67,
            68,
            576,
            1280,
            1500,
            9000,
            65536,
            -1,
            4_294_967_296u64,
            "1500"
        ]),
        "type" => json!([
            "ethernet",
            "vlan",
            "bond",
            "linux-bridge",
            "ovs-bridge",
            "ovs-interface",
            "frobnicator",
            "dummy",
            "vxlan",
            "loopback",
            "vrf",
            "mac-vlan",
            "veth",
            ""
        ]),
        "state" => json!(["up", "down", "absent", "ignore", "bogus", ""]),
        "id" => json!([0, 1, 102, 4094, 4095, 5000, -1, "102"]),
        "base-iface" | "next-hop-interface" | "peer" => {
            json!(["eth1", "eth9", "", "bond0", "br1", "lo", "bond0.102"])
        }
        "name" => json!([
            "eth1",
            "eth2",
            "",
            "aaaaaaaaaaaaaaaa",
            "br1",
            "bond0",
            "lo",
            "a b"
        ]),
        "mode" => json!(["active-backup", "802.3ad", "balance-rr", "bogus", 4]),
        "port" => json!([
            ["eth1", "eth2"], ["eth1", "eth1"], [], ["bond0"], [{"name": "eth1"}],
            [{"name": "br1"}], [{"name": ""}]
        ]),
        "enabled" | "dhcp" | "autoconf" | "auto-dns" | "stp" => json!([true, false, "yes", 1]),
        "metric" | "table-id" | "priority" => json!([0, 1, 100, 255, 65535, -1, 4_294_967_296u64]),
        "maxUnavailable" => json!([1, "50%", "0%", "100%", "101%", -1, "x", 1.5, true]),
        _ => json!([]),
    }
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// Keys a mutation may add to an object, with values from their pools.
const ADDABLE: &[&str] = &[
    "mtu",
    "state",
    "type",
    "destination",
    "next-hop-interface",
    "prefix-length",
    "id",
    "base-iface",
    "ip",
    "enabled",
    "metric",
    "name",
];

/// Values of every JSON type.
fn wrong_types() -> Vec<Value> {
    json!([null, true, 0, -7, 1.5, "", "x", [], [1], {}, {"x": 1}])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Mutates `v` (a policy, or a desired state) once; returns the path changed.
pub fn mutate(v: &mut Value, rng: &mut Rng) -> Vec<Step> {
    let all = paths(v);
    let target = rng.pick(&all).clone();
    let key = match target.last() {
        Some(Step::Key(k)) => k.clone(),
        _ => String::new(),
    };
    let choice = rng.below(10);
    let Some(slot) = get_mut(v, &target) else {
        return target;
    };
    let pooled = pool(&key);
    match choice {
        0..=4 if !pooled.is_empty() => *slot = rng.pick(&pooled).clone(),
        5 if !target.is_empty() => {
            let (last, parent) = target.split_last().unwrap();
            if let Some(parent) = get_mut(v, parent) {
                match (parent, last) {
                    (Value::Object(m), Step::Key(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), Step::Index(i)) => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
            return parent_of(&target);
        }
        6 => match slot {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                a.push(a[i].clone());
            }
            Value::Object(m) => {
                let k = *rng.pick(ADDABLE);
                let pooled = pool(k);
                m.insert(k.to_owned(), rng.pick(&pooled).clone());
                return extend(&target, Step::Key(k.to_owned()));
            }
            _ => *slot = rng.pick(&wrong_types()).clone(),
        },
        7 => *slot = rng.pick(&wrong_types()).clone(),
        _ => {
            // A leaf value from another key's pool: right type, wrong meaning.
            let k = *rng.pick(ADDABLE);
            *slot = rng.pick(&pool(k)).clone();
        }
    }
    target
}

fn parent_of(p: &[Step]) -> Vec<Step> {
    p[..p.len().saturating_sub(1)].to_vec()
}

/// An AdmissionReview of `operation` (`CREATE` or `UPDATE`) for `policy`.
pub fn review(operation: &str, policy: &Value, old: Option<&Value>) -> Vec<u8> {
    let name = policy
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("policy");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "3f2a6c1e-0000-4000-8000-000000000001",
            "kind": {"group": "nmstate.io", "version": "v1", "kind": "NodeNetworkConfigurationPolicy"},
            "resource": {"group": "nmstate.io", "version": "v1", "resource": "nodenetworkconfigurationpolicies"},
            "name": name, "operation": operation, "userInfo": {"username": "admin"},
            "dryRun": false,
            "object": policy,
            "oldObject": old.cloned().unwrap_or(Value::Null),
        }
    });
    serde_json::to_vec(&review).unwrap()
}

/// What the webhook answered one validation review.
#[derive(Debug)]
pub enum Answer {
    /// Allowed.
    Allowed,
    /// Denied; the message and the fields of its causes.
    Denied {
        /// `status.message`.
        message: String,
        /// `status.details.causes[].field`.
        fields: Vec<String>,
    },
    /// Not an AdmissionReview with a response, or a panic.
    ServerError(String),
}

/// Sends `body` through the real entry point, `Admission::review`, catching any panic.
pub fn validate(body: &[u8]) -> Answer {
    use knmstate_webhook::admission::{Admission, VALIDATE_PATH};
    let Ok(out) = std::panic::catch_unwind(|| Admission::default().review(VALIDATE_PATH, body))
    else {
        return Answer::ServerError("panicked".into());
    };
    let Some(r) = out.get("response") else {
        return Answer::ServerError(format!("no response: {out}"));
    };
    match r.get("allowed").and_then(Value::as_bool) {
        Some(true) => Answer::Allowed,
        Some(false) => Answer::Denied {
            message: r
                .pointer("/status/message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            fields: r
                .pointer("/status/details/causes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("field").and_then(Value::as_str))
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        None => Answer::ServerError(format!("no verdict: {r}")),
    }
}
