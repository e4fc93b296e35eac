//! Authentication (401) and each RBAC rule form (403 with Kubernetes' message) through kube-rs.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use knmstate_testkit::apiserver::auth::Subject;
use knmstate_testkit::apiserver::{ApiServer, Config};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{NS, SA, SA_USER, api_error, create, create_in, raw, server, service_account_client};

#[tokio::test]
async fn no_or_a_bad_token_is_unauthorized_with_kubernetes_status() {
    let server = server().await;
    let (code, body) = raw(&server, "GET", "/api/v1/namespaces").await;
    assert_eq!(code, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    assert_eq!(
        raw(&server, "GET", "/healthz").await.0,
        200,
        "health is public"
    );
    let forged = server.client_with_token("not-a-token").unwrap();
    let e = api_error(
        Api::<Namespace>::all(forged)
            .list(&ListParams::default())
            .await,
    );
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));
    // A ServiceAccount's token dies with the ServiceAccount.
    let sa = service_account_client(&server);
    Api::<ServiceAccount>::namespaced(server.client().unwrap(), NS)
        .delete(SA, &DeleteParams::default())
        .await
        .unwrap();
    let e = api_error(Api::<Node>::all(sa).get("node2").await);
    assert_eq!(e.code, 401);
}

#[tokio::test]
async fn without_enforcement_everything_runs_and_tokens_still_name_users() {
    let server = ApiServer::start(Config::default()).await.unwrap();
    let (code, _) = raw(&server, "GET", "/api/v1/namespaces").await;
    assert_eq!(code, 200);
    let alice = server.token_for(Subject::User {
        name: "alice".into(),
        groups: vec![],
    });
    let client = server.client_with_token(&alice).unwrap();
    create::<Namespace>(&client, json!({"metadata": {"name": "free"}})).await;
}

