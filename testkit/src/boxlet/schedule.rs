//! Which nodes a pod template may run on, as the scheduler and the DaemonSet controller
//! decide it: `nodeSelector`, taints against tolerations, required node affinity; preferred
//! node affinity ranks the nodes a Deployment's replicas go to. Pure.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

fn labels(node: &Node) -> std::collections::BTreeMap<String, String> {
    node.metadata.labels.clone().unwrap_or_default()
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let key_ok = match t.key.as_deref() {
        None | Some("") => t.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = t.operator.as_deref() == Some("Exists")
        || t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default();
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    key_ok && value_ok && effect_ok
}

fn requirement_holds(r: &NodeSelectorRequirement, node: &Node) -> bool {
    let labels = labels(node);
    let value = labels.get(&r.key);
    let values = r.values.clone().unwrap_or_default();
    let number = |v: Option<&String>| v.and_then(|v| v.parse::<i64>().ok());
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((number(value), number(values.first())), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((number(value), number(values.first())), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

fn term_holds(t: &NodeSelectorTerm, node: &Node) -> bool {
    t.match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_holds(r, node))
        && t.match_fields.iter().flatten().all(|r| {
            // The only field the scheduler supports: metadata.name.
            let named = Node {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: Some(
                        [(
                            r.key.clone(),
                            node.metadata.name.clone().unwrap_or_default(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                ..Default::default()
            };
            requirement_holds(r, &named)
        })
}

/// Whether a pod of `spec` may run on `node`: every `nodeSelector` label, every `NoSchedule` and
/// `NoExecute` taint tolerated, one term of the required node affinity (if any) holding.
pub fn fits(spec: &PodSpec, node: &Node) -> bool {
    let labels = labels(node);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let taints_ok = taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_holds(t, node)));
    selector_ok && taints_ok && affinity_ok
}

/// The sum of the weights of the preferred node-affinity terms `node` satisfies.
pub fn preference(spec: &PodSpec, node: &Node) -> i32 {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| term_holds(&p.preference, node))
        .map(|p| p.weight)
        .sum()
}

fn name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// The nodes a DaemonSet with this pod template runs a pod on (by name, sorted).
pub fn daemon_nodes(spec: &PodSpec, nodes: &[Node]) -> Vec<String> {
    let mut out: Vec<String> = nodes.iter().filter(|n| fits(spec, n)).map(name).collect();
    out.sort();
    out
}

/// The node of each of `replicas` Deployment pods: among the nodes that fit (and are not
/// cordoned), the ones the preferred affinity ranks highest, spread round-robin by host name
/// (the default topology spread); empty when no node fits.
pub fn replica_nodes(spec: &PodSpec, nodes: &[Node], replicas: usize) -> Vec<String> {
    let schedulable = |n: &&Node| {
        !n.spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    };
    let fitting: Vec<&Node> = nodes
        .iter()
        .filter(schedulable)
        .filter(|n| fits(spec, n))
        .collect();
    let Some(best) = fitting.iter().map(|n| preference(spec, n)).max() else {
        return Vec::new();
    };
    let mut top: Vec<String> = fitting
        .into_iter()
        .filter(|n| preference(spec, n) == best)
        .map(name)
        .collect();
    top.sort();
    (0..replicas).map(|i| top[i % top.len()].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSpec, PreferredSchedulingTerm};
    use serde_json::json;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        let mut n = crate::builders::node(name, labels);
        n.spec = Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: (*k).into(),
                        effect: (*e).into(),
                        ..Taint::default()
                    })
                    .collect(),
            ),
            ..NodeSpec::default()
        });
        n
    }

    fn spec(mut v: serde_json::Value) -> PodSpec {
        v["containers"] = json!([]);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_node_selector_routes_the_daemon_set() {
        let nodes = [
            node(
                "node1",
                &[("kubernetes.io/os", "linux"), ("role", "cp")],
                &[],
            ),
            node("node2", &[("kubernetes.io/os", "linux")], &[]),
        ];
        let s = spec(json!({"nodeSelector": {"kubernetes.io/os": "linux"}}));
        assert_eq!(daemon_nodes(&s, &nodes), ["node1", "node2"]);
        let s = spec(json!({"nodeSelector": {"role": "cp"}}));
        assert_eq!(daemon_nodes(&s, &nodes), ["node1"]);
    }

    #[test]
    fn an_untolerated_taint_keeps_a_pod_off_the_node() {
        let n = node(
            "node1",
            &[],
            &[("node-role.kubernetes.io/control-plane", "NoSchedule")],
        );
        assert!(!fits(&spec(json!({})), &n));
        let exists = spec(json!({"tolerations": [{"operator": "Exists"}]}));
        assert!(fits(&exists, &n));
        let keyed = spec(
            json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert!(fits(&keyed, &n));
        let other = spec(json!({"tolerations": [{"key": "other", "operator": "Exists"}]}));
        assert!(!fits(&other, &n));
        let prefer = node("node2", &[], &[("x", "PreferNoSchedule")]);
        assert!(fits(&spec(json!({})), &prefer));
    }

    #[test]
    fn required_affinity_needs_one_term() {
        let n = node("node1", &[("zone", "a")], &[]);
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                                  {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]}}}}),
        );
        assert!(fits(&s, &n));
        let s = spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}),
        );
        assert!(!fits(&s, &n));
    }

    #[test]
    fn replicas_go_to_the_preferred_nodes_spread_by_name() {
        let nodes = [
            node("node1", &[("cp", "")], &[]),
            node("node2", &[], &[]),
            node("node3", &[("cp", "")], &[]),
        ];
        let mut s = spec(json!({}));
        s.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 10,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "cp".into(),
                                operator: "Exists".into(),
                                values: None,
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                required_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        });
        assert_eq!(replica_nodes(&s, &nodes, 3), ["node1", "node3", "node1"]);
        assert!(replica_nodes(&spec(json!({"nodeSelector": {"none": "x"}})), &nodes, 2).is_empty());
    }
}
