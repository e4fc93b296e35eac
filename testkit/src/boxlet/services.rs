//! The box's Service networking, for the Service ports it exposes on the machine's loopback
//! (`--expose <namespace>/<service>:<port>=<host port>`): a forwarder on 127.0.0.1:<host
//! port> to a ready pod the Service selects (kube-proxy's part), and the Service's Endpoints
//! naming that address (the endpoints controller's part: the API stand-in dials a webhook's
//! Service through them, as the API server does with endpoint routing).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use tokio::net::{TcpListener, UnixStream};

use super::pods::RunningPod;

/// A Service port the box serves on a port of 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expose {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service.
    pub service: String,
    /// The Service port.
    pub port: i32,
    /// The port on 127.0.0.1.
    pub host_port: u16,
}

impl FromStr for Expose {
    type Err = String;

    /// `<namespace>/<service>:<port>=<host port>`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not <namespace>/<service>:<port>=<host port>");
        let (svc, host) = s.split_once('=').ok_or_else(bad)?;
        let (ns_name, port) = svc.rsplit_once(':').ok_or_else(bad)?;
        let (ns, name) = ns_name.split_once('/').ok_or_else(bad)?;
        Ok(Self {
            namespace: ns.to_owned(),
            service: name.to_owned(),
            port: port.parse().map_err(|_| bad())?,
            host_port: host.parse().map_err(|_| bad())?,
        })
    }
}

/// For each exposure (by host port), the sockets of the ready pods behind it, best first.
pub type Backends = Arc<Mutex<BTreeMap<u16, Vec<PathBuf>>>>;

/// Accept on 127.0.0.1:<host port> and splice each connection to the first backend.
pub async fn forward(e: Expose, backends: Backends) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", e.host_port)).await?;
    loop {
        let (mut tcp, _) = listener.accept().await?;
        let first = backends
            .lock()
            .ok()
            .and_then(|b| b.get(&e.host_port)?.first().cloned());
        tokio::spawn(async move {
            let Some(sock) = first else { return };
            if let Ok(mut unix) = UnixStream::connect(&sock).await {
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
            }
        });
    }
}

fn selects(svc: &Service, pod: &RunningPod) -> bool {
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    !selector.is_empty()
        && pod.pod.owner.namespace == svc.metadata.namespace.clone().unwrap_or_default()
        && selector
            .iter()
            .all(|(k, v)| pod.pod.labels.get(k) == Some(v))
}

/// The Service port `e.port`'s name and the container port it targets in `pod`.
fn target(svc: &Service, e: &Expose, pod: &RunningPod) -> Option<(String, i32)> {
    let p = svc
        .spec
        .as_ref()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.port == e.port)?;
    let number = match p.target_port.clone().unwrap_or(IntOrString::Int(p.port)) {
        IntOrString::Int(n) => n,
        IntOrString::String(name) => pod
            .containers
            .iter()
            .flat_map(|c| c.plan.ports.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, n)| *n)?,
    };
    Some((p.name.clone().unwrap_or_default(), number))
}

/// The ready pods' sockets for `e`; pods whose name starts the `leader` identity first (the
/// controller's cluster metrics are served by its leader only).
pub fn backends(
    svc: &Service,
    e: &Expose,
    pods: &[&RunningPod],
    leader: Option<&str>,
) -> Vec<PathBuf> {
    let mut out: Vec<(bool, PathBuf)> = pods
        .iter()
        .filter(|p| p.ready() && selects(svc, p))
        .filter_map(|p| {
            let (_, n) = target(svc, e, p)?;
            let leads = leader.is_some_and(|l| l.starts_with(&p.pod.name));
            Some((
                !leads,
                p.sandbox.dir.join("ports").join(format!("{n}.sock")),
            ))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

/// The Endpoints object for `e`: 127.0.0.1 on the host port when a pod is ready behind it.
pub fn endpoints(svc: &Service, e: &Expose, ready: bool) -> Value {
    let port_name = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ps| ps.iter().find(|p| p.port == e.port))
        .and_then(|p| p.name.clone())
        .unwrap_or_default();
    let subsets = if ready {
        json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": port_name, "port": e.host_port, "protocol": "TCP"}]}])
    } else {
        json!([])
    };
    json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": e.service, "namespace": e.namespace}, "subsets": subsets})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposures_parse() {
        let e: Expose = "nmstate/nmstate-webhook:443=19543".parse().unwrap();
        assert_eq!(
            e,
            Expose {
                namespace: "nmstate".into(),
                service: "nmstate-webhook".into(),
                port: 443,
                host_port: 19543
            }
        );
        assert!("nmstate-webhook:443=1".parse::<Expose>().is_err());
    }

    #[test]
    fn endpoints_name_the_host_port_only_when_ready() {
        let svc: Service =
            serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "n"},
            "spec": {"ports": [{"name": "webhook", "port": 443, "targetPort": "webhook"}]}}))
            .unwrap();
        let e: Expose = "n/s:443=1234".parse().unwrap();
        let v = endpoints(&svc, &e, true);
        assert_eq!(
            v["subsets"][0]["ports"][0],
            json!({"name": "webhook", "port": 1234, "protocol": "TCP"})
        );
        assert_eq!(endpoints(&svc, &e, false)["subsets"], json!([]));
    }
}
