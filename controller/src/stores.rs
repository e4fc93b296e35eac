//! The reflector caches aggregation, cleanup and metrics read from, trimmed to what they
//! read, and the one flag that says they are all synced.

use k8s_openapi::api::core::v1::Node;
use knmstate_api::v1::NodeNetworkConfigurationPolicy;
use knmstate_api::v1beta1::{NodeNetworkConfigurationEnactment, NodeNetworkState};
use kube::Resource;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

/// The reflector caches aggregation, cleanup and metrics read from.
#[derive(Clone)]
pub struct Stores {
    /// NodeNetworkConfigurationPolicies.
    pub policies: Store<NodeNetworkConfigurationPolicy>,
    /// NodeNetworkConfigurationEnactments.
    pub enactments: Store<NodeNetworkConfigurationEnactment>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// NodeNetworkStates.
    pub states: Store<NodeNetworkState>,
    ready: watch::Receiver<bool>,
}

impl Stores {
    /// The caches, plus the future that marks them ready once every one holds a complete
    /// first listing; drive it alongside the reflectors.
    ///
    /// `Store::wait_until_ready` keeps a single waker (a oneshot underneath): two tasks
    /// waiting on it at once can lose a wake-up. Only that future waits on the stores; every
    /// other waiter watches the flag it sets.
    pub fn new(
        policies: Store<NodeNetworkConfigurationPolicy>,
        enactments: Store<NodeNetworkConfigurationEnactment>,
        nodes: Store<Node>,
        states: Store<NodeNetworkState>,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, ready) = watch::channel(false);
        let stores = Self {
            policies,
            enactments,
            nodes,
            states,
            ready,
        };
        let waiting = stores.clone();
        let mark = async move {
            let synced = waiting.policies.wait_until_ready().await.is_ok()
                && waiting.enactments.wait_until_ready().await.is_ok()
                && waiting.nodes.wait_until_ready().await.is_ok()
                && waiting.states.wait_until_ready().await.is_ok();
            if synced {
                let _ = tx.send(true);
            }
        };
        (stores, mark)
    }

    /// Wait until every cache holds a complete first listing; false if that can no longer
    /// happen (shutting down).
    pub async fn wait_ready(&self) -> bool {
        let mut rx = self.ready.clone();
        rx.wait_for(|r| *r).await.is_ok()
    }

    /// Whether every cache holds a complete first listing.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The enactments of one policy (by label, or by name when unlabelled).
    pub fn enactments_of(&self, policy: &str) -> Vec<NodeNetworkConfigurationEnactment> {
        self.enactments
            .state()
            .iter()
            .filter(|e| e.policy_name() == Some(policy))
            .map(|e| (**e).clone())
            .collect()
    }
}

/// Keep of a cached Node only what aggregation reads: name, UID, labels, creation time and
/// the `Ready` condition (images, addresses, annotations and managed fields can be large).
pub fn trim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    node.spec = None;
    if let Some(status) = node.status.take() {
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ == "Ready")
            .collect();
        node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            conditions: Some(ready),
            ..Default::default()
        });
    }
}

/// Keep of a cached enactment what aggregation, cleanup and metrics read: conditions,
/// generation, features and the apply report (not the rendered and captured states).
pub fn trim_enactment(nnce: &mut NodeNetworkConfigurationEnactment) {
    nnce.metadata.managed_fields = None;
    if let Some(s) = nnce.status.as_mut() {
        s.desired_state = None;
        s.desired_state_meta_info = None;
        s.captured_states.clear();
        s.retry_count.clear();
    }
}

/// Drop managed fields from a cached object.
pub fn trim_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use std::time::Duration;

    #[test]
    fn trimmed_caches_keep_what_aggregation_reads() {
        use k8s_openapi::api::core::v1::{ContainerImage, NodeCondition, NodeStatus};
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.labels = Some([("role".to_string(), "w".to_string())].into());
        n.status = Some(NodeStatus {
            conditions: Some(vec![
                NodeCondition {
                    type_: "MemoryPressure".into(),
                    status: "False".into(),
                    ..Default::default()
                },
                NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                },
            ]),
            images: Some(vec![ContainerImage::default()]),
            ..Default::default()
        });
        trim_node(&mut n);
        assert!(knmstate_state_engine::node::is_ready(&n));
        assert_eq!(
            n.metadata
                .labels
                .as_ref()
                .map(std::collections::BTreeMap::len),
            Some(1)
        );
        let status = n.status.unwrap_or_default();
        assert!(status.images.is_none());
        assert_eq!(status.conditions.map(|c| c.len()), Some(1));

        let mut e = NodeNetworkConfigurationEnactment::new("n1.p", Default::default());
        e.status = Some(
            knmstate_api::shared::NodeNetworkConfigurationEnactmentStatus {
                desired_state: Some(Default::default()),
                policy_generation: Some(3),
                features: vec!["f".into()],
                last_apply: Some(Default::default()),
                ..Default::default()
            },
        );
        trim_enactment(&mut e);
        let s = e.status.unwrap_or_default();
        assert!(s.desired_state.is_none());
        assert_eq!(s.policy_generation, Some(3));
        assert_eq!(s.features, ["f"]);
        assert!(s.last_apply.is_some());
    }

    #[tokio::test]
    async fn every_waiter_wakes_once_the_caches_are_ready() {
        let (p, mut pw) = reflector::store();
        let (e, mut ew) = reflector::store();
        let (n, mut nw) = reflector::store();
        let (s, mut sw) = reflector::store();
        let (stores, mark) = Stores::new(p, e, n, s);
        let mark = tokio::spawn(mark);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let s = stores.clone();
                tokio::spawn(async move { s.wait_ready().await })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(!stores.is_ready());
        pw.apply_watcher_event(&Event::InitDone);
        ew.apply_watcher_event(&Event::InitDone);
        nw.apply_watcher_event(&Event::InitDone);
        assert!(!stores.is_ready());
        sw.apply_watcher_event(&Event::InitDone);
        for w in waiters {
            let ready = tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("a waiter was never woken")
                .expect("waiter panicked");
            assert!(ready);
        }
        mark.await.expect("readiness task panicked");
        assert!(stores.is_ready());
    }
}
