//! The real backend: nmstate + NetworkManager on the D-Bus system bus of the calling process.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use nmstate::NetworkState;
use serde_json::Value;
use zbus::{
    Connection,
    zvariant::{
        LE, ObjectPath, OwnedObjectPath, OwnedValue,
        serialized::{Context, Data},
        to_bytes,
    },
};

use crate::{
    ApplyOptions, Attempt, Backend, Checkpoint, CurrentState, NMSTATE_VERSION, PendingApply,
    Recovery,
    auto_dns::{DnsEntry, stale_auto_dns},
    changes::{self, ChangeStream},
    error::{BackendError, Result},
    fault,
    kernel::{KernelSupport, kernel_link_kind},
    record::{InFlight, Record, RecordFile, created_by_apply},
    worker,
};

const NM_BUS: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const NM_DEVICE: &str = "org.freedesktop.NetworkManager.Device";
const NM_ACTIVE_CONNECTION: &str = "org.freedesktop.NetworkManager.Connection.Active";
const DNS_MANAGER: &str = "org.freedesktop.NetworkManager.DnsManager";
const DNS_MANAGER_PATH: &str = "/org/freedesktop/NetworkManager/DnsManager";
/// `NM_DEVICE_STATE_ACTIVATED`.
const NM_DEVICE_STATE_ACTIVATED: u32 = 100;
/// How long a device reactivated for [`refresh_stale_auto_dns`] may take.
const REACTIVATE_TIMEOUT: Duration = Duration::from_secs(30);

/// nmstate over the NetworkManager reachable on this process's system bus.
///
/// Run it in the node's network and mount namespaces (the handler's pod, or a harness node):
/// nmstate and this backend use the default system bus socket.
///
/// NetworkManager's checkpoints cover devices and connection profiles but (in 1.42) not its
/// global DNS configuration, where nmstate stores a `dns-resolver` config that names no
/// interface. The backend therefore saves `GlobalDnsConfiguration` before each apply and puts it
/// back when the apply fails or is rolled back through [`Backend::rollback`]. A rollback that
/// NetworkManager does by itself (checkpoint timeout) cannot restore it. For the recovery of an
/// apply whose process died (its exact checkpoint, its saved DNS, its attempt), give the
/// backend a state directory ([`NmBackend::with_state_dir`]) that outlives the process; without
/// one, such a checkpoint looks foreign to the next process and is left to its timeout.
#[derive(Debug, Clone, Default)]
pub struct NmBackend {
    pending: Arc<Mutex<Option<Pending>>>,
    kernel: Arc<KernelSupport>,
    record: RecordFile,
    interrupted: Arc<Mutex<Vec<Attempt>>>,
}

