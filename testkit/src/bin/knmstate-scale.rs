//! The scale harness's runner: each scenario (nodes × maxUnavailable) in turn, one Markdown
//! table row each (see `knmstate_testkit::scale`). `hack/scale.sh` runs it in a release build.

use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use knmstate_testkit::scale::{self, Figures, Layout, Scenario};

/// Roll a policy out over N simulated nodes (real handlers, in-memory networks, the
/// controller) against the API stand-in, and measure time, API requests, CPU and memory.
#[derive(Debug, Parser)]
struct Args {
    /// Node counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,300,1000")]
    nodes: Vec<usize>,
    /// maxUnavailable values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10%,50%")]
    max_unavailable: Vec<String>,
    /// Apply time of each node, in seconds.
    #[arg(long, default_value_t = 5.0)]
    apply_seconds: f64,
    /// Nodes whose apply fails.
    #[arg(long, default_value_t = 0)]
    failing: usize,
    /// Idle window after each rollout, in seconds (counts are scaled to a minute).
    #[arg(long, default_value_t = 30.0)]
    idle_seconds: f64,
    /// Print the requests of each rollout and idle window by verb and resource.
    #[arg(long)]
    verbose: bool,
    /// Run the stand-in and the controller in this process, not as processes of their own
    /// (`knmstate-apiserver` and `knmstate-controller`, looked for beside this binary).
    #[arg(long)]
    in_process: bool,
    /// Seconds the rollout may take before the run fails (default: 4 × the ideal + 60 s +
    /// 20 ms per node).
    #[arg(long)]
    rollout_timeout: Option<f64>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let layout = if args.in_process {
        Layout::InProcess
    } else {
        Layout::beside_this_binary().context(
            "knmstate-apiserver and knmstate-controller are not beside this binary: build them \
             (hack/scale.sh does) or pass --in-process",
        )?
    };
    println!("{}", Figures::header());
    for &nodes in &args.nodes {
        for m in &args.max_unavailable {
            let scenario = Scenario {
                nodes,
                max_unavailable: m.clone(),
                apply_time: Duration::from_secs_f64(args.apply_seconds),
                failing: args.failing,
                idle_window: Duration::from_secs_f64(args.idle_seconds),
                layout: layout.clone(),
                rollout_timeout: args.rollout_timeout.map(Duration::from_secs_f64),
            };
            // Interrupted, the run is dropped: its stand-in and controller processes with it.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let figures = tokio::select! {
                r = scale::run(&scenario) => r?,
                r = tokio::signal::ctrl_c() => {
                    r?;
                    anyhow::bail!("interrupted");
                }
                _ = term.recv() => anyhow::bail!("terminated"),
            };
            println!("{}", figures.row());
            if args.verbose {
                println!("  rollout: {}", figures.rollout_requests);
                println!("  idle window: {}", figures.idle_requests);
            }
        }
    }
    Ok(())
}
