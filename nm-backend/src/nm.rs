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
    ApplyOptions, Backend, Checkpoint, CurrentState, NMSTATE_VERSION, PendingApply,
    auto_dns::{DnsEntry, stale_auto_dns},
    changes::{self, ChangeStream},
    error::{BackendError, Result},
    kernel::{KernelSupport, kernel_link_kind},
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
/// NetworkManager does by itself (checkpoint timeout) cannot restore it; for the rollback of a
/// stale checkpoint left by a crashed process, give the backend a state directory
/// ([`NmBackend::with_state_dir`]) that outlives the process.
#[derive(Debug, Clone, Default)]
pub struct NmBackend {
    pending: Arc<Mutex<Option<Pending>>>,
    kernel: Arc<KernelSupport>,
    state_dir: Option<PathBuf>,
}

impl NmBackend {
    /// A backend for the local NetworkManager.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that keeps what an uncommitted apply needs for its rollback (the saved global
    /// DNS configuration) in `dir`, so that the next process rolling back a stale checkpoint
    /// restores it too.
    pub fn with_state_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: Some(dir.into()),
            ..Self::default()
        }
    }

    fn record_path(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join("pending-apply"))
    }

    /// Persist the saved global DNS of the apply about to run (`checkpoint` once known).
    fn write_record(&self, checkpoint: &str, global_dns: Option<&OwnedValue>) {
        let Some(path) = self.record_path() else {
            return;
        };
        let Some(dns) = global_dns else { return };
        let written = to_bytes(Context::new_dbus(LE, 0), dns)
            .map_err(|e| e.to_string())
            .and_then(|encoded| {
                let mut bytes = format!("{checkpoint}\n").into_bytes();
                bytes.extend_from_slice(&encoded);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                // Written aside, then renamed over: a kill mid-write leaves the previous
                // record whole, never a truncated one that recovery could not read.
                let partial = path.with_extension("partial");
                std::fs::write(&partial, bytes).map_err(|e| e.to_string())?;
                std::fs::rename(&partial, &path).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "failed to record the pending apply");
        }
    }

    /// The recorded pending apply: checkpoint path (empty when it crashed before knowing it)
    /// and saved global DNS.
    fn read_record(&self) -> Option<(String, OwnedValue)> {
        let bytes = std::fs::read(self.record_path()?).ok()?;
        let split = bytes.iter().position(|b| *b == b'\n')?;
        let checkpoint = String::from_utf8(bytes[..split].to_vec()).ok()?;
        let data = Data::new(bytes[split + 1..].to_vec(), Context::new_dbus(LE, 0));
        let (dns, _) = data.deserialize::<OwnedValue>().ok()?;
        Some((checkpoint, dns))
    }

    fn remove_record(&self) {
        if let Some(path) = self.record_path() {
            // Absent already is fine.
            let _ = std::fs::remove_file(path);
        }
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
        list_checkpoints(&conn).await
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
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(value);
        }
    }

    fn pending_checkpoint(&self) -> Option<String> {
        self.pending
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.checkpoint.clone()))
    }

    /// Forget the pending apply of `checkpoint`, returning what was saved for it.
    fn take_pending(&self, checkpoint: &Checkpoint) -> Option<Pending> {
        let mut guard = self.pending.lock().ok()?;
        if guard.as_ref().is_some_and(|p| p.checkpoint == checkpoint.0) {
            guard.take()
        } else {
            None
        }
    }
}

/// What an uncommitted apply saved for its rollback.
#[derive(Debug)]
struct Pending {
    checkpoint: String,
    global_dns: Option<OwnedValue>,
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

async fn restore_global_dns_logged(conn: &Connection, saved: Option<&OwnedValue>) {
    let Some(saved) = saved else { return };
    match restore_global_dns(conn, saved).await {
        Ok(true) => tracing::info!("restored NetworkManager's global DNS configuration"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "failed to restore the global DNS configuration"),
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

async fn list_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let v = get_property(conn, "Checkpoints").await?;
    let paths = Vec::<OwnedObjectPath>::try_from(v).map_err(zbus::Error::from)?;
    Ok(paths
        .into_iter()
        .map(|p| Checkpoint(p.as_str().to_string()))
        .collect())
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
        let destroyed_stale = self.roll_back_stale_checkpoints().await?;
        let conn = Connection::system().await?;

        self.check_kernel_support(desired).await?;

        // Older NetworkManagers lack the property: nothing to save then.
        let global_dns = get_property(&conn, "GlobalDnsConfiguration").await.ok();
        self.write_record("", global_dns.as_ref());
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
            self.remove_record();
            return Err(e);
        }

        refresh_stale_auto_dns(&conn, desired).await;

        let after = list_checkpoints(&conn).await?;
        let checkpoint = after
            .into_iter()
            .next_back()
            .ok_or(BackendError::CheckpointMissing)?;
        self.write_record(&checkpoint.0, global_dns.as_ref());
        self.set_pending(Pending {
            checkpoint: checkpoint.0.clone(),
            global_dns,
        });
        Ok(PendingApply {
            checkpoint,
            destroyed_stale,
        })
    }

