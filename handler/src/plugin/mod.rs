//! The kubectl plugin `kubectl-nmstate` (run as `kubectl nmstate …` once on `PATH`):
//!
//! | command | what | needs |
//! |---|---|---|
//! | `validate FILE…` | CRD schema, the webhook's admission rules and nmstate's parser, per document | nothing (offline) |
//! | `plan FILE\|POLICY` | selected nodes, rollout pace, per node the changes and the probes | the cluster, or `--state` files |
//! | `status POLICY` | per node condition, reason, time, probes, rollback reason; `--watch` | the cluster |
//!
//! Text tables by default, `-o yaml|json` for machines. Exit status: 0 fine, 1 `validate`
//! found problems or a watched rollout ended Degraded, 2 the command failed.
//!
//! It lives in the handler crate because `plan` is the handler's own render → plan → probe
//! choice, run from outside the nodes, and `status` reads what the handler writes; every
//! decision comes from the libraries (webhook rules, state-engine, nm-backend's capture
//! resolution), nothing is re-implemented here.

mod error;
mod input;
mod output;
pub mod plan;
mod plan_text;
pub mod settings;
mod sources;
pub mod status;
#[cfg(test)]
mod tests;
pub mod validate;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{ArgAction, Parser, Subcommand};
use knmstate_api::names::policy as p;

pub use error::PluginError;
pub use output::Format;

/// See a policy before and after: validate it offline, plan it per node, follow its rollout.
#[derive(Debug, Parser)]
#[command(name = "kubectl-nmstate", bin_name = "kubectl nmstate", version)]
pub struct Args {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The plugin's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check nmstate.io objects in YAML files, offline: CRD schema, admission rules and
    /// nmstate's own parsing of the desired state. Exit status 1 on any problem.
    Validate {
        /// YAML files (several documents each allowed).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// What a policy would change on each node it selects, before it is applied.
    Plan(PlanArgs),
    /// The rollout of a policy, per node.
    Status(StatusArgs),
}

/// Flags of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// A policy file (every policy in it is planned), or the name of a policy on the cluster.
    pub policy: String,
    /// Plan this node only (shown even if the policy does not select it).
    #[arg(long, conflicts_with = "selector")]
    pub node: Option<String>,
    /// Plan only the selected nodes with these labels (`key=value[,key=value…]`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Offline: NodeNetworkState (and optionally Node) objects, or bare nmstate states, to
    /// plan against instead of the cluster's.
    #[arg(long = "state", value_name = "FILE")]
    pub states: Vec<PathBuf>,
    /// Whether the nodes' kernels filter bridge VLANs, so handlers in their default `auto`
    /// bridge VLAN mode inject the default linux-bridge VLAN trunk.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub bridge_vlan_filtering: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

/// Flags of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The policy's name.
    pub policy: String,
    /// Refresh with a progress bar until the rollout settles; exit status 1 if it ends Degraded.
    #[arg(short, long)]
    pub watch: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Give up watching after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Output format (with --watch, only the settled view is printed).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

impl Args {
    /// Runs the command; prints its output and any error; the exit status.
    pub async fn run(self) -> ExitCode {
        match self.command.run().await {
            Ok(code) => code,
            Err(e) => {
                let mut message = format!("error: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    let _ = write!(message, ": {s}");
                    source = s.source();
                }
                eprintln!("{message}");
                ExitCode::from(2)
            }
        }
    }
}

impl Command {
    async fn run(self) -> Result<ExitCode, PluginError> {
        match self {
            Self::Validate { files, output } => {
                let report = validate::Validator::new()?.files(&files);
                print!(
                    "{}",
                    output::render(&report, output, validate::Report::text)?
                );
                Ok(if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Self::Plan(args) => {
                let plans = args.plans().await?;
                print!(
                    "{}",
                    output::render(&plans, args.output, |p| plan_text::plans_text(p))?
                );
                Ok(ExitCode::SUCCESS)
            }
            Self::Status(args) => args.run().await,
        }
    }
}

/// `key=value[,key=value…]` as a label map.
pub fn parse_selector(s: &str) -> Result<std::collections::BTreeMap<String, String>, PluginError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(PluginError::ParseSelector(s.to_owned())),
        })
        .collect()
}

impl PlanArgs {
    /// The options these flags describe.
    pub fn options(&self) -> Result<plan::Options, PluginError> {
        let focus = match (&self.node, &self.selector) {
            (Some(n), _) => plan::Focus::Node(n.clone()),
            (None, Some(s)) => plan::Focus::Labels(parse_selector(s)?),
            (None, None) => plan::Focus::Selected,
        };
        Ok(plan::Options {
            focus,
            bridge_vlan_filtering: self.bridge_vlan_filtering,
            handler: settings::HandlerSettings::defaults("offline"),
        })
    }

    async fn plans(&self) -> Result<Vec<plan::PolicyPlan>, PluginError> {
        let mut options = self.options()?;
        let offline = !self.states.is_empty();
        let client = if offline {
            None
        } else {
            Some(sources::client().await?)
        };
        if let Some(c) = &client {
            options.handler = settings::from_cluster(c).await;
        }
        let (policies, from_cluster) = sources::policies(&self.policy, client.as_ref()).await?;
        let mut plans = Vec::new();
        for policy in &policies {
            let fleet = match &client {
                None => sources::offline_fleet(&self.states)?,
                Some(c) => {
                    let name = policy.metadata.name.as_deref().filter(|_| from_cluster);
                    sources::cluster_fleet(c, name).await?
                }
            };
            plans.push(plan::plan_policy(policy, &fleet, &options)?);
        }
        Ok(plans)
    }
}

impl StatusArgs {
    async fn run(&self) -> Result<ExitCode, PluginError> {
        let client = sources::client().await?;
        let started = Instant::now();
        let tty = std::io::stdout().is_terminal();
        loop {
            let policy = sources::policy(&client, &self.policy).await?;
            let enactments = sources::enactments(&client, &self.policy).await?;
            let view = status::view(&policy, &enactments, k8s_openapi::jiff::Timestamp::now());
            let last = !self.watch || view.settled;
            if self.output == Format::Text || last {
                let shown = output::render(&view, self.output, status::text)?;
                if self.watch && tty {
                    // Clear the screen and go home: one screen, refreshed in place.
                    print!("\x1b[2J\x1b[H");
                } else if self.watch && started.elapsed() > Duration::ZERO {
                    println!();
                }
                print!("{shown}");
            }
            if last {
                let degraded = policy
                    .status
                    .as_ref()
                    .is_some_and(|s| s.conditions.is_true(p::DEGRADED));
                return Ok(if self.watch && degraded {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
            if started.elapsed().as_secs_f64() > self.timeout {
                return Err(PluginError::WatchTimedOut(self.timeout));
            }
            tokio::time::sleep(Duration::from_secs_f64(self.interval.max(0.1))).await;
        }
    }
}
