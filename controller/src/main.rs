//! knmstate-controller: the leader-elected writer of NodeNetworkConfigurationPolicy status.

use clap::Parser;
use knmstate_controller::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    knmstate_controller::main_with(Args::parse()).await?;
    Ok(())
}
