//! The settings the cluster's handlers run with, so a plan picks the probes, their timeouts and
//! the bridge VLAN default as they will: the environment of the handler DaemonSet's container,
//! read by the handler's own flags ([`crate::config::Cli`] → [`HandlerConfig`]). Without a
//! readable DaemonSet (offline, no permission), upstream's defaults.

use clap::{CommandFactory, FromArgMatches};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use crate::config::{BridgeVlanMode, Cli, HandlerConfig};
use knmstate_state_engine::rollback::HandlerDefaults;

/// The handler container's name in the DaemonSet (upstream's, and the deploy renderer's).
const HANDLER_CONTAINER: &str = "nmstate-handler";

/// What the plan assumes of the handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerSettings {
    /// Where the settings came from: `namespace/daemonset`, or why the defaults are used.
    pub source: String,
    /// Probe timeouts, checkpoint, DNS host, retries.
    #[serde(skip)]
    pub defaults: HandlerDefaults,
    /// When the handlers inject the default linux-bridge VLAN trunk.
    #[serde(skip)]
    pub bridge_vlan: BridgeVlanMode,
}

impl HandlerSettings {
    /// Upstream's defaults, and why they are used.
    pub fn defaults(why: &str) -> Self {
        Self {
            source: format!("defaults ({why})"),
            defaults: HandlerDefaults::default(),
            bridge_vlan: BridgeVlanMode::default(),
        }
    }

    /// Whether the handlers inject the default VLAN trunk, given whether the nodes' kernels
    /// filter bridge VLANs (which only `auto` asks).
    pub fn inject_bridge_vlan(&self, kernel_filters: bool) -> bool {
        match self.bridge_vlan {
            BridgeVlanMode::Always => true,
            BridgeVlanMode::Never => false,
            BridgeVlanMode::Auto => kernel_filters,
        }
    }
}

/// The settings a handler container with environment `env` (literal values) runs with, parsed
/// by the handler's own flags; the plugin's own environment is not read.
pub fn from_env<'a>(
    source: &str,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HandlerSettings, String> {
    let mut command = Cli::command().mut_args(|a| a.env(None));
    let flags: Vec<(String, String)> = Cli::command()
        .get_arguments()
        .filter_map(|a| Some((a.get_env()?.to_str()?.to_owned(), a.get_long()?.to_owned())))
        .collect();
    let mut args = vec!["handler".to_owned(), "--node-name=plan".to_owned()];
    for (name, value) in env {
        if let Some((_, long)) = flags.iter().find(|(e, _)| e == name)
            && long != "node-name"
        {
            args.push(format!("--{long}={value}"));
        }
    }
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(|e| e.to_string())?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let config = HandlerConfig::try_from(cli).map_err(|e| e.to_string())?;
    Ok(HandlerSettings {
        source: source.to_owned(),
        defaults: config.defaults,
        bridge_vlan: config.bridge_vlan,
    })
}

/// The settings of the cluster's handler DaemonSet, or the defaults and why.
pub async fn from_cluster(client: &Client) -> HandlerSettings {
    let sets = match Api::<DaemonSet>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => return HandlerSettings::defaults(&format!("cannot list DaemonSets: {e}")),
    };
    for ds in &sets {
        let containers = ds
            .spec
            .template
            .spec
            .as_ref()
            .map(|p| p.containers.as_slice())
            .unwrap_or_default();
        if let Some(c) = containers.iter().find(|c| c.name == HANDLER_CONTAINER) {
            let source = format!(
                "{}/{}",
                ds.metadata.namespace.as_deref().unwrap_or_default(),
                ds.metadata.name.as_deref().unwrap_or_default()
            );
            let env = c
                .env
                .iter()
                .flatten()
                .filter_map(|v| Some((v.name.as_str(), v.value.as_deref()?)));
            return from_env(&source, env)
                .unwrap_or_else(|e| HandlerSettings::defaults(&format!("{source}: {e}")));
        }
    }
    HandlerSettings::defaults("no handler DaemonSet found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_handlers_environment_is_read_by_the_handlers_flags() {
        let s = from_env(
            "nmstate/nmstate-handler",
            [
                ("PROBE_TIMEOUT_SECONDS", "15"),
                ("CHECKPOINT_TIMEOUT_SECONDS", "90"),
                ("PROBE_DNS_HOST", "example.test"),
                ("DEFAULT_BRIDGE_VLAN", "never"),
                ("NODE_NAME", "ignored"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(s.defaults.probe_timeout, Duration::from_secs(15));
        assert_eq!(s.defaults.checkpoint_timeout, Duration::from_secs(90));
        assert_eq!(s.defaults.dns_host, "example.test");
        assert!(!s.inject_bridge_vlan(true));
        let auto = from_env("x", []).unwrap();
        assert_eq!(auto.defaults, HandlerDefaults::default());
        assert!(auto.inject_bridge_vlan(true) && !auto.inject_bridge_vlan(false));
        assert!(from_env("x", [("PROBE_TIMEOUT_SECONDS", "soon")]).is_err());
    }
}
