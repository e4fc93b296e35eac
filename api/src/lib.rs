//! # knmstate-api
//!
//! The `nmstate.io` API, drop-in compatible with upstream kubernetes-nmstate:
//!
//! | kind | versions | short name |
//! |---|---|---|
//! | [`v1::NodeNetworkConfigurationPolicy`] | v1 (storage), v1beta1 (deprecated) | `nncp` |
//! | [`v1beta1::NodeNetworkConfigurationEnactment`] | v1beta1 | `nnce` |
//! | [`v1beta1::NodeNetworkState`] | v1beta1 | `nns` |
//! | [`v1::NMState`] | v1 (storage), v1beta1 (deprecated) | — |
//!
//! All are cluster-scoped with a status subresource. Versions share one definition (see
//! `kinds`), so their schemas are identical and no conversion is needed. Desired and current
//! states are free-form [`state::State`] objects that round-trip every key. [`condition`] holds
//! the condition type with upstream's `set` semantics, [`names`] every label, annotation,
//! condition type and reason, and [`crd`] generates the CRDs stored in `config/crd/`.
//!
//! ```
//! use knmstate_api::v1::NodeNetworkConfigurationPolicy;
//! let p: NodeNetworkConfigurationPolicy = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "nmstate.io/v1",
//!     "kind": "NodeNetworkConfigurationPolicy",
//!     "metadata": {"name": "br1"},
//!     "spec": {"desiredState": {"interfaces": [{"name": "br1", "type": "linux-bridge"}]}}
//! })).unwrap();
//! assert!(p.spec.desired_state.is_some());
//! ```

pub mod condition;
pub mod crd;
mod kinds;
pub mod names;
pub mod schema;
pub mod shared;
pub mod state;
pub mod v1;
pub mod v1beta1;

pub use condition::{Condition, ConditionList, ConditionStatus};
pub use state::State;
