//! ValidatingAdmissionPolicy conformance of the stand-in, with kube-rs clients and `kubectl`:
//! matching (rules, selectors, binding narrowing, matchConditions), the CEL context,
//! variables, messages and reasons, failure policies, validation actions, parameters, and the
//! project's own policy from `config/default`.

#[path = "../common/mod.rs"]
mod common;

mod context;
mod ghost_mark;
mod handler_identity;
mod kubectl;
mod matching;
mod node_restriction;
mod outcomes;
mod project;
mod support;
