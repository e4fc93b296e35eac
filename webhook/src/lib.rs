//! knmstate admission webhook for NodeNetworkConfigurationPolicy
//!
//! (skeleton: filled in by its own issue)
