//! Argument handling, plan selection and the status view, pure (no cluster, no binary).

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use knmstate_api::names::{enactment as e, policy as p};
use knmstate_api::shared::{
    ApplyReport, DriftReport, EnactmentPlan, NodeNetworkConfigurationEnactmentStatus, ProbeReport,
};
use knmstate_api::{ConditionList, ConditionStatus};
use knmstate_testkit::builders;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::plan::{Fleet, Focus, Options, plan_policy};
use super::status::{progress_bar, text, view};
use super::*;

fn parse(args: &[&str]) -> Result<Args, clap::Error> {
    Args::try_parse_from(std::iter::once("kubectl-nmstate").chain(args.iter().copied()))
}

#[test]
fn arguments_are_checked_before_anything_runs() {
    assert!(parse(&["validate"]).is_err(), "validate needs files");
    assert!(parse(&["plan", "p", "--node", "n1", "--selector", "a=b"]).is_err());
    assert!(parse(&["plan", "p", "-o", "xml"]).is_err());
    let Command::Plan(plan) = parse(&[
        "plan", "p", "-l", "a=b, c=d", "--state", "s.yaml", "-o", "json",
    ])
    .unwrap()
    .command
    else {
        panic!("a plan command");
    };
    assert_eq!(plan.output, Format::Json);
    assert_eq!(plan.states, [PathBuf::from("s.yaml")]);
    let focus = plan.options().unwrap().focus;
    let want = [("a", "b"), ("c", "d")].map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(focus, Focus::Labels(want.into_iter().collect()));
    let Command::Status(status) = parse(&["status", "p", "-w"]).unwrap().command else {
        panic!("a status command");
    };
    assert!(status.watch && status.output == Format::Text);
}

#[test]
fn selectors_are_key_value_lists() {
    assert_eq!(parse_selector("a=b").unwrap().len(), 1);
    assert_eq!(parse_selector("a=").unwrap()["a"], "");
    for bad in ["a", "=b", "a=b,c"] {
        assert_eq!(
            parse_selector(bad).unwrap_err().category(),
            "parse-selector",
            "{bad}"
        );
    }
}

fn fleet() -> Fleet {
    let state = json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}]});
    Fleet {
        nodes: vec![
            builders::node("n1", &[("net", "a")]),
            builders::node("n2", &[]),
            builders::node("n3", &[("net", "a")]),
        ],
        states: [("n1", &state), ("n2", &state)]
            .into_iter()
            .map(|(n, s)| (n.to_owned(), s.clone()))
            .collect(),
        captures: Default::default(),
    }
}

fn options(focus: Focus) -> Options {
    Options {
        focus,
        bridge_vlan_filtering: true,
        handler: super::settings::HandlerSettings::defaults("test"),
    }
}

