//! An in-memory node network for handler unit tests and large simulations.
//!
//! It keeps an nmstate-shaped state (interfaces, routes, DNS) and applies desired states to it
//! with nmstate's merge rules as far as they matter to the handler: interfaces are merged by
//! name (objects merged key by key, lists replaced), `state: absent` removes an interface with
//! its routes and port memberships, bridge and bond ports get a `controller`, static routes are
//! added or removed (`state: absent`) in `routes.config`, `dns-resolver.config` replaces the
//! static DNS. Routes learned by DHCP or router advertisement disappear when their interface
//! stops using DHCP/autoconf or becomes a port. Checkpoints behave like NetworkManager's: one at a
//! time, automatic rollback after their timeout. The recovery record is modelled as the real
//! backend keeps it on disk (it survives [`MemoryBackend::crash`]): a checkpoint left by a
//! "crashed" owner is rolled back by the next apply (or by
//! [`Backend::roll_back_stale_checkpoints`]), its attempt reported interrupted, and a checkpoint
//! of another tool ([`MemoryBackend::hold_foreign_checkpoint`]) is left alone and refuses
//! applies, so the apply transaction ([`Backend::transaction`]) behaves as on a real node.
//!
//! Compiled for tests only (this crate's own, and with the `testing` feature).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::{
    ApplyOptions, Attempt, Backend, Checkpoint, CurrentState, NMSTATE_VERSION, PendingApply,
    Recovery,
    changes::{ChangeKind, ChangeStream, debounce},
    error::{BackendError, Result},
    record::{InFlight, Record},
};

#[derive(Debug)]
struct SavedCheckpoint {
    id: Checkpoint,
    saved: Value,
    deadline: Instant,
}

#[derive(Debug)]
struct Inner {
    state: Value,
    /// Routes the node learned dynamically (DHCP, RA), as in the initial running routes.
    dynamic_routes: Vec<Value>,
    /// Name servers learned dynamically.
    dynamic_dns: Value,
    checkpoints: Vec<SavedCheckpoint>,
    owned: Option<Checkpoint>,
    /// The recovery record, as the real backend keeps it on disk.
    record: Record,
    next_id: u64,
    unsupported_types: BTreeSet<String>,
    bridge_vlan_filtering: bool,
}

/// A node network held in memory. Cloning shares the node.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<ChangeKind>,
}

fn array<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or_default()
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, other) => *slot = other.clone(),
    }
}

fn invalid(msg: String) -> BackendError {
    BackendError::InvalidDesiredState(msg)
}