impl NmBackend {
    /// A backend for the local NetworkManager.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that keeps its recovery record (see [`crate::record`]: the attempt, the exact
    /// checkpoint it created, the saved global DNS) in `dir`, so that the next process
    /// recovers exactly that apply if this one dies.
    pub fn with_state_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            record: RecordFile::in_dir(&dir.into()),
            ..Self::default()
        }
    }

    /// Replace the record: `apply` in flight, and the interrupted attempts not yet counted.
    fn save(&self, apply: Option<InFlight>) {
        let interrupted = lock(&self.interrupted).clone();
        self.record.write_logged(&Record { apply, interrupted });
    }

    /// NetworkManager's version.
    pub async fn nm_version(&self) -> Result<String> {
        let conn = Connection::system().await?;
        let v = get_property(&conn, "Version").await?;
        Ok(String::try_from(v).map_err(zbus::Error::from)?)
    }

    /// Checkpoints NetworkManager currently holds (D-Bus object paths).
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let conn = Connection::system().await?;
        Ok(checkpoint_paths(&conn)
            .await?
            .into_iter()
            .map(Checkpoint)
            .collect())
    }

    /// Fail fast on interface types the kernel cannot create (nmstate would retry for minutes).
    async fn check_kernel_support(&self, desired: &Value) -> Result<()> {
        let Some(ifaces) = desired.get("interfaces").and_then(Value::as_array) else {
            return Ok(());
        };
        for iface in ifaces {
            let name = iface
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let iface_type = iface
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let state = iface.get("state").and_then(Value::as_str).unwrap_or("up");
            if state == "absent"
                || name.is_empty()
                || Path::new("/sys/class/net").join(name).exists()
            {
                continue;
            }
            if let Some(kind) = kernel_link_kind(iface_type)
                && !self.kernel.supports(kind).await
            {
                return Err(BackendError::UnsupportedInterfaceType {
                    interface: name.to_string(),
                    interface_type: iface_type.to_string(),
                });
            }
        }
        Ok(())
    }

    fn set_pending(&self, value: Pending) {
        *lock(&self.pending) = Some(value);
    }

    fn pending_checkpoint(&self) -> Option<String> {
        lock(&self.pending).as_ref().map(|p| p.checkpoint.clone())
    }

    /// The record of the apply `checkpoint` belongs to, when it is this process's pending one.
    fn in_flight_of(&self, checkpoint: &Checkpoint) -> Option<InFlight> {
        lock(&self.pending)
            .as_ref()
            .filter(|p| p.checkpoint == checkpoint.0)
            .map(|p| p.in_flight.clone())
    }

    /// Forget the pending apply of `checkpoint`, returning what was saved for it.
    fn take_pending(&self, checkpoint: &Checkpoint) -> Option<Pending> {
        let mut guard = lock(&self.pending);
        if guard.as_ref().is_some_and(|p| p.checkpoint == checkpoint.0) {
            guard.take()
        } else {
            None
        }
    }

    /// Roll back `checkpoint` (one this backend created).
    async fn roll_back_checkpoint(checkpoint: &str) -> Result<()> {
        let path = checkpoint.to_owned();
        worker::run("stale-rollback", move || async move {
            NetworkState::checkpoint_rollback_async(&path).await
        })
        .await?
        .map_err(|e| BackendError::DestroyStaleCheckpoint {
            checkpoint: checkpoint.to_owned(),
            message: e.to_string(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What an uncommitted apply saved for its rollback.
#[derive(Debug)]
struct Pending {
    checkpoint: String,
    global_dns: Option<OwnedValue>,
    /// Its recovery record.
    in_flight: InFlight,
}

/// NetworkManager's global DNS configuration, D-Bus encoded for the record.
fn encode_dns(dns: &OwnedValue) -> Option<Vec<u8>> {
    match to_bytes(Context::new_dbus(LE, 0), dns) {
        Ok(encoded) => Some(encoded.to_vec()),
        Err(e) => {
            tracing::warn!(error = %e, "failed to encode the global DNS configuration for the record");
            None
        }
    }
}

fn decode_dns(bytes: &[u8]) -> Option<OwnedValue> {
    let data = Data::new(bytes.to_vec(), Context::new_dbus(LE, 0));
    data.deserialize::<OwnedValue>().ok().map(|(v, _)| v)
}

/// Put NetworkManager's global DNS configuration back to `saved` when it differs.
async fn restore_global_dns(conn: &Connection, saved: &OwnedValue) -> zbus::Result<bool> {
    let current = get_property(conn, "GlobalDnsConfiguration").await?;
    if &current == saved {
        return Ok(false);
    }
    let value: &zbus::zvariant::Value<'_> = saved;
    conn.call_method(
        Some(NM_BUS),
        NM_PATH,
        Some(PROPERTIES),
        "Set",
        &(NM_BUS, "GlobalDnsConfiguration", value),
    )
    .await?;
    Ok(true)
}

/// [`restore_global_dns`], a failure logged; whether it changed anything.
async fn restore_global_dns_logged(conn: &Connection, saved: Option<&OwnedValue>) -> bool {
    let Some(saved) = saved else { return false };
    match restore_global_dns(conn, saved).await {
        Ok(true) => {
            tracing::info!("restored NetworkManager's global DNS configuration");
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e, "failed to restore the global DNS configuration");
            false
        }
    }
}

async fn get_property(conn: &Connection, name: &str) -> zbus::Result<OwnedValue> {
    let reply = conn
        .call_method(
            Some(NM_BUS),
            NM_PATH,
            Some(PROPERTIES),
            "Get",
            &(NM_BUS, name),
        )
        .await?;
    reply.body().deserialize::<OwnedValue>()
}

/// A property of any NetworkManager object.
async fn object_property(
    conn: &Connection,
    path: &str,
    interface: &str,
    name: &str,
) -> zbus::Result<OwnedValue> {
    let reply = conn
        .call_method(
            Some(NM_BUS),
            path,
            Some(PROPERTIES),
            "Get",
            &(interface, name),
        )
        .await?;
    reply.body().deserialize::<OwnedValue>()
}

/// NetworkManager's `DnsManager.Configuration`: the name servers it runs, per interface.
async fn running_dns(conn: &Connection) -> zbus::Result<Vec<DnsEntry>> {
    let v = object_property(conn, DNS_MANAGER_PATH, DNS_MANAGER, "Configuration").await?;
    let entries = Vec::<HashMap<String, OwnedValue>>::try_from(v).map_err(zbus::Error::from)?;
    Ok(entries
        .into_iter()
        .map(|mut e| DnsEntry {
            interface: e
                .remove("interface")
                .and_then(|v| String::try_from(v).ok())
                .filter(|s| !s.is_empty()),
            nameservers: e
                .remove("nameservers")
                .and_then(|v| Vec::<String>::try_from(v).ok())
                .unwrap_or_default(),
        })
        .collect())
}

/// Activate the profile applied to `iface` again and wait until the device is activated.
async fn reactivate(conn: &Connection, iface: &str) -> zbus::Result<()> {
    let reply = conn
        .call_method(
            Some(NM_BUS),
            NM_PATH,
            Some(NM_BUS),
            "GetDeviceByIpIface",
            &(iface,),
        )
        .await?;
    let device: OwnedObjectPath = reply.body().deserialize()?;
    let active = OwnedObjectPath::try_from(
        object_property(conn, device.as_str(), NM_DEVICE, "ActiveConnection").await?,
    )
    .map_err(zbus::Error::from)?;
    let profile = OwnedObjectPath::try_from(
        object_property(conn, active.as_str(), NM_ACTIVE_CONNECTION, "Connection").await?,
    )
    .map_err(zbus::Error::from)?;
    let no_specific = ObjectPath::try_from("/").map_err(zbus::Error::from)?;
    conn.call_method(
        Some(NM_BUS),
        NM_PATH,
        Some(NM_BUS),
        "ActivateConnection",
        &(&profile, &device, &no_specific),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + REACTIVATE_TIMEOUT;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let state =
            u32::try_from(object_property(conn, device.as_str(), NM_DEVICE, "State").await?)
                .map_err(zbus::Error::from)?;
        if state == NM_DEVICE_STATE_ACTIVATED {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(zbus::Error::Failure(format!(
                "{iface} not activated again within {REACTIVATE_TIMEOUT:?} (state {state})"
            )));
        }
    }
}

/// Reactivate the interfaces on which an apply turned `auto-dns` off while NetworkManager still
/// runs the name servers it learned there (see [`crate::auto_dns`]), so that the probes check the
/// DNS the applied configuration gives. Failures are logged: the probes then judge what runs.
async fn refresh_stale_auto_dns(conn: &Connection, desired: &Value) {
    let running = match running_dns(conn).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "failed to read NetworkManager's running DNS");
            return;
        }
    };
    for iface in stale_auto_dns(desired, &running) {
        tracing::info!(
            interface = %iface,
            "auto-dns turned off but learned name servers still run: reactivating"
        );
        if let Err(e) = reactivate(conn, &iface).await {
            tracing::warn!(interface = %iface, error = %e, "failed to reactivate");
        }
    }
}

