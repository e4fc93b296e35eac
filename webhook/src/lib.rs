//! # knmstate-webhook
//!
//! The admission webhook for NodeNetworkConfigurationPolicy, served over HTTPS (rustls) with
//! AdmissionReview v1:
//!
//! - **mutating** (upstream's three hooks): clear `status.conditions` on main-resource writes,
//!   initialise the four policy conditions on status writes, and stamp the strictly increasing
//!   `nmstate.io/webhook-mutating-timestamp` annotation;
//! - **validating**: the policy name, `nodeSelector` keys and values, `nodeSelectorExpressions`,
//!   `maxUnavailable`, no spec change while the policy is progressing, `capture` immutable and
//!   each capture expression parsed by nmstate, and the desired state through nmstate's full
//!   offline validation (its deserialiser, then its configuration generation, minus what only a
//!   node can decide: [`offline`]), refused with nmstate's message and the field at fault
//!   ([`locate`]). Every denial lists its fields in `status.details.causes`;
//! - **slot ledgers** (`coordination.k8s.io` Leases `nncp-slots-<policy>` written by a node's
//!   handler): a node changes only its own entry, or prunes an expired holder ([`slot_ledger`],
//!   the rules in state-engine's `ledger_guard`).
//!
//! [`admission`] and [`rules`] are pure and tested with fixture reviews; [`server`] serves them
//! with axum on `knmstate-runtime`'s hardened server (timeouts, a 3 MiB body limit, a
//! connection cap) over TLS with a certificate reloaded when its files change; [`cli`] holds
//! the flags and the run, stopped gracefully on SIGTERM or SIGINT. Logging, signals and the
//! health routes come from `knmstate-runtime`.

pub mod admission;
pub mod capture;
pub mod cli;
pub mod locate;
pub mod offline;
pub mod rules;
pub mod server;
pub mod slot_ledger;