    async fn roll_back_stale_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let conn = Connection::system().await?;
        let stale = list_checkpoints(&conn).await?;
        for cp in &stale {
            tracing::warn!(checkpoint = %cp, "rolling back a checkpoint left by an earlier apply");
            let path = cp.0.clone();
            worker::run("stale-rollback", move || async move {
                NetworkState::checkpoint_rollback_async(&path).await
            })
            .await?
            .map_err(|e| BackendError::DestroyStaleCheckpoint {
                checkpoint: cp.0.clone(),
                message: e.to_string(),
            })?;
            // Its saved global DNS, when the crashed process recorded one.
            if let Some((recorded, dns)) = self.read_record()
                && (recorded.is_empty() || recorded == cp.0)
            {
                restore_global_dns_logged(&conn, Some(&dns)).await;
                self.remove_record();
            }
            self.take_pending(cp);
        }
        // A record left without its checkpoint: NetworkManager's checkpoint timeout rolled the
        // interfaces back (it never restores the global DNS), or the process died before its
        // checkpoint existed. Either way the saved global DNS is the one to put back.
        if let Some((recorded, dns)) = self.read_record() {
            tracing::warn!(checkpoint = %recorded, "restoring the global DNS saved by an apply that did not finish");
            restore_global_dns_logged(&conn, Some(&dns)).await;
            self.remove_record();
        }
        Ok(stale)
    }

    async fn supports_bridge_vlan_filtering(&self) -> bool {
        self.kernel.bridge_vlan_filtering().await
    }

    async fn commit(&self, checkpoint: &Checkpoint) -> Result<()> {
        let cp = checkpoint.0.clone();
        let outcome = worker::run("commit", move || async move {
            NetworkState::checkpoint_commit_async(&cp).await
        })
        .await?;
        if self.take_pending(checkpoint).is_some() {
            self.remove_record();
        }
        outcome.map_err(|e| BackendError::CommitCheckpoint {
            checkpoint: checkpoint.0.clone(),
            message: e.to_string(),
        })
    }

    async fn rollback(&self, checkpoint: &Checkpoint) -> Result<()> {
        let cp = checkpoint.0.clone();
        let outcome = worker::run("rollback", move || async move {
            NetworkState::checkpoint_rollback_async(&cp).await
        })
        .await?;
        let pending = self.take_pending(checkpoint);
        if pending.is_some() {
            self.remove_record();
        }
        if let Some(pending) = pending
            && outcome.is_ok()
            && let Some(saved) = pending.global_dns.as_ref()
        {
            let conn = Connection::system().await?;
            restore_global_dns(&conn, saved).await.map_err(|e| {
                BackendError::RollbackCheckpoint {
                    checkpoint: checkpoint.0.clone(),
                    message: format!("restoring the global DNS configuration: {e}"),
                }
            })?;
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
    fn pending_record_round_trips_the_global_dns() {
        let dir = std::env::temp_dir().join(format!("knmstate-nm-record-{}", std::process::id()));
        let backend = NmBackend::with_state_dir(&dir);
        assert!(backend.read_record().is_none());

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

        backend.write_record("", Some(&dns));
        let (checkpoint, read) = backend.read_record().expect("record");
        assert_eq!(checkpoint, "");
        assert_eq!(read, dns);

        backend.write_record("/org/freedesktop/NetworkManager/Checkpoint/7", Some(&dns));
        let (checkpoint, _) = backend.read_record().expect("record");
        assert_eq!(checkpoint, "/org/freedesktop/NetworkManager/Checkpoint/7");

        backend.remove_record();
        assert!(backend.read_record().is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