/// The D-Bus paths of the checkpoints NetworkManager holds.
async fn checkpoint_paths(conn: &Connection) -> Result<Vec<String>> {
    let v = get_property(conn, "Checkpoints").await?;
    let paths = Vec::<OwnedObjectPath>::try_from(v).map_err(zbus::Error::from)?;
    Ok(paths.into_iter().map(|p| p.as_str().to_string()).collect())
}

async fn retrieve() -> Result<Value> {
    worker::run("retrieve", || async {
        let mut state = NetworkState::new();
        state
            .retrieve_async()
            .await
            .map_err(|e| BackendError::from_retrieve(&e))?;
        serde_json::to_value(&state).map_err(|e| BackendError::RetrieveState {
            kind: "Serialize".into(),
            message: e.to_string(),
        })
    })
    .await?
}

impl Backend for NmBackend {
    async fn current_state(&self) -> Result<CurrentState> {
        let state = retrieve().await?;
        let nm_version = self.nm_version().await?;
        Ok(CurrentState {
            state,
            nm_version,
            nmstate_version: NMSTATE_VERSION.to_string(),
        })
    }

    async fn apply(&self, desired: &Value, options: &ApplyOptions) -> Result<PendingApply> {
        if let Some(pending) = self.pending_checkpoint() {
            return Err(BackendError::CheckpointPending(pending));
        }
        let mut state: NetworkState = serde_json::from_value(desired.clone())
            .map_err(|e| BackendError::InvalidDesiredState(e.to_string()))?;
        let recovery = self.roll_back_stale_checkpoints().await?;
        if !recovery.foreign.is_empty() {
            return Err(BackendError::ForeignCheckpoint(
                recovery.foreign.into_iter().map(|c| c.0).collect(),
            ));
        }
        let conn = Connection::system().await?;

        self.check_kernel_support(desired).await?;

        // Older NetworkManagers lack the property: nothing to save then.
        let global_dns = get_property(&conn, "GlobalDnsConfiguration").await.ok();
        let policy = options.attempt.as_ref().map(|a| a.policy.as_str());
        // The attempt is on disk before the network is touched.
        let mut in_flight = InFlight {
            attempt: options.attempt.clone(),
            global_dns: global_dns.as_ref().and_then(encode_dns),
            ..InFlight::default()
        };
        self.save(Some(in_flight.clone()));
        fault::point("attempt-recorded", policy).await;
        let timeout =
            u32::try_from(options.checkpoint_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
        state.set_commit(false);
        state.set_timeout(timeout);
        state.set_verify_change(options.verify);
        // nmstate's apply future is awaited alone on the worker thread's own runtime: its
        // size costs nothing there, boxing would buy nothing.
        #[allow(clippy::large_futures)]
        let applied = worker::run("apply", move || async move {
            state
                .apply_async()
                .await
                .map_err(|e| BackendError::from_apply(&e))
        })
        .await
        .and_then(|r| r);
        if let Err(e) = applied {
            // nmstate rolled its checkpoint back; the global DNS is ours to restore.
            restore_global_dns_logged(&conn, global_dns.as_ref()).await;
            self.save(None);
            return Err(e);
        }

        refresh_stale_auto_dns(&conn, desired).await;

        // No checkpoint was held before: the apply's is the oldest one now.
        let after = checkpoint_paths(&conn).await?;
        let Some(checkpoint) = created_by_apply(&after, &[]).cloned() else {
            self.save(None);
            return Err(BackendError::CheckpointMissing);
        };
        in_flight.checkpoint = Some(checkpoint.clone());
        self.save(Some(in_flight.clone()));
        self.set_pending(Pending {
            checkpoint: checkpoint.clone(),
            global_dns,
            in_flight,
        });
        fault::point("applied", policy).await;
        Ok(PendingApply {
            checkpoint: Checkpoint(checkpoint),
            destroyed_stale: recovery.rolled_back.into_iter().collect(),
        })
    }

    async fn roll_back_stale_checkpoints(&self) -> Result<Recovery> {
        let conn = Connection::system().await?;
        let held = checkpoint_paths(&conn).await?;
        let mut record = self.record.read();
        {
            // Attempts this process still lists stay listed.
            let mut interrupted = lock(&self.interrupted);
            for a in interrupted.drain(..) {
                record.push_interrupted(a);
            }
        }
        let mut recovery = Recovery::default();
        let mut ours = None;
        if let Some(in_flight) = record.apply.clone() {
            ours = match &in_flight.checkpoint {
                Some(cp) => held.iter().find(|h| *h == cp).cloned(),
                // Died inside nmstate's apply: its checkpoint, if it got one, is the oldest
                // one not held before.
                None => created_by_apply(&held, &in_flight.foreign).cloned(),
            };
            if let Some(cp) = &ours {
                tracing::warn!(checkpoint = %cp, attempt = ?in_flight.attempt, "rolling back the checkpoint of an apply whose process died");
                Self::roll_back_checkpoint(cp).await?;
                recovery.rolled_back = Some(Checkpoint(cp.clone()));
            }
            if in_flight.committing && ours.is_none() {
                tracing::info!(attempt = ?in_flight.attempt, "the apply whose process died had committed: nothing to undo");
            } else {
                // Rolled back now, or by NetworkManager's checkpoint timeout (which never
                // restores the global DNS), or never applied: the saved DNS is the one to put
                // back.
                if let Some(dns) = in_flight.global_dns.as_deref().and_then(decode_dns) {
                    recovery.dns_restored = restore_global_dns_logged(&conn, Some(&dns)).await;
                }
                if let Some(attempt) = in_flight.attempt {
                    record.push_interrupted(attempt.clone());
                    recovery.interrupted = Some(attempt);
                }
            }
        }
        for cp in held.iter().filter(|h| Some(*h) != ours.as_ref()) {
            tracing::warn!(checkpoint = %cp, "leaving alone a checkpoint knmstate did not create");
            recovery.foreign.push(Checkpoint(cp.clone()));
        }
        if let Some(cp) = &recovery.rolled_back {
            self.take_pending(cp);
        }
        lock(&self.interrupted).clone_from(&record.interrupted);
        self.save(None);
        Ok(recovery)
    }

    fn interrupted_attempts(&self) -> Vec<Attempt> {
        lock(&self.interrupted).clone()
    }

    fn forget_interrupted(&self, attempt: &Attempt) {
        lock(&self.interrupted).retain(|a| a != attempt);
        let apply = lock(&self.pending).as_ref().map(|p| p.in_flight.clone());
        self.save(apply);
    }

    async fn supports_bridge_vlan_filtering(&self) -> bool {
        self.kernel.bridge_vlan_filtering().await
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<()> {
        let in_flight = self.in_flight_of(checkpoint);
        let policy = in_flight
            .as_ref()
            .and_then(|f| f.attempt.as_ref())
            .map(|a| a.policy.clone());
        if let Some(f) = &in_flight {
            // With the checkpoint gone, a recovery then knows the apply was committed.
            self.save(Some(InFlight {
                committing: true,
                ..f.clone()
            }));
        }
        fault::point("committing", policy.as_deref()).await;
        let cp = checkpoint.0.clone();
        let outcome = worker::run("commit", move || async move {
            NetworkState::checkpoint_commit_async(&cp).await
        })
        .await
        .and_then(|r| {
            r.map_err(|e| BackendError::CommitCheckpoint {
                checkpoint: checkpoint.0.clone(),
                message: e.to_string(),
            })
        });
        if outcome.is_err() {
            // Not committed (timed out, say): the rollback that follows restores the rest.
            self.save(in_flight);
            return outcome;
        }
        fault::point("committed", policy.as_deref()).await;
        if self.take_pending(checkpoint).is_some() {
            self.save(None);
        }
        Ok(())
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<()> {
        let cp = checkpoint.0.clone();
        let outcome = worker::run("rollback", move || async move {
            NetworkState::checkpoint_rollback_async(&cp).await
        })
        .await?;
        if let Some(pending) = self.take_pending(checkpoint) {
            // Also when the rollback failed: NetworkManager's timeout then rolls the rest back,
            // and never the global DNS. The record goes once the DNS is back.
            if let Some(saved) = pending.global_dns.as_ref() {
                let conn = Connection::system().await?;
                restore_global_dns(&conn, saved).await.map_err(|e| {
                    BackendError::RollbackCheckpoint {
                        checkpoint: checkpoint.0.clone(),
                        message: format!("restoring the global DNS configuration: {e}"),
                    }
                })?;
            }
            self.save(None);
        }
        outcome.map_err(|e| BackendError::RollbackCheckpoint {
            checkpoint: checkpoint.0.clone(),
            message: e.to_string(),
        })
    }

    async fn changes(&self, debounce: Duration) -> Result<ChangeStream> {
        changes::watch_network_manager(debounce).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::zvariant::Value;

    use super::*;

    #[test]
    fn the_global_dns_round_trips_through_the_record_encoding() {
        let mut wildcard: HashMap<String, Value<'_>> = HashMap::new();
        wildcard.insert(
            "servers".into(),
            Value::from(vec!["198.18.0.53".to_string()]),
        );
        let mut domains: HashMap<String, Value<'_>> = HashMap::new();
        domains.insert("*".into(), Value::from(wildcard));
        let mut config: HashMap<String, Value<'_>> = HashMap::new();
        config.insert(
            "searches".into(),
            Value::from(vec!["knmstate.test".to_string()]),
        );
        config.insert("domains".into(), Value::from(domains));
        let dns = OwnedValue::try_from(Value::from(config)).expect("owned value");
        let bytes = encode_dns(&dns).expect("encoded");
        assert_eq!(decode_dns(&bytes), Some(dns));
        assert_eq!(decode_dns(b"garbage"), None);
    }
}
