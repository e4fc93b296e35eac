//! The concurrency slot (state-engine's ledger protocol): Pending while maxUnavailable nodes
//! are applying, Aborted once maxUnavailable nodes failed, else the slot is claimed with an
//! optimistic write of the policy's ledger Lease ([`slots`]).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use knmstate_api::names;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::{self, SlotDecision, SlotState};
use knmstate_state_engine::conditions::{self as cond, EnactmentTransition};
use knmstate_state_engine::selector;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{Run, Step};
use crate::error::{Error, Result};
use crate::slots;

/// Attempts at the slot ledger before writing Pending.
const LEDGER_ATTEMPTS: usize = 5;

impl<B: Backend> Run<B> {
    /// Take a concurrency slot; ends the reconcile when this node must not apply now.
    ///
    /// The slot is won by the ledger write alone; `Progressing` is written afterwards, by the
    /// apply. So that another handler never prunes an entry whose enactment does not say
    /// `Progressing` yet, [`concurrency::count_ledger_claims`] counts a ledger entry whose enactment
    /// is not at an end as a holder, and a node leaving an end state (a drifted node applying
    /// again) first writes `Pending`, so its old end state can not make its entry look done.
    pub(super) async fn take_slot(&mut self) -> Result<Step> {
        let leases: Api<Lease> =
            Api::namespaced(self.ctx.client.clone(), &self.ctx.config.namespace);
        if SlotState::of(Some(&self.status), self.generation).is_final() {
            self.transition(&EnactmentTransition::Pending);
            self.write_status().await?;
        }
        for _ in 0..LEDGER_ATTEMPTS {
            let read = slots::read(&leases, &self.name).await?;
            let mut states = self.slot_states().await?;
            // Resuming without a write is sound only once this node wrote `Progressing`, which
            // it does only after its ledger write succeeded.
            let announced = states.get(self.node()) == Some(&SlotState::Progressing);
            concurrency::count_ledger_claims(&mut states, self.generation, read.ledger.as_ref());
            let limit = self.max_unavailable(states.len()).await?;
            let decision = concurrency::decide_slot(
                self.node(),
                self.generation,
                read.ledger.as_ref(),
                &states,
                limit,
            );
            tracing::debug!(policy = %self.name, ?decision, limit, "slot decision");
            let next = match decision {
                SlotDecision::Resume if announced => return Ok(ControlFlow::Continue(())),
                SlotDecision::Resume => {
                    // Claimed before, `Progressing` never written (a crash, a failed write):
                    // confirm the entry against the version read before applying.
                    let mut next = concurrency::SlotLedger::new(self.generation);
                    next.holders =
                        concurrency::live_holders(self.generation, read.ledger.as_ref(), &states)
                            .into_iter()
                            .map(str::to_owned)
                            .collect();
                    next
                }
                SlotDecision::Claim(next) => next,
                SlotDecision::Wait => {
                    self.transition(&EnactmentTransition::Pending);
                    self.write_status().await?;
                    let wait = self
                        .ctx
                        .config
                        .defaults
                        .retry
                        .initial_backoff
                        .max(Duration::from_millis(200));
                    return Ok(ControlFlow::Break(Action::requeue(wait)));
                }
                SlotDecision::Abort => {
                    let message = cond::aborted_message(self.node(), &self.name);
                    self.transition(&EnactmentTransition::Aborted {
                        message: message.clone(),
                    });
                    self.write_status().await?;
                    self.event(&message).await;
                    return Ok(ControlFlow::Break(Action::await_change()));
                }
            };
            // The slot first (optimistic write against the version read), `Progressing` only
            // once it is won (written by the apply), as upstream.
            if slots::write(&leases, &self.policy, &read, &next).await? {
                return Ok(ControlFlow::Continue(()));
            }
            tracing::debug!(policy = %self.name, "slot ledger conflict; reading again");
        }
        self.transition(&EnactmentTransition::Pending);
        self.write_status().await?;
        Ok(ControlFlow::Break(Action::requeue(Duration::from_millis(
            500,
        ))))
    }

    /// Slot states of the policy's enactments (read from the API server, not a cache).
    async fn slot_states(&self) -> Result<BTreeMap<String, SlotState>> {
        let list = self
            .ctx
            .enactment_api()
            .list(&ListParams::default().labels(&format!("{}={}", names::POLICY_LABEL, self.name)))
            .await
            .map_err(|e| Error::read(format!("enactments of policy {}", self.name), e))?;
        let mut states: BTreeMap<String, SlotState> = list
            .items
            .iter()
            .filter_map(|e| {
                let node = e.labels().get(names::NODE_LABEL)?.clone();
                Some((node, SlotState::of(e.status.as_ref(), self.generation)))
            })
            .collect();
        states.insert(
            self.node().to_owned(),
            SlotState::of(Some(&self.status), self.generation),
        );
        Ok(states)
    }

    /// maxUnavailable over the nodes matching the policy (at least the enactments' count).
    async fn max_unavailable(&self, enactments: usize) -> Result<usize> {
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        let list = nodes
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| Error::read("nodes", e))?;
        let matching = list
            .items
            .iter()
            .filter(|n| {
                selector::policy_matches_node(&self.policy.spec, n.labels()).unwrap_or(false)
            })
            .count();
        let m = concurrency::max_unavailable(
            self.policy.spec.max_unavailable.as_ref(),
            matching.max(enactments),
        );
        if let Some(e) = &m.error {
            tracing::warn!(policy = %self.name, error = %e, "invalid maxUnavailable, using 50%");
        }
        Ok(m.value)
    }
}
