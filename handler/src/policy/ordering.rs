//! When a policy may go ahead on this node: not before its retry backoff is over, and not
//! before every earlier policy (in name order) that matches this node was tried for its
//! generation, so a burst (startup, node label change) applies in name order.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use knmstate_api::names::enactment_name;
use knmstate_nm_backend::Backend;
use knmstate_state_engine::selector;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::Step;
use crate::context::Context;

/// How long a policy waits before looking again when an earlier policy goes first.
const DEFER: Duration = Duration::from_millis(200);

/// Go on when it is this policy's turn; else look again later.
pub(super) fn wait_turn<B: Backend>(
    ctx: &Context<B>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Step {
    let wait = ctx
        .not_before
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(name)
        .map(|t| t.saturating_duration_since(Instant::now()))
        .filter(|d| !d.is_zero());
    if let Some(wait) = wait {
        return ControlFlow::Break(Action::requeue(wait));
    }
    if let Some(first) = earlier_untried_policy(ctx, name, labels) {
        tracing::debug!(policy = %name, earlier = %first, "an earlier policy goes first");
        return ControlFlow::Break(Action::requeue(DEFER));
    }
    ControlFlow::Continue(())
}

/// The first policy before `name` (in name order) that matches this node and has not been
/// tried for its current generation here.
fn earlier_untried_policy<B: Backend>(
    ctx: &Context<B>,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    let mut earlier: Vec<_> = ctx
        .policies
        .state()
        .into_iter()
        .filter(|p| p.name_any().as_str() < name && p.metadata.deletion_timestamp.is_none())
        .collect();
    earlier.sort_by_key(|p| p.name_any());
    earlier.into_iter().find_map(|p| {
        let pname = p.name_any();
        if !selector::policy_matches_node(&p.spec, labels).unwrap_or(false) {
            return None;
        }
        let key = ObjectRef::new(&enactment_name(ctx.node_name(), &pname));
        let tried = ctx.enactments.get(&key).is_some_and(|e| {
            e.status
                .as_ref()
                .is_some_and(|s| s.policy_generation == p.metadata.generation)
        });
        (!tried).then_some(pname)
    })
}
