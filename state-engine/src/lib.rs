//! # knmstate-state-engine
//!
//! The pure decision core of knmstate. Every function here takes values in and gives
//! decisions out: there is no Kubernetes client, no D-Bus, no I/O, no async runtime and no
//! clock (callers pass `now`). The handler, the controller and the webhook wire these
//! decisions to the outside world; keeping them pure makes them testable with tables, golden
//! directories and property tests.
//!
//! | module | decides |
//! |---|---|
//! | [`conditions`] | the enactment and policy condition sets, exactly as upstream writes them |
//! | [`aggregate`] | which nodes count for a policy; its conditions from its enactments and those nodes |
//! | [`census`] | the controller's metric counts per label set from policies, enactments and states |
//! | [`orphans`] | which enactments and states are orphans (policy or node gone, node no longer selected) |
//! | [`secrets`] | which values of a state are secrets; hiding them in states and messages; message caps |
//! | [`selector`] | whether a node matches a policy; label and policy-name validation |
//! | [`node`] | facts about a Node shared by several decisions (readiness) |
//! | [`concurrency`] | maxUnavailable, the enactments' slot states, the Aborted rule |
//! | [`slot`] | the slot protocol: claim, renew, release, prune of expired (ghost) holders |
//! | [`ledger_guard`] | which slot-ledger writes a node's handler may make (its own entry, and prunes of expired holders) |
//! | [`status_cap`] | whether an enactment status fits an API object, and the Failing message when not |
//! | [`render`] | the default linux-bridge VLAN trunk injected into a desired state; whether it needs bridge VLAN filtering |
//! | [`filter`] | what of a node's current state is reported in its NodeNetworkState |
//! | [`plan`] | what a desired state changes on a node (interfaces, routes, DNS, default route) |
//! | [`rollback`] | which probes guard an apply, their timeouts, commit or rollback, retries |
//! | [`drift`] | whether a node still satisfies what a policy applied, and the paths where it departs |
//! | [`dry_run`] | the per-policy switches (dry run, re-apply on drift) and a dry run's plan |
//! | [`error`] | the one error type, with a stable `category()` for reasons and metric labels |
//!
//! ```
//! use knmstate_state_engine::concurrency::max_unavailable;
//! use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
//!
//! // "50%" of 5 matching nodes, rounded up.
//! let limit = max_unavailable(Some(&IntOrString::String("50%".into())), 5);
//! assert_eq!(limit.value, 3);
//! assert!(limit.error.is_none());
//! ```

pub mod aggregate;
pub mod census;
pub mod concurrency;
pub mod conditions;
pub mod drift;
pub mod dry_run;
pub mod error;
pub mod filter;
pub mod ledger_guard;
pub mod node;
pub mod orphans;
pub mod plan;
pub mod render;
pub mod rollback;
pub mod secrets;
pub mod selector;
pub mod slot;
pub mod status_cap;

pub use error::Error;
