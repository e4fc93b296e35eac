//! knmstate test harness: Kubernetes API stand-in, NetworkManager node harness, end-to-end suites
//!
//! (skeleton: filled in by its own issue)
