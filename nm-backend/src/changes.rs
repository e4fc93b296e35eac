//! Debounced change notifications, from NetworkManager's D-Bus signals or from any source of
//! [`ChangeKind`]s.

use std::{
    collections::{BTreeSet, HashMap},
    pin::Pin,
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use zbus::{Connection, MatchRule, MessageStream, message::Type, zvariant::OwnedValue};

use crate::error::{BackendError, Result};

/// What kind of change a signal reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// A device appeared.
    DeviceAdded,
    /// A device disappeared.
    DeviceRemoved,
    /// A device changed state (activated, disconnected, ...).
    DeviceState,
    /// The set of active connections changed.
    ActiveConnections,
    /// Addresses, routes, gateways or name servers changed.
    IpConfig,
    /// Any other NetworkManager property or signal.
    Other,
}

/// One burst of changes, delivered after the debounce interval passed without a new signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The kinds seen in the burst.
    pub kinds: BTreeSet<ChangeKind>,
    /// How many signals the burst held.
    pub signals: usize,
    /// When the first signal of the burst arrived.
    pub first_signal: Instant,
}

/// A stream of debounced change batches; it ends when the source ends.
pub type ChangeStream = Pin<Box<dyn Stream<Item = ChangeBatch> + Send>>;

/// Group `input` into batches separated by at least `debounce` of quiet.
///
/// A burst that never goes quiet is still delivered after `20 × debounce`.
pub fn debounce<S>(input: S, debounce: Duration) -> ChangeStream
where
    S: Stream<Item = ChangeKind> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<ChangeBatch>(16);
    tokio::spawn(async move {
        let mut input = Box::pin(input);
        loop {
            let first = tokio::select! {
                next = input.next() => next,
                () = tx.closed() => return,
            };
            let Some(first) = first else { return };
            let mut batch = ChangeBatch {
                kinds: BTreeSet::from([first]),
                signals: 1,
                first_signal: Instant::now(),
            };
            let hard_deadline = tokio::time::Instant::now() + debounce * 20;
            let mut ended = false;
            loop {
                let wait = debounce
                    .min(hard_deadline.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, input.next()).await {
                    Ok(Some(kind)) => {
                        batch.kinds.insert(kind);
                        batch.signals += 1;
                    }
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if tx.send(batch).await.is_err() || ended {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|batch| (batch, rx))
    }))
}

/// Subscribe to NetworkManager's signals on the system bus and debounce them.
pub(crate) async fn watch_network_manager(debounce_for: Duration) -> Result<ChangeStream> {
    let watch_err = |e: zbus::Error| BackendError::WatchChanges(e.to_string());
    let conn = Connection::system().await.map_err(watch_err)?;
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .path_namespace("/org/freedesktop/NetworkManager")
        .map_err(watch_err)?
        .build();
    let messages = MessageStream::for_match_rule(rule, &conn, Some(4096))
        .await
        .map_err(watch_err)?;
    // Keep the connection alive as long as the stream is consumed.
    let kinds = messages.filter_map(move |msg| {
        let _conn = &conn;
        let kind = msg.ok().and_then(|m| classify(&m));
        futures::future::ready(kind)
    });
    Ok(debounce(kinds, debounce_for))
}

const IP_PROPERTIES: &[&str] = &[
    "Ip4Config",
    "Ip6Config",
    "Dhcp4Config",
    "Dhcp6Config",
    "AddressData",
    "RouteData",
    "Gateway",
    "NameserverData",
    "Nameservers",
];

/// Map a NetworkManager signal to a change kind; `None` for signals that say nothing about the
/// network state.
fn classify(msg: &zbus::Message) -> Option<ChangeKind> {
    let header = msg.header();
    let member = header.member()?.as_str().to_string();
    let interface = header
        .interface()
        .map(|i| i.as_str().to_string())
        .unwrap_or_default();
    match (interface.as_str(), member.as_str()) {
        (_, "DeviceAdded") => Some(ChangeKind::DeviceAdded),
        (_, "DeviceRemoved") => Some(ChangeKind::DeviceRemoved),
        ("org.freedesktop.NetworkManager.Device", "StateChanged") => Some(ChangeKind::DeviceState),
        ("org.freedesktop.DBus.Properties", "PropertiesChanged") => {
            let (iface, changed, _invalidated): (String, HashMap<String, OwnedValue>, Vec<String>) =
                msg.body().deserialize().ok()?;
            classify_properties(&iface, changed.keys().map(String::as_str))
        }
        ("org.freedesktop.NetworkManager.Connection.Active", "StateChanged") => {
            Some(ChangeKind::ActiveConnections)
        }
        (
            "org.freedesktop.NetworkManager.Settings.Connection"
            | "org.freedesktop.NetworkManager.Settings",
            _,
        ) => Some(ChangeKind::Other),
        (_, "CheckPermissions") => None,
        _ => Some(ChangeKind::Other),
    }
}

fn classify_properties<'a>(
    iface: &str,
    mut changed: impl Iterator<Item = &'a str>,
) -> Option<ChangeKind> {
    let keys: Vec<&str> = changed.by_ref().collect();
    if iface.starts_with("org.freedesktop.NetworkManager.IP4Config")
        || iface.starts_with("org.freedesktop.NetworkManager.IP6Config")
        || iface.starts_with("org.freedesktop.NetworkManager.DHCP")
        || keys.iter().any(|k| IP_PROPERTIES.contains(k))
    {
        return Some(ChangeKind::IpConfig);
    }
    if keys.contains(&"ActiveConnections") {
        return Some(ChangeKind::ActiveConnections);
    }
    if keys.contains(&"Devices") || keys.contains(&"AllDevices") {
        return Some(ChangeKind::DeviceAdded);
    }
    if keys
        .iter()
        .any(|k| matches!(*k, "State" | "StateReason" | "Carrier"))
    {
        return Some(ChangeKind::DeviceState);
    }
    // Traffic counters and similar churn do not change the reported state.
    if keys
        .iter()
        .all(|k| matches!(*k, "RxBytes" | "TxBytes" | "RefreshRateMs"))
    {
        return None;
    }
    Some(ChangeKind::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_changes_are_classified() {
        let c = |iface, keys: &[&'static str]| classify_properties(iface, keys.iter().copied());
        assert_eq!(
            c("org.freedesktop.NetworkManager.IP4Config", &["AddressData"]),
            Some(ChangeKind::IpConfig)
        );
        assert_eq!(
            c("org.freedesktop.NetworkManager", &["ActiveConnections"]),
            Some(ChangeKind::ActiveConnections)
        );
        assert_eq!(
            c(
                "org.freedesktop.NetworkManager.Device",
                &["State", "StateReason"]
            ),
            Some(ChangeKind::DeviceState)
        );
        assert_eq!(
            c(
                "org.freedesktop.NetworkManager.Device.Statistics",
                &["RxBytes"]
            ),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_become_one_batch_each() {
        let (tx, rx) = mpsc::unbounded_channel();
        let input =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) });
        let mut batches = debounce(input, Duration::from_millis(100));
        for kind in [
            ChangeKind::DeviceAdded,
            ChangeKind::DeviceState,
            ChangeKind::DeviceState,
        ] {
            tx.send(kind).ok();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let first = batches.next().await.expect("first batch");
        assert_eq!(first.signals, 3);
        assert_eq!(
            first.kinds,
            BTreeSet::from([ChangeKind::DeviceAdded, ChangeKind::DeviceState])
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        tx.send(ChangeKind::IpConfig).ok();
        drop(tx);
        let second = batches.next().await.expect("second batch");
        assert_eq!(second.kinds, BTreeSet::from([ChangeKind::IpConfig]));
        assert_eq!(second.signals, 1);
        assert!(batches.next().await.is_none());
    }
}
