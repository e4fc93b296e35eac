//! nmstate's feature statistics of the rendered desired state, for `status.features` (which
//! feeds the `features_applied` metric). They never fail, block or delay a policy: computed
//! from the node's state already read for the apply decision, a failure (nmstate rejects the
//! desired state, or panics) is logged and leaves `status.features` empty, so that an error
//! only the apply can find is found by the apply, inside a slot.

use knmstate_nm_backend::Backend;
use knmstate_state_engine::secrets;
use serde_json::Value;

use super::Run;

impl<B: Backend> Run<B> {
    /// Set `status.features` from the desired state applied over `before` (the node's state
    /// now); empty when nmstate cannot compute them.
    pub(super) fn record_features(&mut self, before: &Value) {
        self.status.features = match knmstate_nm_backend::feature_statistics(&self.desired, before)
        {
            Ok(stats) => stats.features,
            Err(e) => {
                let error = secrets::scrub(&e.to_string(), &self.desired);
                tracing::warn!(policy = %self.name, category = e.category(), %error,
                    "failed to compute the feature statistics; status.features left empty");
                Vec::new()
            }
        };
    }
}
