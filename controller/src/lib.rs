//! knmstate controller: NNCP status aggregation, cleanup and metrics
//!
//! (skeleton: filled in by its own issue)
