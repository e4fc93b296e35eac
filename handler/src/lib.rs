//! # knmstate-handler
//!
//! The per-node handler: one runs on every node (`NODE_NAME`). It applies the
//! NodeNetworkConfigurationPolicies that select its node through the node's NetworkManager
//! (nm-backend), holding a checkpoint while connectivity probes run, then commits or rolls
//! back; it writes its node's NodeNetworkConfigurationEnactments (status by server-side apply,
//! field manager `knmstate-handler`) and reports its node's NodeNetworkState when it changes.
//! It never writes policy status (the controller does).
//!
//! Decisions come from state-engine (conditions, selection, concurrency, rendering, filtering,
//! probes and retries) and every change of the node goes through nm-backend's apply transaction;
//! this crate wires them to kube-runtime controllers ([`run`], started by [`start()`]; the
//! policy reconcile is split by step in [`policy`]) and to a
//! [`Backend`](knmstate_nm_backend::Backend) — `NmBackend` on a real node, `MemoryBackend` in
//! tests (the test doubles, `MemoryBackend` and `probes::ModelProbes`, need the `testing` feature).
//! The crate's second binary, the kubectl plugin `kubectl-nmstate` ([`plugin`]), runs the same
//! render → plan → probe choice from outside the nodes and shows what the handlers wrote.
//!
//! ## Deliberate differences from upstream
//!
//! * **No re-apply on restart.** Upstream re-applies every policy when the handler starts. Here
//!   a policy generation that already succeeded on this node is not applied again while the
//!   node's current state still satisfies the rendered desired state (compared with secrets
//!   hidden on both sides); if the node drifted away from it (or the comparison cannot tell),
//!   it is re-applied. A generation whose retries are exhausted (or that was aborted) is never
//!   re-applied: re-breaking the network on every restart is worse (upstream #1440); a new
//!   generation starts over with fresh conditions and retry counts.
//! * **Drift reports and dry runs** (our additions, no new condition type). While running, the
//!   handler compares its node with every policy it applied at each NodeNetworkState read
//!   ([`drift`]) and reports a node that no longer satisfies one in the enactment's
//!   `status.drift` with a `ConfigurationDrifted` Warning; it re-applies only a policy annotated
//!   `nmstate.io/reapply-on-drift: "true"` (and, as above, at its first look after a start). A
//!   policy annotated `nmstate.io/dry-run: "true"` is planned into `status.plan`, never applied.
//! * **Concurrency without ghost slots.** The slot is decided by state-engine's slot protocol
//!   ([`knmstate_state_engine::slot`]) from the enactments of the current generation and a
//!   per-policy ledger `Lease` written optimistically ([`slots`]). Each holder has a lease it
//!   renews while applying; a holder whose handler never comes back is pruned once its lease
//!   (checkpoint timeout plus a margin) ran out, its enactment Aborted with a `SlotExpired`
//!   event, so a dead node no longer stalls the rollout (upstream #1571).
//! * **Slots from watches, not lists.** Upstream lists every Node and enactment on each slot
//!   attempt and polls while it waits (O(N²) reads per rollout, #684/#1242). Here the slot path
//!   reads Nodes (metadata), enactments and ledgers from watch caches ([`caches`]), waits by
//!   watching them ([`slot_wait`]: woken by a change, in rank order, with a jittered backoff),
//!   and writes the ledger against the cached version: a waiting or idle handler sends nothing.
//! * **Bridge VLAN default only where it can work.** Upstream injects a VLAN trunk on every
//!   linux-bridge port without `vlan`; a kernel without bridge VLAN filtering then cannot bring
//!   the bridge up at all. By default (`DEFAULT_BRIDGE_VLAN=auto`) the trunk is injected only
//!   when the node's kernel supports VLAN filtering; `always` is upstream's behaviour.
//! * **Probe selection is quick.** An external probe (gateway, DNS) that fails before the
//!   apply is dropped after one try instead of 120 s of polling.
//! * **Small, safe messages.** Failure messages put the decisive error first, are capped at
//!   16 KiB and never embed a state dump; secrets are hidden in statuses, events and logs
//!   ([`knmstate_state_engine::secrets`]).
//! * **NNS on change.** The NodeNetworkState follows NetworkManager's change signals (debounced)
//!   with a slow safety re-read, instead of a 60 s poll, and is written only when it changed.
//! * **Shutdown.** On SIGTERM an apply in flight is rolled back before the process exits, so
//!   no uncommitted checkpoint is left behind; after a crash the next handler rolls any stale
//!   checkpoint back at start-up (it holds the node lock, so no live handler owns one).

pub mod caches;
pub mod config;
pub mod context;
pub mod drift;
pub mod error;
pub mod lock;
pub mod nns;
pub mod objects;
pub mod plugin;
pub mod policy;
pub mod probes;
pub mod run;
pub mod slot_wait;
pub mod slots;
pub mod start;
pub mod sweep;

pub use config::{Cli, HandlerConfig, LogFormat};
pub use context::Context;
pub use error::{Error, Result};
pub use run::Handler;
pub use start::start;
