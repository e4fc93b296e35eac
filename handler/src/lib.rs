//! knmstate per-node handler: applies policies and reports NodeNetworkState
//!
//! (skeleton: filled in by its own issue)
