//! What CEL sees: `object` and `oldObject` per operation, `request`, `namespaceObject`,
//! `variables`.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::common::{self, Widget, install_widget_crd, widget};
use crate::support::{
    binding, cm, cms, create, denied, deny_configmaps, on_configmaps, policy, refusal,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_and_old_object_per_operation() {
    let server = common::server().await;
    let c = server.client().unwrap();
    deny_configmaps(
        &c,
        &["CREATE", "UPDATE", "DELETE"],
        json!([
            {"expression": "request.operation != 'CREATE' || (oldObject == null && object.metadata.name == 'm')",
             "message": "create sees no old object"},
            {"expression": "request.operation != 'UPDATE' || int(oldObject.data.v) <= int(object.data.v)",
             "messageExpression": "'v may not go down from ' + oldObject.data.v + ' to ' + object.data.v"},
            {"expression": "request.operation != 'DELETE' || (object == null && oldObject.data.keep != 'yes')",
             "message": "kept"},
        ]),
    )
    .await;
    create(
        &c,
        "default",
        &cm("m", json!({}), json!({"v": "2", "keep": "yes"})),
    )
    .await
    .expect("create");
    let api = cms(&c, "default");
    let down = Patch::Merge(json!({"data": {"v": "1"}}));
    let e = api
        .patch("m", &PatchParams::default(), &down)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.2, denied("m", "v may not go down from 2 to 1"));
    let up = Patch::Merge(json!({"data": {"v": "3"}}));
    api.patch("m", &PatchParams::default(), &up)
        .await
        .expect("going up");
    let e = api
        .delete("m", &DeleteParams::default())
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e.2, denied("m", "kept"));
    let free = Patch::Merge(json!({"data": {"keep": "no"}}));
    api.patch("m", &PatchParams::default(), &free)
        .await
        .expect("release");
    api.delete("m", &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_namespace_object() {
    let server = common::server().await;
    let c = server.client().unwrap();
    deny_configmaps(
        &c,
        &["CREATE"],
        json!([{
            "expression": "false",
            "messageExpression": "request.operation + ' ' + request.kind.group + '/' + request.kind.version + '/' + request.kind.kind + ' ' + request.resource.resource + ' ' + request.namespace + '/' + request.name + ' sub=' + request.subResource + ' ns=' + namespaceObject.metadata.name + ' authenticated=' + ('system:authenticated' in request.userInfo.groups ? 'yes' : 'no') + ' user=' + (size(request.userInfo.username) > 0 ? 'named' : 'anonymous') + ' extra=' + string(size(request.userInfo.extra))",
        }]),
    )
    .await;
    let e = create(&c, "default", &cm("r", json!({}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        e.2,
        denied(
            "r",
            "CREATE /v1/ConfigMap configmaps default/r sub= ns=default authenticated=yes user=named extra=0"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subresource_writes_are_matched_by_their_own_rule() {
    let server = common::server().await;
    let c = server.client().unwrap();
    install_widget_crd(&c).await;
    policy(
        &c,
        "p",
        json!({
            "matchConstraints": {"resourceRules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["widgets/status"]}]},
            "validations": [{"expression": "!has(object.status.observedGeneration) || object.status.observedGeneration <= object.metadata.generation",
                             "messageExpression": "'observedGeneration ahead on ' + request.resource.resource + '/' + request.subResource"}],
        }),
    )
    .await;
    binding(&c, "b", "p", &["Deny"], json!({})).await;
    let api: Api<Widget> = Api::namespaced(c.clone(), "default");
    api.create(&Default::default(), &widget("w", 1))
        .await
        .unwrap();
    let ahead = Patch::Merge(json!({"status": {"observedGeneration": 7}}));
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .expect("main resource not matched");
    let e = api
        .patch_status("w", &PatchParams::default(), &ahead)
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(
        e.2,
        "widgets.example.com \"w\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: observedGeneration ahead on widgets/status"
    );
    let ok = Patch::Merge(json!({"status": {"observedGeneration": 2}}));
    api.patch_status("w", &PatchParams::default(), &ok)
        .await
        .expect("not ahead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_compose_and_fail_only_where_used() {
    let server = common::server().await;
    let c = server.client().unwrap();
    policy(
        &c,
        "p",
        json!({
            "matchConstraints": on_configmaps(),
            "variables": [
                {"name": "size", "expression": "int(object.data.size)"},
                {"name": "big", "expression": "variables.size > 10"},
                {"name": "owner", "expression": "object.data.owner"},
            ],
            "validations": [
                {"expression": "!variables.big", "messageExpression": "'size ' + string(variables.size) + ' is too big'"},
                {"expression": "object.metadata.name != 'owned' || variables.owner != ''", "message": "owner"},
            ],
        }),
    )
    .await;
    binding(&c, "b", "p", &["Deny"], json!({})).await;
    create(&c, "default", &cm("small", json!({}), json!({"size": "3"})))
        .await
        .expect("the unused broken variable does not matter");
    let e = create(
        &c,
        "default",
        &cm("large", json!({}), json!({"size": "30"})),
    )
    .await
    .unwrap_err();
    assert_eq!(e.2, denied("large", "size 30 is too big"));
    let e = create(&c, "default", &cm("owned", json!({}), json!({"size": "3"})))
        .await
        .unwrap_err();
    assert!(
        e.2.starts_with(&denied("owned", "expression 'object.metadata.name != 'owned' || variables.owner != ''' resulted in error: variable 'owner' resulted in error: ")),
        "{}",
        e.2
    );
}
