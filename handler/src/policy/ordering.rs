//! When a policy may go ahead on this node: not before its retry backoff is over, and not
//! before every earlier policy (in name order) that matches this node was tried for its
//! generation, so a burst (startup, node label change) applies in name order.
//!
//! The wait for earlier policies is bounded by [`ORDER_WAIT`]: an earlier policy that stays
//! untried that long (its reconcile fails before its first status write, again and again)
//! no longer holds the later ones back; the later policy goes ahead with a warning naming it.

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

/// The longest a policy waits for earlier untried policies before going ahead.
pub const ORDER_WAIT: Duration = Duration::from_mins(1);

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
    let earlier = earlier_untried_policy(ctx, name, labels);
    let waited = {
        let mut since = ctx
            .rollout
            .waiting_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waited_for(&mut since, name, earlier.is_some(), Instant::now())
    };
    match earlier {
        Some(first) if waited < ORDER_WAIT => {
            tracing::debug!(policy = %name, earlier = %first, "an earlier policy goes first");
            ControlFlow::Break(Action::requeue(DEFER))
        }
        Some(first) => {
            tracing::warn!(policy = %name, earlier = %first, waited = ?waited,
                "going ahead: the earlier policy was not tried for its generation within the ordering bound");
            ControlFlow::Continue(())
        }
        None => ControlFlow::Continue(()),
    }
}

/// How long `name` has waited for earlier policies, remembering since when in `since`
/// (forgotten once nothing earlier is waited for).
fn waited_for(
    since: &mut std::collections::HashMap<String, Instant>,
    name: &str,
    waiting: bool,
    now: Instant,
) -> Duration {
    if !waiting {
        since.remove(name);
        return Duration::ZERO;
    }
    now.saturating_duration_since(*since.entry(name.to_owned()).or_insert(now))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_counted_from_its_start_and_forgotten_when_over() {
        let mut since = std::collections::HashMap::new();
        let t0 = Instant::now();
        assert_eq!(waited_for(&mut since, "b", true, t0), Duration::ZERO);
        let later = t0 + ORDER_WAIT + Duration::from_secs(1);
        assert!(waited_for(&mut since, "b", true, later) > ORDER_WAIT);
        assert_eq!(waited_for(&mut since, "b", false, later), Duration::ZERO);
        assert!(since.is_empty());
        assert_eq!(waited_for(&mut since, "b", true, later), Duration::ZERO);
    }
}