#[tokio::test]
async fn a_role_with_resource_names_allows_only_those_objects_in_its_namespace() {
    let server = server().await;
    let admin = server.client().unwrap();
    for (ns, name) in [(NS, "leader"), (NS, "other"), ("default", "leader")] {
        create_in::<Lease>(&admin, ns, json!({"metadata": {"name": name}})).await;
    }
    create_in::<Role>(&admin, NS,
        json!({"metadata": {"name": "leader"}, "rules": [{"apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"], "resourceNames": ["leader"], "verbs": ["get", "list", "watch", "update", "patch"]}]}),
    )
    .await;
    // A ServiceAccount subject without a namespace is in the binding's.
    create_in::<RoleBinding>(&admin, NS,
        json!({"metadata": {"name": "leader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader"},
            "subjects": [{"kind": "ServiceAccount", "name": SA}]}),
    )
    .await;
    let sa = service_account_client(&server);
    let leases: Api<Lease> = Api::namespaced(sa.clone(), NS);
    let patch = Patch::Merge(json!({"spec": {"holderIdentity": "me"}}));
    leases
        .patch("leader", &PatchParams::default(), &patch)
        .await
        .unwrap();
    // A list that selects the name by field is the named object's.
    let one = leases
        .list(&ListParams::default().fields("metadata.name=leader"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let e = api_error(leases.patch("other", &PatchParams::default(), &patch).await);
    assert_eq!(e.code, 403);
    assert_eq!(e.reason, "Forbidden");
    assert_eq!(
        e.message,
        format!(
            "leases.coordination.k8s.io \"other\" is forbidden: User \"{SA_USER}\" cannot patch resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"nmstate\""
        )
    );
    let e = api_error(leases.list(&ListParams::default()).await);
    assert_eq!(
        e.message,
        format!(
            "leases.coordination.k8s.io is forbidden: User \"{SA_USER}\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"nmstate\""
        )
    );
    let elsewhere: Api<Lease> = Api::namespaced(sa, "default");
    let e = api_error(elsewhere.get("leader").await);
    assert!(
        e.message.ends_with("in the namespace \"default\""),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn cluster_roles_match_groups_subresources_and_wildcards() {
    let server = server().await;
    let admin = server.client().unwrap();
    create::<ClusterRole>(
        &admin,
        json!({"metadata": {"name": "node-status"}, "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["patch"]}]}),
    )
    .await;
    create::<ClusterRoleBinding>(&admin,
        json!({"metadata": {"name": "node-status"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-status"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:nmstate"}]}),
    )
    .await;
    let nodes: Api<Node> = Api::all(service_account_client(&server));
    nodes.get("node3").await.unwrap();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}));
    nodes
        .patch_status("node3", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let e = api_error(nodes.patch("node3", &PatchParams::default(), &patch).await);
    assert_eq!(
        e.message,
        format!(
            "nodes \"node3\" is forbidden: User \"{SA_USER}\" cannot patch resource \"nodes\" in API group \"\" at the cluster scope"
        )
    );
    let e = api_error(nodes.list(&ListParams::default()).await);
    assert_eq!(
        e.message,
        format!(
            "nodes is forbidden: User \"{SA_USER}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        )
    );
}

#[tokio::test]
async fn a_role_binding_grants_a_cluster_role_in_its_namespace_only() {
    let server = server().await;
    let admin = server.client().unwrap();
    create::<ClusterRole>(&admin,
        json!({"metadata": {"name": "configmaps"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
    )
    .await;
    create_in::<RoleBinding>(&admin, NS,
        json!({"metadata": {"name": "configmaps"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]}),
    )
    .await;
    let sa = service_account_client(&server);
    let cm = json!({"metadata": {"name": "c"}});
    create_in::<ConfigMap>(&sa, NS, cm.clone()).await;
    Api::<ConfigMap>::namespaced(sa.clone(), NS)
        .delete("c", &DeleteParams::default())
        .await
        .unwrap();
    let e = api_error(
        Api::<ConfigMap>::namespaced(sa, "default")
            .create(&PostParams::default(), &serde_json::from_value(cm).unwrap())
            .await,
    );
    assert_eq!(
        e.message,
        format!(
            "configmaps is forbidden: User \"{SA_USER}\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
        )
    );
}

#[tokio::test]
async fn users_groups_masters_and_missing_roles() {
    let server = server().await;
    let admin = server.client().unwrap();
    create::<ClusterRole>(&admin,
        json!({"metadata": {"name": "viewer"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list"]}]}),
    )
    .await;
    create::<ClusterRoleBinding>(&admin,
        json!({"metadata": {"name": "devs"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "viewer"},
            "subjects": [{"kind": "Group", "name": "devs"}]}),
    )
    .await;
    create::<ClusterRoleBinding>(&admin,
        json!({"metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "alice"}]}),
    )
    .await;
    let user = |name: &str, groups: &[&str]| {
        let token = server.token_for(Subject::User {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        });
        server.client_with_token(&token).unwrap()
    };
    let alice = user("alice", &["devs"]);
    Api::<Namespace>::all(alice.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let e = api_error(
        Api::<Namespace>::all(alice)
            .delete("default", &DeleteParams::default())
            .await,
    );
    assert_eq!(
        e.message,
        "namespaces \"default\" is forbidden: User \"alice\" cannot delete resource \"namespaces\" in API group \"\" in the namespace \"default\": RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found"
    );
    let root = user("root", &["system:masters"]);
    create::<Namespace>(&root, json!({"metadata": {"name": "mine"}})).await;
}

#[tokio::test]
async fn non_resource_urls_are_authorized_by_path() {
    let server = server().await;
    let sa = service_account_client(&server);
    let get = |path: &str| http::Request::get(path).body(Vec::<u8>::new()).unwrap();
    let e = api_error(sa.request_text(get("/metrics")).await);
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        format!("forbidden: User \"{SA_USER}\" cannot get path \"/metrics\"")
    );
    sa.request_text(get("/version")).await.unwrap();
    let admin = server.client().unwrap();
    create::<ClusterRole>(&admin,
        json!({"metadata": {"name": "scraper"}, "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]}),
    )
    .await;
    create::<ClusterRoleBinding>(&admin,
        json!({"metadata": {"name": "scraper"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "scraper"},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]}),
    )
    .await;
    let text = sa.request_text(get("/metrics")).await.unwrap();
    assert!(text.contains("apiserver_request_total"), "{text}");
}
