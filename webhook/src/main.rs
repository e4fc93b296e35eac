//! knmstate-webhook: admission for NodeNetworkConfigurationPolicy.

use anyhow::Result;
use clap::Parser;
use knmstate_webhook::cli::Args;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.log.init()?;
    args.run(knmstate_runtime::shutdown_signal()).await?;
    Ok(())
}
