//! kube-runtime's reflector and Controller converge against the stand-in, also across a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Widget, WidgetCondition, WidgetStatus, install_widget_crd, widget};
use futures::StreamExt;
use knmstate_testkit::apiserver::{ApiServer, Config};
use knmstate_testkit::poll::eventually;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct ReconcileError(#[from] kube::Error);

async fn reconcile(w: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, ReconcileError> {
    let status = WidgetStatus {
        conditions: vec![WidgetCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some(format!("Size{}", w.spec.size)),
        }],
        observed_generation: w.metadata.generation,
    };
    let patch = serde_json::json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": w.name_any()},
        "status": status,
    });
    api.patch_status(
        &w.name_any(),
        &PatchParams::apply("widget-controller").force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<Api<Widget>>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn converged(api: &Api<Widget>, names: &[&str]) -> bool {
    let Ok(list) = api.list(&Default::default()).await else {
        return false;
    };
    names.iter().all(|n| {
        list.items.iter().any(|w| {
            w.name_any() == *n
                && w.status.as_ref().is_some_and(|s| {
                    s.observed_generation == w.metadata.generation
                        && s.conditions.first().and_then(|c| c.reason.clone())
                            == Some(format!("Size{}", w.spec.size))
                })
        })
    })
}

#[rstest::rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_and_reflector_converge_across_a_restart(#[values(false, true)] tls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.json");
    let config = Config {
        tls,
        data_file: Some(data.clone()),
        bookmark_interval: Duration::from_millis(500),
        ..Config::default()
    };
    let server = ApiServer::start(config.clone()).await.unwrap();
    let addr = server.addr();
    let client = server.client().unwrap();
    install_widget_crd(&client).await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    for (n, s) in [("a", 1), ("b", 2), ("c", 3)] {
        api.create(&PostParams::default(), &widget(n, s))
            .await
            .unwrap();
    }

    // reflector
    let (reader, writer) = reflector::store::<Widget>();
    let refl = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    )
    .applied_objects()
    .for_each(|_| async {});
    let refl = tokio::spawn(refl);

    // controller
    let shared = Arc::new(api.clone());
    let ctrl = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, error_policy, shared)
        .for_each(|_| async {});
    let ctrl = tokio::spawn(ctrl);

    eventually("a, b and c converged", Duration::from_secs(20), || {
        converged(&api, &["a", "b", "c"])
    })
    .await
    .unwrap();
    let names = |r: &reflector::Store<Widget>| {
        let mut v: Vec<String> = r.state().iter().map(|w| w.name_any()).collect();
        v.sort();
        v
    };
    eventually("a, b and c reflected", Duration::from_secs(10), || async {
        names(&reader) == ["a", "b", "c"]
    })
    .await
    .unwrap();

    // A spec change bumps generation; the controller follows.
    let before = api.get("b").await.unwrap();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"size": 20}})),
    )
    .await
    .unwrap();
    eventually("b converged", Duration::from_secs(20), || {
        converged(&api, &["b"])
    })
    .await
    .unwrap();
    let after = api.get("b").await.unwrap();
    assert_eq!(
        after.metadata.generation,
        Some(before.metadata.generation.unwrap() + 1)
    );
    api.delete("c", &DeleteParams::default()).await.unwrap();
    eventually("a and b reflected", Duration::from_secs(10), || async {
        names(&reader) == ["a", "b"]
    })
    .await
    .unwrap();
    let rv_before: u64 = server.store().resource_version();

    // Restart on the same address, from the data file.
    server.shutdown().await;
    let server = ApiServer::start(Config {
        listen: addr,
        ..config
    })
    .await
    .unwrap();
    assert!(
        server.store().resource_version() >= rv_before,
        "resourceVersion went backwards"
    );
    let kept = api.get("a").await.unwrap();
    assert!(kept.resource_version().unwrap().parse::<u64>().unwrap() <= rv_before);

    api.create(&PostParams::default(), &widget("d", 4))
        .await
        .unwrap();
    let new_rv: u64 = api
        .get("d")
        .await
        .unwrap()
        .resource_version()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        new_rv > rv_before,
        "new objects get newer resourceVersions after a restart"
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"size": 10}})),
    )
    .await
    .unwrap();
    eventually("a, b and d converged", Duration::from_secs(30), || {
        converged(&api, &["a", "b", "d"])
    })
    .await
    .unwrap();
    eventually("a, b and d reflected", Duration::from_secs(30), || async {
        names(&reader) == ["a", "b", "d"]
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: reflector after restart: {:?}", names(&reader)));
    assert!(server.metrics().count("watch", "widgets.example.com") >= 2);
    ctrl.abort();
    refl.abort();
    server.shutdown().await;
}

/// kube-runtime's event Recorder creates events.k8s.io/v1 Events, then patches their series.
#[tokio::test]
async fn event_recorder_creates_and_updates_events() {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::Resource;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = common::server().await;
    let client = server.client().unwrap();
    install_widget_crd(&client).await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let w = api
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    let reporter = Reporter {
        controller: "widget-controller".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ev = Event {
        type_: EventType::Normal,
        reason: "Configured".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&ev, &w.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &w.object_ref(&())).await.unwrap();
    let events: Api<K8sEvent> = Api::namespaced(client, "default");
    let list = events.list(&Default::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "{:?}", list.items);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Configured"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("a")
    );
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(server.metrics().count("patch", "events.events.k8s.io"), 1);
    server.shutdown().await;
}