impl MemoryBackend {
    /// A node whose current state is `initial` (an nmstate state). Routes in `routes.running`
    /// that are not in `routes.config`, and `dns-resolver.running` when there is no static DNS,
    /// count as learned dynamically.
    pub fn new(initial: Value) -> Self {
        let mut state = initial;
        if !state.is_object() {
            state = json!({});
        }
        for (key, empty) in [
            ("interfaces", json!([])),
            ("routes", json!({"running": [], "config": []})),
            ("dns-resolver", json!({"running": {}, "config": {}})),
        ] {
            if state.get(key).is_none() {
                state[key] = empty;
            }
        }
        let config: Vec<Value> = array(&state, "/routes/config").cloned().collect();
        let dynamic_routes = array(&state, "/routes/running")
            .filter(|r| !config.contains(r))
            .cloned()
            .collect();
        let dynamic_dns = state
            .pointer("/dns-resolver/running")
            .cloned()
            .unwrap_or(json!({}));
        let (events, _) = broadcast::channel(256);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state,
                dynamic_routes,
                dynamic_dns,
                checkpoints: Vec::new(),
                owned: None,
                record: Record::default(),
                next_id: 1,
                unsupported_types: BTreeSet::new(),
                bridge_vlan_filtering: true,
            })),
            events,
        }
    }

    /// A node like the harness nodes: `eth0` on DHCP with a default gateway and a name server,
    /// `eth1` and `eth2` up without addresses.
    pub fn harness_like(address: &str) -> Self {
        Self::new(json!({
            "interfaces": [
                {"name": "eth0", "type": "ethernet", "state": "up", "mtu": 1500,
                 "ipv4": {"enabled": true, "dhcp": true, "address": [{"ip": address, "prefix-length": 24}]},
                 "ipv6": {"enabled": true, "dhcp": true, "autoconf": true}},
                {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 1500,
                 "ipv4": {"enabled": false}, "ipv6": {"enabled": false}},
                {"name": "eth2", "type": "ethernet", "state": "up", "mtu": 1500,
                 "ipv4": {"enabled": false}, "ipv6": {"enabled": false}}
            ],
            "routes": {"running": [
                {"destination": "0.0.0.0/0", "next-hop-address": "198.18.0.1",
                 "next-hop-interface": "eth0", "metric": 100, "table-id": 254}
            ], "config": []},
            "dns-resolver": {"running": {"server": ["198.18.0.1"], "search": ["knmstate.test"]}, "config": {}}
        }))
    }

    /// Pretend the kernel cannot create these nmstate interface types (`bond`, `vlan`, ...).
    pub fn set_unsupported_types<I: IntoIterator<Item = S>, S: Into<String>>(&self, types: I) {
        self.lock().unsupported_types = types.into_iter().map(Into::into).collect();
    }

    /// Pretend the kernel can (or cannot) filter VLANs on linux bridges (it can by default).
    pub fn set_bridge_vlan_filtering(&self, supported: bool) {
        self.lock().bridge_vlan_filtering = supported;
    }

    /// The state as it is now (after any expired checkpoint rolled back).
    pub fn state(&self) -> Value {
        let mut inner = self.lock();
        self.expire(&mut inner);
        inner.state.clone()
    }

    /// Forget the checkpoint this process holds without committing or rolling back, as a
    /// crashed handler would; the checkpoint itself stays until it expires or is destroyed, and
    /// the recovery record stays (it is on disk).
    pub fn crash(&self) {
        self.lock().owned = None;
    }

    /// A checkpoint of the current state created by another tool (not recorded): recovery
    /// leaves it alone and applies are refused until it is gone (it expires after `timeout`).
    pub fn hold_foreign_checkpoint(&self, timeout: Duration) -> Checkpoint {
        let mut inner = self.lock();
        self.expire(&mut inner);
        let id = Self::next_checkpoint_id(&mut inner);
        let saved = inner.state.clone();
        inner.checkpoints.push(SavedCheckpoint {
            id: id.clone(),
            saved,
            deadline: Instant::now() + timeout,
        });
        id
    }

    fn next_checkpoint_id(inner: &mut Inner) -> Checkpoint {
        let id = Checkpoint(format!(
            "/org/freedesktop/NetworkManager/Checkpoint/{}",
            inner.next_id
        ));
        inner.next_id += 1;
        id
    }

    /// Checkpoints currently held.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        inner.checkpoints.iter().map(|c| c.id.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn expire(&self, inner: &mut Inner) {
        let now = Instant::now();
        if let Some(pos) = inner.checkpoints.iter().position(|c| c.deadline <= now) {
            let cp = inner.checkpoints.remove(pos);
            tracing::info!(checkpoint = %cp.id, "checkpoint timed out: rolling back");
            inner.state = cp.saved;
            inner.checkpoints.clear();
            if inner.owned.as_ref() == Some(&cp.id) {
                inner.owned = None;
            }
            self.emit([ChangeKind::DeviceState, ChangeKind::IpConfig]);
        }
    }

    /// Start-up recovery from the record: roll back the recorded checkpoint of a dead apply,
    /// report its attempt interrupted (unless it had committed), leave the other checkpoints
    /// alone. Returns what it did and the change kinds to emit.
    fn recover(inner: &mut Inner) -> (Recovery, BTreeSet<ChangeKind>) {
        let before = inner.state.clone();
        let mut recovery = Recovery::default();
        if let Some(in_flight) = inner.record.apply.take() {
            let pos = in_flight
                .checkpoint
                .as_ref()
                .and_then(|cp| inner.checkpoints.iter().position(|c| &c.id.0 == cp));
            if let Some(pos) = pos {
                let cp = inner.checkpoints.remove(pos);
                tracing::warn!(checkpoint = %cp.id, "rolling back the checkpoint of an apply whose process died");
                inner.state = cp.saved;
                if inner.owned.as_ref() == Some(&cp.id) {
                    inner.owned = None;
                }
                recovery.rolled_back = Some(cp.id);
            }
            if !(in_flight.committing && pos.is_none())
                && let Some(attempt) = in_flight.attempt
            {
                inner.record.push_interrupted(attempt.clone());
                recovery.interrupted = Some(attempt);
            }
        }
        for cp in &inner.checkpoints {
            tracing::warn!(checkpoint = %cp.id, "leaving alone a checkpoint knmstate did not create");
            recovery.foreign.push(cp.id.clone());
        }
        let kinds = Self::change_kinds(&before, &inner.state);
        (recovery, kinds)
    }

    fn emit<I: IntoIterator<Item = ChangeKind>>(&self, kinds: I) {
        for kind in kinds {
            // No subscriber is fine.
            let _ = self.events.send(kind);
        }
    }

    fn apply_to(inner: &Inner, desired: &Value) -> Result<Value> {
        let mut state = inner.state.clone();
        let mut ifaces: Vec<Value> = array(&state, "/interfaces").cloned().collect();
        for want in array(desired, "/interfaces") {
            let name = name_of(want);
            if name.is_empty() {
                return Err(invalid("an interface has no name".into()));
            }
            let absent = want.get("state").and_then(Value::as_str) == Some("absent");
            let pos = ifaces.iter().position(|i| name_of(i) == name);
            if absent {
                if let Some(pos) = pos {
                    ifaces.remove(pos);
                }
                for iface in &mut ifaces {
                    if iface.get("controller").and_then(Value::as_str) == Some(name)
                        && let Some(o) = iface.as_object_mut()
                    {
                        o.remove("controller");
                    }
                    for key in ["bridge", "link-aggregation"] {
                        if let Some(ports) = iface
                            .pointer_mut(&format!("/{key}/port"))
                            .and_then(Value::as_array_mut)
                        {
                            ports.retain(|p| name_of(p) != name && p.as_str() != Some(name));
                        }
                    }
                }
                continue;
            }
            if let Some(mtu) = want.get("mtu") {
                let ok = mtu.as_u64().is_some_and(|m| (68..=65535).contains(&m));
                if !ok {
                    return Err(invalid(format!("interface {name}: invalid mtu {mtu}")));
                }
            }
            if let Some(pos) = pos {
                merge(&mut ifaces[pos], want);
            } else {
                let iface_type = want
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                if matches!(iface_type, "unknown" | "ethernet" | "loopback") {
                    return Err(invalid(format!(
                        "interface {name} does not exist and type {iface_type} cannot be created"
                    )));
                }
                if inner.unsupported_types.contains(iface_type) {
                    return Err(BackendError::UnsupportedInterfaceType {
                        interface: name.to_string(),
                        interface_type: iface_type.to_string(),
                    });
                }
                let mut new = json!({"name": name, "type": iface_type, "state": "up", "mtu": 1500});
                merge(&mut new, want);
                ifaces.push(new);
            }
        }
        // Port memberships follow the controllers' port lists.
        let names: BTreeSet<String> = ifaces.iter().map(|i| name_of(i).to_string()).collect();
        let mut controller_of: BTreeMap<String, String> = BTreeMap::new();
        for iface in &ifaces {
            for key in ["bridge", "link-aggregation"] {
                for port in array(iface, &format!("/{key}/port")) {
                    let port = port.as_str().unwrap_or_else(|| name_of(port));
                    if !names.contains(port) {
                        return Err(invalid(format!(
                            "port {port} of {} does not exist",
                            name_of(iface)
                        )));
                    }
                    controller_of.insert(port.to_string(), name_of(iface).to_string());
                }
            }
        }
        for iface in &mut ifaces {
            let name = name_of(iface).to_string();
            if let Some(o) = iface.as_object_mut() {
                match controller_of.get(&name) {
                    Some(c) => {
                        o.insert("controller".into(), json!(c));
                    }
                    None => {
                        o.remove("controller");
                    }
                }
            }
        }

        // Static routes.
        let mut config: Vec<Value> = array(&state, "/routes/config")
            .filter(|r| {
                let iface = r
                    .get("next-hop-interface")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                names.contains(iface)
            })
            .cloned()
            .collect();
        for route in array(desired, "/routes/config") {
            let mut route = route.clone();
            let absent = route.get("state").and_then(Value::as_str) == Some("absent");
            if let Some(o) = route.as_object_mut() {
                o.remove("state");
            }
            if absent {
                let Some(want) = route.as_object() else {
                    continue;
                };
                config.retain(|r| !want.iter().all(|(k, v)| r.get(k) == Some(v)));
                continue;
            }
            let iface = route
                .get("next-hop-interface")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !names.contains(iface) {
                return Err(invalid(format!(
                    "route next-hop-interface {iface:?} does not exist"
                )));
            }
            if !config.contains(&route) {
                config.push(route);
            }
        }
        let usable = |iface: &str, v6: bool, dynamic: bool| {
            ifaces
                .iter()
                .find(|i| name_of(i) == iface)
                .is_some_and(|i| {
                    let family = if v6 { "ipv6" } else { "ipv4" };
                    let up = i.get("state").and_then(Value::as_str).unwrap_or("up") == "up";
                    let enabled = i
                        .pointer(&format!("/{family}/enabled"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let learns = i
                        .pointer(&format!("/{family}/dhcp"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        || i.pointer(&format!("/{family}/autoconf"))
                            .and_then(Value::as_bool)
                            .unwrap_or(false);
                    up && i.get("controller").is_none() && (!dynamic || (enabled && learns))
                })
        };
        let route_ok = |r: &Value, dynamic: bool| {
            let iface = r
                .get("next-hop-interface")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let v6 = r
                .get("destination")
                .and_then(Value::as_str)
                .is_some_and(|d| d.contains(':'));
            usable(iface, v6, dynamic)
        };
        let mut running: Vec<Value> = inner
            .dynamic_routes
            .iter()
            .filter(|r| route_ok(r, true))
            .cloned()
            .collect();
        running.extend(config.iter().filter(|r| route_ok(r, false)).cloned());
        state["routes"] = json!({"running": running, "config": config});

        // Static DNS replaces the learned one.
        if let Some(dns) = desired.pointer("/dns-resolver/config") {
            state["dns-resolver"]["config"] = dns.clone();
        }
        let config = state
            .pointer("/dns-resolver/config")
            .cloned()
            .unwrap_or(json!({}));
        let has_static = config
            .get("server")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        let learned_ok = ifaces.iter().any(|i| {
            i.pointer("/ipv4/dhcp")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                && i.get("controller").is_none()
        });
        let running = if has_static {
            config
        } else if learned_ok {
            inner.dynamic_dns.clone()
        } else {
            Value::Object(Map::new())
        };
        state["dns-resolver"]["running"] = running;
        state["interfaces"] = Value::Array(ifaces);
        Ok(state)
    }

    /// The apply of `checkpoint` is over (committed or rolled back): drop its record.
    fn forget_record_of(inner: &mut Inner, checkpoint: &Checkpoint) {
        let recorded = inner
            .record
            .apply
            .as_ref()
            .and_then(|f| f.checkpoint.as_ref());
        if recorded == Some(&checkpoint.0) {
            inner.record.apply = None;
        }
    }

    fn change_kinds(before: &Value, after: &Value) -> BTreeSet<ChangeKind> {
        let map = |v: &Value| -> BTreeMap<String, Value> {
            array(v, "/interfaces")
                .map(|i| (name_of(i).to_string(), i.clone()))
                .collect()
        };
        let (b, a) = (map(before), map(after));
        let mut kinds = BTreeSet::new();
        if a.keys().any(|k| !b.contains_key(k)) {
            kinds.insert(ChangeKind::DeviceAdded);
        }
        if b.keys().any(|k| !a.contains_key(k)) {
            kinds.insert(ChangeKind::DeviceRemoved);
        }
        if a.iter().any(|(k, v)| b.get(k).is_some_and(|old| old != v)) {
            kinds.insert(ChangeKind::DeviceState);
        }
        if before.get("routes") != after.get("routes")
            || before.get("dns-resolver") != after.get("dns-resolver")
        {
            kinds.insert(ChangeKind::IpConfig);
        }
        kinds
    }
}

impl Backend for MemoryBackend {
    async fn current_state(&self) -> Result<CurrentState> {
        Ok(CurrentState {
            state: self.state(),
            nm_version: String::new(),
            nmstate_version: NMSTATE_VERSION.to_string(),
        })
    }

    async fn apply(&self, desired: &Value, options: &ApplyOptions) -> Result<PendingApply> {
        if !desired.is_object() {
            return Err(invalid("the desired state is not an object".into()));
        }
        let mut inner = self.lock();
        self.expire(&mut inner);
        if let Some(owned) = &inner.owned {
            return Err(BackendError::CheckpointPending(owned.0.clone()));
        }
        let (recovery, mut kinds) = Self::recover(&mut inner);
        if !recovery.foreign.is_empty() {
            drop(inner);
            self.emit(kinds);
            return Err(BackendError::ForeignCheckpoint(
                recovery.foreign.into_iter().map(|c| c.0).collect(),
            ));
        }
        let destroyed_stale = recovery.rolled_back.into_iter().collect();
        let next = match Self::apply_to(&inner, desired) {
            Ok(next) => next,
            Err(e) => {
                drop(inner);
                self.emit(kinds);
                return Err(e);
            }
        };
        let id = Self::next_checkpoint_id(&mut inner);
        inner.record.apply = Some(InFlight {
            attempt: options.attempt.clone(),
            checkpoint: Some(id.0.clone()),
            ..InFlight::default()
        });
        let saved = std::mem::replace(&mut inner.state, next);
        kinds.extend(Self::change_kinds(&saved, &inner.state));
        inner.checkpoints.push(SavedCheckpoint {
            id: id.clone(),
            saved,
            deadline: Instant::now() + options.checkpoint_timeout.max(Duration::from_millis(1)),
        });
        inner.owned = Some(id.clone());
        drop(inner);
        self.emit(kinds);
        Ok(PendingApply {
            checkpoint: id,
            destroyed_stale,
        })
    }

    async fn roll_back_stale_checkpoints(&self) -> Result<Recovery> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        let (recovery, kinds) = Self::recover(&mut inner);
        drop(inner);
        self.emit(kinds);
        Ok(recovery)
    }

    fn interrupted_attempts(&self) -> Vec<Attempt> {
        self.lock().record.interrupted.clone()
    }

    fn forget_interrupted(&self, attempt: &Attempt) {
        self.lock().record.interrupted.retain(|a| a != attempt);
    }

    async fn supports_bridge_vlan_filtering(&self) -> bool {
        self.lock().bridge_vlan_filtering
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        let Some(pos) = inner.checkpoints.iter().position(|c| &c.id == checkpoint) else {
            return Err(BackendError::CommitCheckpoint {
                checkpoint: checkpoint.0.clone(),
                message: "no such checkpoint (expired and rolled back, or destroyed)".into(),
            });
        };
        inner.checkpoints.remove(pos);
        if inner.owned.as_ref() == Some(checkpoint) {
            inner.owned = None;
        }
        Self::forget_record_of(&mut inner, checkpoint);
        Ok(())
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<()> {
        let mut inner = self.lock();
        self.expire(&mut inner);
        // Gone or not, this process handled it: no recovery is due.
        Self::forget_record_of(&mut inner, checkpoint);
        let Some(pos) = inner.checkpoints.iter().position(|c| &c.id == checkpoint) else {
            return Err(BackendError::RollbackCheckpoint {
                checkpoint: checkpoint.0.clone(),
                message: "no such checkpoint (expired and rolled back, or destroyed)".into(),
            });
        };
        let cp = inner.checkpoints.remove(pos);
        let kinds = Self::change_kinds(&inner.state, &cp.saved);
        inner.state = cp.saved;
        if inner.owned.as_ref() == Some(checkpoint) {
            inner.owned = None;
        }
        drop(inner);
        self.emit(kinds);
        Ok(())
    }

    async fn changes(&self, debounce_for: Duration) -> Result<ChangeStream> {
        let rx = self.events.subscribe();
        let kinds = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(kind) => Some((kind, rx)),
                // Missed events still mean "something changed".
                Err(broadcast::error::RecvError::Lagged(_)) => Some((ChangeKind::Other, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(debounce(kinds, debounce_for))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::probe::default_gateways;

    fn opts() -> ApplyOptions {
        ApplyOptions::default()
    }

    #[tokio::test]
    async fn bridge_over_ports_sets_controllers_and_drops_dynamic_routes() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let desired = json!({"interfaces": [{
            "name": "br0", "type": "linux-bridge", "state": "up",
            "ipv4": {"enabled": true, "dhcp": true},
            "bridge": {"port": [{"name": "eth0"}]}
        }]});
        let pending = node.apply(&desired, &opts()).await.expect("apply");
        let after = node.state();
        let eth0 = array(&after, "/interfaces")
            .find(|i| name_of(i) == "eth0")
            .cloned();
        assert_eq!(
            eth0.and_then(|i| i.get("controller").cloned()),
            Some(json!("br0"))
        );
        assert!(
            default_gateways(&after).is_empty(),
            "eth0 became a port: its DHCP route is gone"
        );
        node.rollback(&pending.checkpoint).await.expect("rollback");
        assert_eq!(node.state(), before);
    }

    #[tokio::test]
    async fn static_routes_dns_and_absent() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let desired = json!({
            "interfaces": [{"name": "eth1", "ipv4": {"enabled": true, "dhcp": false,
                             "address": [{"ip": "198.19.0.10", "prefix-length": 24}]}}],
            "routes": {"config": [{"destination": "198.19.7.0/24", "next-hop-address": "198.19.0.254",
                                   "next-hop-interface": "eth1"}]},
            "dns-resolver": {"config": {"server": ["198.18.0.53"]}}
        });
        let p = node.apply(&desired, &opts()).await.expect("apply");
        node.commit(&p.checkpoint).await.expect("commit");
        let s = node.state();
        assert_eq!(
            s["dns-resolver"]["running"]["server"],
            json!(["198.18.0.53"])
        );
        assert_eq!(array(&s, "/routes/running").count(), 2);
        let remove = json!({
            "interfaces": [{"name": "eth1", "state": "absent"}],
        });
        // eth1 is a real NIC in the model too: absent removes it with its routes.
        let p = node.apply(&remove, &opts()).await.expect("apply absent");
        node.commit(&p.checkpoint).await.expect("commit");
        let s = node.state();
        assert!(array(&s, "/routes/config").all(|r| r["next-hop-interface"] != "eth1"));
        assert_eq!(array(&s, "/routes/config").count(), 0);
    }

    #[tokio::test]
    async fn unsupported_types_invalid_states_and_checkpoint_rules() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        node.set_unsupported_types(["bond"]);
        let bond = json!({"interfaces": [{"name": "bond0", "type": "bond", "state": "up"}]});
        let err = node.apply(&bond, &opts()).await.err().map(|e| e.category());
        assert_eq!(err, Some("unsupported-interface-type"));
        let bad = json!({"interfaces": [{"name": "eth1", "mtu": 10}]});
        assert!(node.apply(&bad, &opts()).await.is_err());
        assert!(
            node.checkpoints().is_empty(),
            "failed applies leave nothing pending"
        );

        let mtu = json!({"interfaces": [{"name": "eth1", "mtu": 9000}]});
        let first = node.apply(&mtu, &opts()).await.expect("apply");
        let err = node.apply(&mtu, &opts()).await.err().map(|e| e.category());
        assert_eq!(err, Some("checkpoint-pending"));
        node.crash();
        let second = node.apply(&mtu, &opts()).await.expect("apply after crash");
        assert_eq!(second.destroyed_stale, vec![first.checkpoint.clone()]);
        assert!(node.commit(&first.checkpoint).await.is_err());
        node.commit(&second.checkpoint).await.expect("commit");
    }

    fn attempt(number: u32) -> Attempt {
        Attempt {
            policy: "p".into(),
            generation: 2,
            number,
        }
    }

    #[tokio::test]
    async fn a_foreign_checkpoint_is_left_alone_and_refuses_applies() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let foreign = node.hold_foreign_checkpoint(Duration::from_mins(1));
        let recovery = node.roll_back_stale_checkpoints().await.expect("recover");
        assert_eq!(recovery.foreign, vec![foreign.clone()]);
        assert_eq!(recovery.rolled_back, None);
        let mtu = json!({"interfaces": [{"name": "eth1", "mtu": 9000}]});
        let err = node.apply(&mtu, &opts()).await.err().map(|e| e.category());
        assert_eq!(err, Some("foreign-checkpoint"));
        assert_eq!(node.checkpoints(), vec![foreign]);
        assert_eq!(node.state(), before);
    }

    #[tokio::test]
    async fn a_crashed_attempt_is_rolled_back_and_listed_until_forgotten() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let o = ApplyOptions {
            attempt: Some(attempt(1)),
            ..opts()
        };
        let mtu = json!({"interfaces": [{"name": "eth1", "mtu": 9000}]});
        let crashed = node.apply(&mtu, &o).await.expect("apply");
        node.crash();
        let recovery = node.roll_back_stale_checkpoints().await.expect("recover");
        assert_eq!(recovery.rolled_back, Some(crashed.checkpoint));
        assert_eq!(recovery.interrupted, Some(attempt(1)));
        assert_eq!(node.state(), before);
        assert!(node.checkpoints().is_empty());
        // Listed across another death, until counted.
        node.crash();
        let again = node.roll_back_stale_checkpoints().await.expect("recover");
        assert_eq!(again.interrupted, None);
        assert_eq!(node.interrupted_attempts(), vec![attempt(1)]);
        node.forget_interrupted(&attempt(1));
        assert!(node.interrupted_attempts().is_empty());
        // A committed or rolled-back apply leaves nothing to recover.
        let o2 = ApplyOptions {
            attempt: Some(attempt(2)),
            ..opts()
        };
        let p = node.apply(&mtu, &o2).await.expect("apply");
        node.commit(&p.checkpoint).await.expect("commit");
        node.crash();
        let none = node.roll_back_stale_checkpoints().await.expect("recover");
        assert_eq!(none, Recovery::default());
    }

    #[tokio::test]
    async fn an_attempt_whose_checkpoint_timed_out_is_interrupted() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let o = ApplyOptions {
            checkpoint_timeout: Duration::from_millis(10),
            attempt: Some(attempt(3)),
            ..opts()
        };
        node.apply(&json!({"interfaces": [{"name": "eth2", "mtu": 1400}]}), &o)
            .await
            .expect("apply");
        node.crash();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let recovery = node.roll_back_stale_checkpoints().await.expect("recover");
        assert_eq!(recovery.rolled_back, None);
        assert_eq!(recovery.interrupted, Some(attempt(3)));
        assert_eq!(node.state(), before);
    }

    #[tokio::test]
    async fn checkpoints_expire_into_rollback() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let before = node.state();
        let o = ApplyOptions {
            checkpoint_timeout: Duration::from_millis(20),
            ..ApplyOptions::default()
        };
        let p = node
            .apply(&json!({"interfaces": [{"name": "eth2", "mtu": 1400}]}), &o)
            .await
            .expect("apply");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(node.state(), before);
        assert_eq!(
            node.commit(&p.checkpoint).await.err().map(|e| e.category()),
            Some("commit-failed")
        );
    }

    #[tokio::test]
    async fn changes_are_streamed() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let mut changes = node
            .changes(Duration::from_millis(20))
            .await
            .expect("changes");
        let p = node
            .apply(
                &json!({"interfaces": [{"name": "br9", "type": "linux-bridge"}]}),
                &opts(),
            )
            .await
            .expect("apply");
        let batch = changes.next().await.expect("batch");
        assert!(batch.kinds.contains(&ChangeKind::DeviceAdded));
        node.rollback(&p.checkpoint).await.expect("rollback");
        let batch = changes.next().await.expect("batch");
        assert!(batch.kinds.contains(&ChangeKind::DeviceRemoved));
    }

    #[tokio::test]
    async fn policy_and_statistics_through_the_trait() {
        let node = MemoryBackend::harness_like("198.18.0.150");
        let policy = json!({
            "capture": {"gw": "routes.running.destination==\"0.0.0.0/0\""},
            "desiredState": {"routes": {"config": [{"destination": "198.19.9.0/24",
                "next-hop-interface": "{{ capture.gw.routes.running.0.next-hop-interface }}",
                "next-hop-address": "{{ capture.gw.routes.running.0.next-hop-address }}"}]}}
        });
        let resolved = node
            .resolve_policy(&policy, &BTreeMap::new())
            .await
            .expect("resolve");
        assert_eq!(
            resolved.desired_state["routes"]["config"][0]["next-hop-address"],
            "198.18.0.1"
        );
        let stats = node
            .feature_statistics(&resolved.desired_state)
            .await
            .expect("stats");
        assert_eq!(stats.features, vec!["static-route".to_string()]);
    }
}
