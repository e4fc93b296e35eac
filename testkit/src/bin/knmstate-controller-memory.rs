//! The controller binary's memory over a large cluster's objects (see
//! `knmstate_testkit::scale::controller_memory`). `hack/controller-memory.sh` runs it in a
//! release build.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use knmstate_testkit::scale::controller_memory::{self, Census};

/// Write N Nodes, P policies selecting every node and their N×P Available enactments to the
/// API stand-in, run the controller binary against them, and print its resident memory once
/// it wrote every policy's status and after a settle window.
#[derive(Debug, Parser)]
struct Args {
    /// Nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Policies, each selecting every node.
    #[arg(long, default_value_t = 100)]
    policies: usize,
    /// Seconds to watch the controller after it wrote every policy's status.
    #[arg(long, default_value_t = 60)]
    settle_seconds: u64,
    /// The controller binary.
    #[arg(long)]
    controller: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let census = Census {
        nodes: args.nodes,
        policies: args.policies,
        settle: Duration::from_secs(args.settle_seconds),
        controller: args.controller,
    };
    let m = controller_memory::run(&census).await?;
    println!(
        "| nodes | policies | enactments | objects written in | every policy Available after | RSS then MiB | RSS after {} s MiB | peak RSS MiB |",
        args.settle_seconds
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.0} s | {:.1} s | {:.1} | {:.1} | {:.1} |",
        census.nodes,
        census.policies,
        m.enactments,
        m.populate.as_secs_f64(),
        m.aggregated_after.as_secs_f64(),
        m.rss_ready,
        m.rss_settled,
        m.peak
    );
    Ok(())
}
