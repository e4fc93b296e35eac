//! kubectl-nmstate: the kubectl plugin (`kubectl nmstate validate|plan|status`).

use clap::Parser;
use knmstate_handler::plugin::Args;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    Args::parse().run().await
}
