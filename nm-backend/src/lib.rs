//! NetworkManager backend of knmstate over the nmstate crate and D-Bus
//!
//! (skeleton: filled in by its own issue)
