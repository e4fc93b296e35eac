//! The `handler` binary: parse the configuration, then start the handler
//! ([`knmstate_handler::start()`]: node lock, stale checkpoints, controllers, graceful stop).

use clap::Parser;
use knmstate_handler::{Cli, HandlerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = HandlerConfig::try_from(Cli::parse())?;
    knmstate_handler::start(config)
        .await
        .map_err(|e| anyhow::anyhow!(e.report()))
}
