//! The Kubernetes event recorder, named for the binary that reports.

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// A recorder whose events say they come from `controller` (the binary's field manager, e.g.
/// `knmstate-handler`), from `instance` when one is given (e.g. `<node>.nmstate-handler` or the
/// controller replica's identity).
pub fn recorder(client: Client, controller: &str, instance: Option<String>) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: controller.to_owned(),
            instance,
        },
    )
}
