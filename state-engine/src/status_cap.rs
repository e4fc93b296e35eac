//! Whether an enactment status fits an API object, and what to write when it does not.
//!
//! An API server refuses objects over about 1.5 MiB (etcd's request limit). An enactment
//! stores the rendered `desiredState` and the `capturedStates`, both as large as the policy
//! and the node make them; without a cap, every status write of such an enactment fails, the
//! reconcile requeues forever, and it holds its maxUnavailable slot meanwhile. With the cap,
//! [`cap_status`] drops the large fields, and the caller writes `Failing` with the returned
//! message and releases the slot: the policy fails on this node, clearly, and the rollout goes
//! on (the Aborted rule counts it as a failure, as any failed configuration).
//!
//! ```
//! use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
//! use knmstate_state_engine::status_cap::{cap_status, MAX_ENACTMENT_STATUS_BYTES};
//! let mut small = NodeNetworkConfigurationEnactmentStatus::default();
//! assert_eq!(cap_status(&mut small, MAX_ENACTMENT_STATUS_BYTES), None);
//! ```

use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;

/// The largest enactment status written, in bytes of JSON: 1 MiB, leaving room under the API
/// server's object limit for the metadata and the managed fields.
pub const MAX_ENACTMENT_STATUS_BYTES: usize = 1 << 20;

/// The size of `status` as JSON.
pub fn status_bytes(status: &NodeNetworkConfigurationEnactmentStatus) -> usize {
    serde_json::to_vec(status).map_or(usize::MAX, |v| v.len())
}

/// When `status` is over `max_bytes`: drop `desiredState`, `desiredStateMetaInfo` and
/// `capturedStates` from it and return the Failing message; `None` when it fits.
///
/// ```
/// use knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus;
/// use knmstate_state_engine::status_cap::cap_status;
/// let mut s = NodeNetworkConfigurationEnactmentStatus::default();
/// s.desired_state = knmstate_api::State::try_from(serde_json::json!({"interfaces": [
///     {"name": "eth1", "description": "x".repeat(2000)}]})).ok();
/// let message = cap_status(&mut s, 1000).unwrap();
/// assert!(s.desired_state.is_none());
/// assert!(message.starts_with("the enactment status would be 20"), "{message}");
/// assert!(message.ends_with("over the 1000-byte cap: desiredState and capturedStates are not \
///     stored and the policy is not applied on this node; split the policy or capture less"));
/// ```
pub fn cap_status(
    status: &mut NodeNetworkConfigurationEnactmentStatus,
    max_bytes: usize,
) -> Option<String> {
    let bytes = status_bytes(status);
    if bytes <= max_bytes {
        return None;
    }
    status.desired_state = None;
    status.desired_state_meta_info = Default::default();
    status.captured_states = Default::default();
    Some(format!(
        "the enactment status would be {bytes} bytes, over the {max_bytes}-byte cap: \
         desiredState and capturedStates are not stored and the policy is not applied on this \
         node; split the policy or capture less"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn captured_states_count_and_are_dropped() {
        let mut s = NodeNetworkConfigurationEnactmentStatus::default();
        let big = json!({"interfaces": [{"name": "br1", "description": "y".repeat(5000)}]});
        s.captured_states.insert(
            "c".into(),
            serde_json::from_value(json!({"state": big})).expect("a captured state"),
        );
        let fits = status_bytes(&s);
        assert!(
            cap_status(&mut s.clone(), fits).is_none(),
            "exactly at the cap fits"
        );
        let msg = cap_status(&mut s, fits - 1).expect("one byte over");
        assert!(s.captured_states.is_empty());
        assert!(msg.contains(&format!("{fits} bytes")), "{msg}");
        assert!(status_bytes(&s) < 200, "what is left is small");
    }
}
