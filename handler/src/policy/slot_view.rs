//! What a slot decision sees ([`View`]): the ledger and the policy's enactments from the
//! handler's watch caches, the nodes whose cached state disagrees with the ledger
//! ([`caches::disputed`]), a claim decided with those at their worst, and, when that does not
//! claim, those nodes read again from the API server.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use knmstate_api::names;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::concurrency::SlotState;
use knmstate_state_engine::slot::{self, SlotAction, SlotPlan};
use kube::Api;

use super::Run;
use crate::error::{Error, Result};
use crate::{caches, slots};

/// Where a decision reads the ledger from.
pub(super) enum Source {
    /// The watch cache.
    Cache,
    /// After a write against this version failed: [`slots::after_conflict`].
    AfterConflict(Option<String>),
}

/// The ledger and the policy's enactments as the slot path sees them.
pub(super) struct View {
    /// The ledger, with the version to write against.
    pub(super) read: slots::ReadLedger,
    /// The slot state of each node with an enactment (this node's from the status being built).
    pub(super) states: BTreeMap<String, SlotState>,
    /// The nodes whose cached state disagrees with the ledger ([`caches::disputed`]), not
    /// read again yet ([`Run::settle`]).
    pub(super) disputed: Vec<String>,
}

impl<B: Backend> Run<B> {
    /// The ledger (from the cache, or, after a write against version `lost` failed, the newer
    /// one: [`slots::after_conflict`]), the policy's enactments from the cache with the nodes
    /// whose cached state disagrees with the ledger ([`caches::disputed`]) not read again yet,
    /// this node's state from the status being built.
    pub(super) async fn view(&self, leases: &Api<Lease>, source: Source) -> Result<View> {
        let read = match source {
            Source::AfterConflict(lost) => {
                slots::after_conflict(&self.ctx, leases, &self.name, lost.as_deref()).await?
            }
            Source::Cache => slots::cached(&self.ctx, &self.name),
        };
        let mut states = self.ctx.caches.states(&self.name, self.generation);
        let claims = self.ctx.caches.claims(&self.name);
        let disputed = caches::disputed(
            read.ledger.as_ref(),
            self.generation,
            &states,
            &claims,
            self.node(),
        );
        states.insert(
            self.node().to_owned(),
            SlotState::of(Some(&self.status), self.generation),
        );
        Ok(View {
            read,
            states,
            disputed,
        })
    }

    /// The plan of a claim that holds whatever the disputed nodes' states really are: decided
    /// with each at its worst (a holder as applying, any other as failed), so that it counts
    /// at least the slots they really use. `None` when that does not claim, or would prune or
    /// abort on a state not read: then [`Run::settle`] reads them again.
    pub(super) fn claim_at_worst(
        &self,
        view: &View,
        limit: usize,
        hold_for: Duration,
    ) -> Option<SlotPlan> {
        let ledger = view
            .read
            .ledger
            .as_ref()
            .filter(|l| l.generation == self.generation);
        let mut worst = view.states.clone();
        for node in &view.disputed {
            let holds = ledger.is_some_and(|l| l.holders.contains(node));
            let state = if holds {
                SlotState::Progressing
            } else {
                SlotState::FailedFinal
            };
            worst.insert(node.clone(), state);
        }
        let at_worst = View {
            read: view.read.clone(),
            states: worst,
            disputed: Vec::new(),
        };
        let plan = slot::decide(&self.input(&at_worst, limit, hold_for));
        let tombstones = |l: Option<&slot::SlotLedger>| l.map_or(0, |l| l.expired.len());
        let prunes =
            !plan.expired.is_empty() || tombstones(plan.ledger.as_ref()) != tombstones(ledger);
        (plan.action == SlotAction::Apply && !prunes).then_some(plan)
    }

    /// `view` with its disputed nodes read again from the API server (unless read at the same
    /// version against the same ledger entry before: [`caches::DisputeMemo`]).
    pub(super) async fn settle(&self, view: View) -> Result<View> {
        let View {
            read,
            mut states,
            disputed,
        } = view;
        if !disputed.is_empty() {
            tracing::debug!(policy = %self.name, ?disputed, "reading disputed enactments again");
        }
        let memo = &self.ctx.caches.disputes;
        for node in disputed {
            let name = names::enactment_name(&node, &self.name);
            let entry = caches::ledger_entry(read.ledger.as_ref(), &node);
            let cached = self.ctx.caches.enactment_version(&name);
            if memo.settled(&name, cached.as_deref(), &entry) {
                continue;
            }
            let e = self
                .ctx
                .enactment_api()
                .get_opt(&name)
                .await
                .map_err(|e| Error::read(format!("enactment {name}"), e))?;
            let version = e.as_ref().and_then(|e| e.metadata.resource_version.clone());
            memo.record(&name, version, entry);
            match e {
                Some(e) => states.insert(node, SlotState::of(e.status.as_ref(), self.generation)),
                None => states.remove(&node),
            };
        }
        Ok(View {
            read,
            states,
            disputed: Vec::new(),
        })
    }
}