#[test]
fn plans_count_selected_nodes_with_a_handler_and_show_the_focus() {
    let policy = builders::policy("p", &[("net", "a")], builders::bridge_state("br1"));
    let all = plan_policy(&policy, &fleet(), &options(Focus::Selected)).unwrap();
    assert_eq!(all.selected_nodes, ["n1"]);
    assert_eq!(all.without_handler, ["n3"]);
    assert_eq!(
        (all.max_unavailable.as_str(), all.at_once, all.rounds),
        ("50%", 1, 1)
    );
    assert_eq!(all.nodes.len(), 1);
    let one = plan_policy(&policy, &fleet(), &options(Focus::Node("n2".into()))).unwrap();
    assert!(!one.nodes[0].selected);
    assert!(one.nodes[0].plan.is_some());
    let missing = plan_policy(&policy, &fleet(), &options(Focus::Node("n3".into()))).unwrap();
    assert!(
        missing.nodes[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no NodeNetworkState")
    );
    let mut offline = fleet();
    offline.nodes.clear();
    let labels = Focus::Labels([("net".to_owned(), "a".to_owned())].into());
    let err = plan_policy(&policy, &offline, &options(labels)).unwrap_err();
    assert_eq!(err.category(), "select-nodes");
    let assumed = plan_policy(&policy, &offline, &options(Focus::Selected)).unwrap();
    assert_eq!(assumed.selected_nodes, ["n1", "n2"]);
    assert!(!assumed.labels_known);
}

fn conditions(active: &str, reason: &str, at: i64) -> ConditionList {
    let mut l = ConditionList::default();
    for t in e::TYPES {
        let s = if t == active {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        l.set(
            t,
            s,
            if t == active { reason } else { "" },
            "",
            builders::at(at),
        );
    }
    l
}

#[test]
fn the_status_view_lays_out_every_node_on_one_screen() {
    let mut policy = builders::policy("p", &[], builders::bridge_state("br1"));
    policy.metadata.generation = Some(2);
    let mut pol_status = knmstate_api::shared::NodeNetworkConfigurationPolicyStatus::default();
    pol_status.conditions.set(
        p::PROGRESSING,
        ConditionStatus::True,
        p::REASON_PROGRESSING,
        "",
        builders::at(0),
    );
    policy.status = Some(pol_status);
    let mut done = builders::enactment("n1", "p");
    done.status = Some(NodeNetworkConfigurationEnactmentStatus {
        policy_generation: Some(2),
        conditions: conditions(e::AVAILABLE, e::REASON_SUCCESS, 10),
        last_apply: Some(ApplyReport {
            duration_seconds: 2.5,
            probes: vec![ProbeReport {
                name: "dns".into(),
                succeeded: true,
                duration_seconds: 0.1,
                message: String::new(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut waiting = builders::enactment("n2", "p");
    waiting.status = Some(NodeNetworkConfigurationEnactmentStatus {
        policy_generation: Some(2),
        conditions: conditions(e::PENDING, e::REASON_MAX_UNAVAILABLE, 40),
        ..Default::default()
    });
    let now = Timestamp::from_second(100).unwrap();
    let v = view(&policy, &[waiting, done], now);
    assert_eq!((v.done, v.total, v.settled), (1, 2, false));
    assert_eq!(v.nodes[0].node, "n1");
    assert_eq!(v.nodes[0].for_seconds, Some(90.0));
    let want = "Policy p (generation 2): Progressing / ConfigurationProgressing\n\
        [###############---------------] 1/2 nodes done\n\
        NODE  GEN  CONDITION  REASON                      FOR    APPLY  PROBES    ROLLBACK\n\
        n1    2    Available  SuccessfullyConfigured      1m30s  2s     all 1 ok  -\n\
        n2    2    Pending    MaxUnavailableLimitReached  1m0s   -      -         -\n";
    assert_eq!(text(&v), want);
}

#[test]
fn status_fields_it_does_not_lay_out_are_still_shown() {
    let status =
        json!({"conditions": [], "policyGeneration": 1, "drift": {}, "newField": {"a": 1}});
    let other = super::status::other_fields(&status);
    assert_eq!(other.keys().collect::<Vec<_>>(), ["newField"]);
    let policy = builders::policy("p", &[], builders::bridge_state("br1"));
    let mut en = builders::enactment("n1", "p");
    en.status = Some(NodeNetworkConfigurationEnactmentStatus {
        plan: Some(EnactmentPlan {
            summary: vec!["interface br1 (linux-bridge): create".into()],
            probes: vec!["api-server".into()],
            ..Default::default()
        }),
        drift: Some(DriftReport {
            paths: vec!["interfaces[br1].bridge.port".into()],
            reapply: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut v = view(&policy, &[en], Timestamp::from_second(0).unwrap());
    assert_eq!(v.nodes[0].condition, "Unknown");
    v.nodes[0].other = other;
    let t = text(&v);
    for line in [
        "n1 plan: interface br1 (linux-bridge): create\n",
        "n1 plan probes: api-server\n",
        "n1 drifted (re-applying): interfaces[br1].bridge.port\n",
        "n1 newField: {\"a\":1}\n",
    ] {
        assert!(t.contains(line), "{line} in {t}");
    }
}

#[test]
fn the_progress_bar_fills_with_done_nodes() {
    assert_eq!(progress_bar(0, 4, 8), "[--------] 0/4 nodes done");
    assert_eq!(progress_bar(3, 4, 8), "[######--] 3/4 nodes done");
    assert_eq!(progress_bar(0, 0, 4), "[####] 0/0 nodes done");
}
