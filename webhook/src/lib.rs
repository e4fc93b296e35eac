//! # knmstate-webhook
//!
//! The admission webhook for NodeNetworkConfigurationPolicy, served over HTTPS (rustls) with
//! AdmissionReview v1:
//!
//! - **mutating** (upstream's three hooks): clear `status.conditions` on main-resource writes,
//!   initialise the four policy conditions on status writes, and stamp the strictly increasing
//!   `nmstate.io/webhook-mutating-timestamp` annotation;
//! - **validating**: the policy name, `nodeSelector` keys and values, `nodeSelectorExpressions`,
//!   `maxUnavailable`, no spec change while the policy is progressing, `capture` immutable, and
//!   the desired state parsed by the nmstate crate, rejected with nmstate's message and the
//!   field path.
//!
//! [`admission`] and [`rules`] are pure and tested with fixture reviews; [`server`] serves them
//! with axum over [`tls`], which reloads the certificate when its files change; [`cli`] holds
//! the flags and the run. Logging, signals and the health routes come from `knmstate-runtime`.

pub mod admission;
pub mod cli;
pub mod rules;
pub mod server;
pub mod tls;
