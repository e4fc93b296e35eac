//! A table of conformance cases per verb, each a short sequence of raw API requests with the
//! expected HTTP code and fields of the answer.

mod common;

use std::time::Duration;

use common::steps::*;
use rstest::rstest;
use serde_json::json;

#[rstest]
#[case::get_missing_is_a_not_found_status(vec![
    get(&format!("{W}/nope")).code(404).has("/kind", json!("Status")).has("/reason", json!("NotFound")),
])]
#[case::create_twice_is_already_exists(vec![
    post(W, widget("a", json!({"size": 1}))).has("/metadata/generation", json!(1)).has("/spec/color", json!("blue")),
    post(W, widget("a", json!({"size": 1}))).code(409).has("/reason", json!("AlreadyExists")),
])]
#[case::create_in_a_missing_namespace(vec![
    post("/apis/example.com/v1/namespaces/nowhere/widgets", widget("a", json!({"size": 1}))).code(404),
])]
#[case::create_with_generate_name(vec![
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"generateName": "w-"}, "spec": {"size": 1}})),
])]
#[case::schema_violation_is_invalid(vec![
    post(W, widget("a", json!({"size": "big"}))).code(422).has("/reason", json!("Invalid")),
    post(W, widget("a", json!({}))).code(422),
])]
#[case::unknown_fields_are_pruned(vec![
    post(W, widget("a", json!({"size": 1, "junk": true}))).lacks("/spec/junk"),
])]
#[case::update_with_stale_resource_version_conflicts(vec![
    post(W, widget("a", json!({"size": 1}))),
    put(&format!("{W}/a"), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"size": 2}}))
        .code(409).has("/reason", json!("Conflict")),
    put(&format!("{W}/a"), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "resourceVersion": "$rv0"}, "spec": {"size": 2}}))
        .has("/metadata/generation", json!(2)),
    put(&format!("{W}/a"), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"}, "spec": {"size": 3}}))
        .has("/spec/size", json!(3)),
])]
#[case::malformed_bodies_are_bad_requests(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a"), MERGE, json!("not an object")).code(400),
    put(&format!("{W}/a"), json!([1, 2])).code(400),
    post(W, json!(7)).code(400),
    post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "odd"}, "spec": "x"})),
    get(&format!("{W}/a")).has("/spec/size", json!(1)),
])]
#[case::update_of_a_missing_object_is_not_found(vec![
    put(&format!("{W}/a"), widget("a", json!({"size": 1}))).code(404),
])]
#[case::generation_moves_only_on_spec_changes(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a"), MERGE, json!({"metadata": {"labels": {"x": "y"}}})).has("/metadata/generation", json!(1)),
    patch(&format!("{W}/a"), MERGE, json!({"spec": {"size": 2}})).has("/metadata/generation", json!(2)),
    patch(&format!("{W}/a/status"), MERGE, json!({"status": {"observedGeneration": 2}})).has("/metadata/generation", json!(2)),
])]
#[case::status_subresource_rules(vec![
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"}, "spec": {"size": 1}, "status": {"observedGeneration": 9}}))
        .lacks("/status"),
    patch(&format!("{W}/a"), MERGE, json!({"status": {"observedGeneration": 5}})).lacks("/status"),
    patch(&format!("{W}/a/status"), MERGE, json!({"spec": {"size": 7}, "metadata": {"labels": {"l": "v"}}, "status": {"observedGeneration": 5}}))
        .has("/spec/size", json!(1)).has("/status/observedGeneration", json!(5)).lacks("/metadata/labels"),
    get(&format!("{W}/a/status")).has("/status/observedGeneration", json!(5)),
])]
#[case::no_op_update_keeps_the_resource_version(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a"), MERGE, json!({"spec": {"size": 1}})).has("/metadata/resourceVersion", json!("$rv0")),
])]
#[case::json_patch_and_failed_test_op(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a"), JSONP, json!([{"op": "replace", "path": "/spec/size", "value": 4}])).has("/spec/size", json!(4)),
    patch(&format!("{W}/a"), JSONP, json!([{"op": "test", "path": "/spec/size", "value": 5}])).code(422),
])]
#[case::merge_patch_with_stale_resource_version_conflicts(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a"), MERGE, json!({"metadata": {"resourceVersion": "1"}, "spec": {"size": 2}})).code(409),
])]
#[case::strategic_merge_on_builtins_and_custom(vec![
    post(CM, cm("c", &json!({}))),
    patch(&format!("{CM}/c"), SMP, json!({"data": {"b": "2"}})).has("/data/a", json!("1")).has("/data/b", json!("2")),
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a"), SMP, json!({"spec": {"size": 6}})).has("/spec/size", json!(6)),
])]
#[case::server_side_apply_conflicts_and_force(vec![
    patch(&format!("{W}/a?fieldManager=alice"), APPLY, widget("a", json!({"size": 1, "color": "red"}))).code(201),
    patch(&format!("{W}/a?fieldManager=bob"), APPLY, widget("a", json!({"size": 2}))).code(409)
        .has("/reason", json!("Conflict")).has("/details/causes/0/field", json!(".spec.size")),
    patch(&format!("{W}/a?fieldManager=bob"), APPLY, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a?fieldManager=bob&force=true"), APPLY, widget("a", json!({"size": 2}))).has("/spec/size", json!(2)),
    // alice no longer applies the colour: it is removed, and the schema default comes back.
    patch(&format!("{W}/a?fieldManager=alice"), APPLY, widget("a", json!({"size": 2}))).has("/spec/color", json!("blue")),
    patch(&format!("{W}/a"), APPLY, widget("a", json!({"size": 3}))).code(422),
])]
#[case::apply_to_status(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a/status?fieldManager=ctl"), APPLY, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
        .has("/status/conditions/0/type", json!("Ready")).has("/metadata/generation", json!(1)),
])]
#[case::apply_shares_keyed_list_items_between_managers(vec![
    post(W, widget("a", json!({"size": 1}))),
    patch(&format!("{W}/a/status?fieldManager=one"), APPLY, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    patch(&format!("{W}/a/status?fieldManager=two"), APPLY, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
        "status": {"conditions": [{"type": "Degraded", "status": "False"}]}}))
        .has("/status/conditions/0/type", json!("Ready")).has("/status/conditions/1/type", json!("Degraded")),
    patch(&format!("{W}/a/status?fieldManager=two"), APPLY, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}}))
        .code(409).has("/details/causes/0/field", json!(".status.conditions[type=\"Ready\"].status")),
    patch(&format!("{W}/a/status?fieldManager=one"), APPLY, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
        "status": {"conditions": []}}))
        .has("/status/conditions/0/type", json!("Degraded")).lacks("/status/conditions/1"),
])]
#[case::list_with_selectors_and_pages(vec![
    post(CM, cm("x", &json!({"metadata": {"labels": {"app": "web", "tier": "front"}}}))),
    post(CM, cm("y", &json!({"metadata": {"labels": {"app": "db"}}}))),
    post(CM, cm("z", &json!({}))),
    get(&format!("{CM}?labelSelector=app%3Dweb")).has("/items/0/metadata/name", json!("x")).lacks("/items/1"),
    get(&format!("{CM}?labelSelector=app%20in%20(web,db),tier!%3Dfront")).has("/items/0/metadata/name", json!("y")).lacks("/items/1"),
    get(&format!("{CM}?labelSelector=!app")).has("/items/0/metadata/name", json!("z")).lacks("/items/1"),
    get(&format!("{CM}?fieldSelector=metadata.name%3Dy")).has("/items/0/metadata/name", json!("y")).lacks("/items/1"),
    get(&format!("{CM}?limit=2")).has("/metadata/remainingItemCount", json!(1)).lacks("/items/2"),
    get("/api/v1/configmaps").has("/kind", json!("ConfigMapList")),
])]
#[case::table_output_has_printer_columns(vec![
    post(W, widget("a", json!({"size": 1}))),
    get(W).accept(TABLE).has("/kind", json!("Table")).has("/columnDefinitions/1/name", json!("Size"))
        .has("/rows/0/cells/0", json!("a")).has("/rows/0/cells/1", json!(1)),
])]
#[case::delete_collection_with_a_selector(vec![
    post(CM, cm("x", &json!({"metadata": {"labels": {"app": "web"}}}))),
    post(CM, cm("y", &json!({"metadata": {"labels": {"app": "web"}}}))),
    post(CM, cm("z", &json!({}))),
    delete(&format!("{CM}?labelSelector=app%3Dweb")).has("/items/1/metadata/name", json!("y")),
    get(CM).has("/items/0/metadata/name", json!("z")).lacks("/items/1"),
])]
#[case::replace_status(vec![
    post(W, widget("a", json!({"size": 1}))),
    put(&format!("{W}/a/status"), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "resourceVersion": "$rv0"},
        "spec": {"size": 99}, "status": {"observedGeneration": 1}}))
        .has("/status/observedGeneration", json!(1)).has("/spec/size", json!(1)),
    put(&format!("{W}/a/status"), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "resourceVersion": "$rv0"},
        "status": {"observedGeneration": 2}})).code(409),
    get(&format!("{W}/a/scale")).code(404),
])]
#[case::delete_is_blocked_by_finalizers(vec![
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a", "finalizers": ["example.com/hold"]}, "spec": {"size": 1}})),
    delete(&format!("{W}/a")),
    get(&format!("{W}/a")).has("/metadata/finalizers/0", json!("example.com/hold")).has("/metadata/deletionGracePeriodSeconds", json!(0)),
    patch(&format!("{W}/a"), MERGE, json!({"metadata": {"finalizers": null}})),
    get(&format!("{W}/a")).code(404),
])]
#[case::delete_preconditions(vec![
    post(W, widget("a", json!({"size": 1}))),
    step("DELETE", &format!("{W}/a"), Some(json!({"preconditions": {"resourceVersion": "1"}}))).code(409),
    step("DELETE", &format!("{W}/a"), Some(json!({"preconditions": {"uid": "$uid0"}}))),
    delete(&format!("{W}/a")).code(404),
])]
#[case::owner_reference_cascade(vec![
    post(CM, cm("owner", &json!({}))),
    post(CM, cm("other", &json!({}))),
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 1}, "metadata": {"name": "child",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "$uid0"}]}})),
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 1}, "metadata": {"name": "two-owners",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "$uid0"},
                            {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "$uid1"}]}})),
    delete(&format!("{CM}/owner")),
    get(&format!("{W}/child")).code(404).eventually(),
    get(&format!("{W}/two-owners")),
])]
#[case::foreground_deletion_waits_for_dependents(vec![
    post(CM, cm("owner", &json!({}))),
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 1}, "metadata": {"name": "child",
        "finalizers": ["example.com/hold"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "$uid0", "blockOwnerDeletion": true}]}})),
    step("DELETE", &format!("{CM}/owner"), Some(json!({"propagationPolicy": "Foreground"})))
        .has("/metadata/finalizers/0", json!("foregroundDeletion")),
    get(&format!("{W}/child")).has("/metadata/finalizers/0", json!("example.com/hold")).eventually(),
    get(&format!("{CM}/owner")).has("/metadata/finalizers/0", json!("foregroundDeletion")),
    patch(&format!("{W}/child"), MERGE, json!({"metadata": {"finalizers": null}})),
    get(&format!("{CM}/owner")).code(404).eventually(),
])]
#[case::orphan_propagation_keeps_dependents(vec![
    post(CM, cm("owner", &json!({}))),
    post(W, json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"size": 1}, "metadata": {"name": "child",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "$uid0"}]}})),
    step("DELETE", &format!("{CM}/owner"), Some(json!({"propagationPolicy": "Orphan"}))),
    get(&format!("{W}/child")).lacks("/metadata/ownerReferences"),
])]
#[case::namespace_deletion_removes_its_content(vec![
    post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gone"}})),
    post("/api/v1/namespaces/gone/configmaps", cm("c", &json!({}))),
    delete("/api/v1/namespaces/gone").has("/status/phase", json!("Terminating")),
    get("/api/v1/namespaces/gone/configmaps/c").code(404).eventually(),
    get("/api/v1/namespaces/gone").code(404).eventually(),
])]
#[case::discovery(vec![
    get("/version").has("/major", json!("1")),
    get("/api").has("/versions/0", json!("v1")),
    get("/apis/example.com").has("/preferredVersion/version", json!("v1")),
    get("/apis/example.com/v1").has("/resources/0/name", json!("widgets")).has("/resources/1/name", json!("widgets/status"))
        .has("/resources/0/shortNames/0", json!("wd")),
    get("/apis/example.com/v2").code(404),
    get("/api/v1/namespaces/default/nothings").code(404),
])]
#[case::cluster_scoped_paths(vec![
    post("/api/v1/nodes", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})),
    patch("/api/v1/nodes/n1/status", MERGE, json!({"status": {"phase": "Running"}})).has("/status/phase", json!("Running")),
    get("/api/v1/namespaces/default/nodes/n1").code(404),
    post("/apis/coordination.k8s.io/v1/namespaces/default/leases", json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}})),
])]
#[case::crd_served_at_every_version_and_deleted_with_its_objects(vec![
    post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", gadget_crd())
        .has("/status/conditions/1/type", json!("Established")).has("/status/storedVersions/0", json!("v1")),
    post("/apis/example.com/v1beta1/gadgets", gadget("v1beta1", json!("http"))).has("/apiVersion", json!("example.com/v1beta1")),
    get("/apis/example.com/v1/gadgets/g").has("/apiVersion", json!("example.com/v1")).has("/spec/port", json!("http")),
    post("/apis/example.com/v1/gadgets", gadget("v1", json!(true))).code(422),
    put("/apis/example.com/v1/gadgets/g", gadget("v1", json!(8080))).has("/spec/port", json!(8080)),
    get("/apis/example.com/v1/namespaces/default/gadgets/g").code(404),
    get("/apis/example.com").has("/versions/0/version", json!("v1")).has("/versions/1/version", json!("v1beta1")),
    // CEL rules, transition rules included.
    patch("/apis/example.com/v1/gadgets/g", MERGE, json!({"spec": {"label": "forbidden"}})).code(422)
        .has("/message", json!("Gadget.example.com \"g\" is invalid: spec: Invalid value: label is forbidden")),
    put("/apis/example.com/v1/gadgets/g", json!({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"port": 1, "label": "x"}})),
    patch("/apis/example.com/v1/gadgets/g", MERGE, json!({"spec": {"label": "y"}})).code(422),
    patch("/apis/example.com/v1/gadgets/g", MERGE, json!({"spec": {"port": 2}})).has("/spec/label", json!("x")),
    delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"),
    get("/apis/example.com/v1/gadgets/g").code(404),
    get("/apis/example.com/v1beta1").code(404),
])]
#[case::watch_from_a_version(vec![
    post(CM, cm("a", &json!({}))),
    patch(&format!("{CM}/a"), MERGE, json!({"data": {"a": "2"}})),
    watch(&format!("{CM}?watch=true&resourceVersion=$rv0")).has("/type", json!("MODIFIED")).has("/object/data/a", json!("2")),
    watch(&format!("{CM}?watch=true")).has("/type", json!("ADDED")),
    watch(&format!("{CM}?watch=true&resourceVersion=$rv1&allowWatchBookmarks=true")).has("/type", json!("BOOKMARK")),
])]
#[case::watch_from_an_expired_version_is_gone(
    (0..(WINDOW + 2)).map(|i| post(CM, cm(&format!("c{i}"), &json!({})))).chain([
        watch(&format!("{CM}?watch=true&resourceVersion=$rv0")).has("/type", json!("ERROR"))
            .has("/object/code", json!(410)).has("/object/reason", json!("Expired")),
    ]).collect()
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance(#[case] steps: Vec<Step>) {
    let server =
        knmstate_testkit::apiserver::ApiServer::start(knmstate_testkit::apiserver::Config {
            event_window: WINDOW,
            bookmark_interval: Duration::from_millis(200),
            ..Default::default()
        })
        .await
        .unwrap();
    let client = server.client().unwrap();
    common::install_widget_crd(&client).await;
    let mut answers = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(if s.eventually { 10 } else { 0 });
        let (code, v) = loop {
            let (code, v) = send(&client, s, &answers).await;
            if check(s, code, &v, &answers).is_ok() || tokio::time::Instant::now() >= deadline {
                break (code, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Err(e) = check(s, code, &v, &answers) {
            panic!("step {i} ({} {}): {e}", s.method, s.path);
        }
        answers.push(v);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn request_counters() {
    let server = common::server().await;
    let client = server.client().unwrap();
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), "default");
    for name in ["a", "b"] {
        let obj = serde_json::from_value(cm(name, &json!({}))).unwrap();
        api.create(&Default::default(), &obj).await.unwrap();
    }
    api.get("a").await.unwrap();
    api.list(&Default::default()).await.unwrap();
    let m = server.metrics();
    assert_eq!(m.count("create", "configmaps"), 2);
    assert_eq!(m.count("get", "configmaps"), 1);
    assert_eq!(m.count("list", "configmaps"), 1);
    assert_eq!(m.count_verb("create"), 2);
    let (code, _) = send(&client, &get("/metrics"), &[]).await;
    assert_eq!(code, 200);
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new()).unwrap())
        .await
        .unwrap();
    assert!(
        text.contains("apiserver_request_total{verb=\"create\",resource=\"configmaps\"} 2"),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn kube_discovery_sees_builtin_and_custom_kinds() {
    let server = common::server().await;
    let client = server.client().unwrap();
    common::install_widget_crd(&client).await;
    let discovery = kube::Discovery::new(client).run().await.unwrap();
    for (g, v, k, namespaced) in [
        ("example.com", "v1", "Widget", true),
        ("", "v1", "Node", false),
        ("coordination.k8s.io", "v1", "Lease", true),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            false,
        ),
    ] {
        let gvk = kube::core::GroupVersionKind::gvk(g, v, k);
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{k} not discovered"));
        assert_eq!(
            caps.scope == kube::discovery::Scope::Namespaced,
            namespaced,
            "{k}"
        );
        assert!(!ar.plural.is_empty());
    }
    server.shutdown().await;
}

/// Optimistic concurrency under contention: every get-modify-replace either wins or gets a 409
/// and retries, so no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replaces_lose_no_update() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let server = common::server().await;
    let client = server.client().unwrap();
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
    let obj = serde_json::from_value(json!({"metadata": {"name": "counter"}, "data": {"n": "0"}}))
        .unwrap();
    api.create(&Default::default(), &obj).await.unwrap();
    let (tasks, each) = (4_u64, 15_u64);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let api = api.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..each {
                loop {
                    let mut cm = api.get("counter").await.unwrap();
                    let data = cm.data.get_or_insert_default();
                    let n: u64 = data["n"].parse().unwrap();
                    data.insert("n".into(), (n + 1).to_string());
                    match api.replace("counter", &Default::default(), &cm).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.unwrap();
    }
    let cm = api.get("counter").await.unwrap();
    assert_eq!(
        cm.data.unwrap()["n"],
        (tasks * each).to_string(),
        "after {conflicts} conflicts"
    );
    assert_eq!(
        server.metrics().count("update", "configmaps"),
        tasks * each + conflicts
    );
    server.shutdown().await;
}
