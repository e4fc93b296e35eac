//! nmstate's feature statistics of the rendered desired state, for `status.features` (which
//! feeds the `features_applied` metric). They never fail, block or delay a policy: computed on
//! a blocking thread beside the slot claim and the apply, from the node's state the apply
//! decision used, and put into the status by the first status write after they are done (the
//! write that reports the attempt waits for them). A failure (nmstate rejects the desired
//! state, panics, or the thread is lost) is logged and leaves `status.features` empty, so that
//! an error only the apply can find is found by the apply, inside a slot.

use knmstate_nm_backend::Backend;
use knmstate_state_engine::secrets;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::Run;

/// The feature statistics being computed.
pub(super) type PendingFeatures = JoinHandle<Vec<String>>;

impl<B: Backend> Run<B> {
    /// Start computing `status.features` from the desired state applied over `before` (the
    /// node's state now). Until they are in, the status holds no features (none of an earlier
    /// generation speaks for this one).
    pub(super) fn start_features(&mut self, before: &Value) {
        let (desired, before, policy) = (self.desired.clone(), before.clone(), self.name.clone());
        self.status.features = Vec::new();
        self.features = Some(tokio::task::spawn_blocking(move || {
            statistics(&policy, &desired, &before)
        }));
    }

    /// Put the feature statistics into `status.features` when they are done, or when `wait`,
    /// once they are.
    pub(super) async fn collect_features(&mut self, wait: bool) {
        let Some(task) = self.features.take_if(|task| wait || task.is_finished()) else {
            return;
        };
        self.status.features = task.await.unwrap_or_else(|e| {
            tracing::warn!(policy = %self.name, error = %e,
                "failed to compute the feature statistics; status.features left empty");
            Vec::new()
        });
    }
}

/// nmstate's features of `desired` applied over `before`; none when nmstate cannot tell.
fn statistics(policy: &str, desired: &Value, before: &Value) -> Vec<String> {
    match knmstate_nm_backend::feature_statistics(desired, before) {
        Ok(stats) => stats.features,
        Err(e) => {
            let error = secrets::scrub(&e.to_string(), desired);
            tracing::warn!(%policy, category = e.category(), %error,
                "failed to compute the feature statistics; status.features left empty");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statistics_of_a_route_and_none_when_nmstate_cannot_tell() {
        let before = knmstate_nm_backend::MemoryBackend::harness_like("198.18.0.101").state();
        let route = json!({"routes": {"config": [{"destination": "198.19.9.0/24",
            "next-hop-address": "198.18.0.1", "next-hop-interface": "eth0"}]}});
        assert_eq!(statistics("p", &route, &before), ["static-route"]);
        // Not an nmstate state: logged, no features, nothing fails.
        let broken = json!({"interfaces": "not a list", "password": "s3cret"});
        assert!(statistics("p", &broken, &before).is_empty());
    }
}
