//! `TokenReview`, `TokenRequest` (bound pod tokens and their node), `SubjectAccessReview` and its
//! self and local forms, through kube-rs' typed clients.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SubjectAccessReview,
};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use knmstate_testkit::apiserver::auth::Subject;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{NS, SA, SA_USER, api_error, create_in, server, service_account_client};

async fn review(admin: &kube::Client, token: &str, audiences: &[&str]) -> TokenReview {
    let tr =
        serde_json::from_value(json!({"spec": {"token": token, "audiences": audiences}})).unwrap();
    Api::<TokenReview>::all(admin.clone())
        .create(&PostParams::default(), &tr)
        .await
        .unwrap()
}

#[tokio::test]
async fn token_review_names_service_accounts_and_refuses_the_rest() {
    let server = server().await;
    let admin = server.client().unwrap();
    let token = server.token_for(Subject::ServiceAccount {
        namespace: NS.into(),
        name: SA.into(),
    });
    let status = review(&admin, &token, &[]).await.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    let user = status.user.unwrap();
    assert_eq!(user.username.as_deref(), Some(SA_USER));
    assert_eq!(
        user.groups.unwrap(),
        [
            "system:serviceaccounts",
            "system:serviceaccounts:nmstate",
            "system:authenticated"
        ]
    );
    assert!(!user.uid.unwrap().is_empty(), "the ServiceAccount's uid");
    let bad = review(&admin, "garbage", &[]).await.status.unwrap();
    assert_eq!(bad.authenticated, Some(false));
    assert_eq!(bad.error.as_deref(), Some("invalid bearer token"));
    let other = review(&admin, &token, &["prometheus"])
        .await
        .status
        .unwrap();
    assert_eq!(other.authenticated, Some(false));
    // Not every user may ask.
    let e = api_error(
        Api::<TokenReview>::all(service_account_client(&server))
            .create(&PostParams::default(), &TokenReview::default())
            .await,
    );
    assert_eq!(
        e.message,
        format!(
            "tokenreviews.authentication.k8s.io is forbidden: User \"{SA_USER}\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
        )
    );
}

#[tokio::test]
async fn a_token_bound_to_a_pod_carries_its_node() {
    let server = server().await;
    let admin = server.client().unwrap();
    let request: TokenRequest = serde_json::from_value(json!({"spec": {
        "audiences": [], "expirationSeconds": 3600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "handler-node2"}}}))
    .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);
    let answer = accounts
        .create_token_request(SA, &PostParams::default(), &request)
        .await
        .unwrap();
    let token = answer.status.unwrap().token.unwrap();
    let user = review(&admin, &token, &[])
        .await
        .status
        .unwrap()
        .user
        .unwrap();
    let extra = user.extra.unwrap();
    let node_uid = Api::<Node>::all(admin.clone())
        .get("node2")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    assert_eq!(extra["authentication.kubernetes.io/node-name"], ["node2"]);
    assert_eq!(extra["authentication.kubernetes.io/node-uid"], [node_uid]);
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        ["handler-node2"]
    );
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"].len(), 1);
    assert!(extra["authentication.kubernetes.io/credential-id"][0].starts_with("JTI="));
    // The same, minted in process.
    let pod = server.token_for(Subject::Pod(knmstate_testkit::apiserver::auth::BoundPod {
        namespace: NS.into(),
        service_account: SA.into(),
        pod_name: "handler-node2".into(),
        node_name: "node2".into(),
        ..Default::default()
    }));
    let user = review(&admin, &pod, &[])
        .await
        .status
        .unwrap()
        .user
        .unwrap();
    assert_eq!(
        user.extra.unwrap()["authentication.kubernetes.io/node-name"],
        ["node2"]
    );
    // A pod of another ServiceAccount, a missing pod, a too short lifetime.
    let e = api_error(
        accounts
            .create_token_request("default-missing", &PostParams::default(), &request)
            .await,
    );
    assert_eq!(e.code, 404);
    let short: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 60}}))
            .unwrap();
    let e = api_error(
        accounts
            .create_token_request(SA, &PostParams::default(), &short)
            .await,
    );
    assert_eq!(e.code, 422);
}

fn sar(spec: &serde_json::Value) -> SubjectAccessReview {
    serde_json::from_value(json!({"spec": spec})).unwrap()
}

#[tokio::test]
async fn subject_access_reviews_answer_for_resources_and_paths() {
    let server = server().await;
    let admin = server.client().unwrap();
    create_in::<Role>(&admin, NS,
        json!({"metadata": {"name": "pods-log"}, "rules": [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]}),
    )
    .await;
    create_in::<RoleBinding>(&admin, NS,
        json!({"metadata": {"name": "pods-log"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods-log"},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]}),
    )
    .await;
    let reviews: Api<SubjectAccessReview> = Api::all(admin.clone());
    let ask = |attrs: serde_json::Value| {
        let mut spec =
            json!({"user": SA_USER, "groups": ["system:serviceaccounts", "system:authenticated"]});
        spec.as_object_mut()
            .unwrap()
            .extend(attrs.as_object().unwrap().clone());
        let reviews = reviews.clone();
        async move {
            reviews
                .create(&PostParams::default(), &sar(&spec))
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    let yes = ask(json!({"resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods", "subresource": "log", "name": "p"}})).await;
    assert!(yes.allowed);
    assert_eq!(
        yes.reason.as_deref(),
        Some(
            "RBAC: allowed by RoleBinding \"pods-log/nmstate\" of Role \"pods-log\" to ServiceAccount \"nmstate-handler/nmstate\""
        )
    );
    let no = ask(json!({"resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods", "name": "p"}})).await;
    assert!(!no.allowed);
    let discovery =
        ask(json!({"nonResourceAttributes": {"verb": "get", "path": "/apis/nmstate.io"}})).await;
    assert!(discovery.allowed);
    let metrics = ask(json!({"nonResourceAttributes": {"verb": "get", "path": "/metrics"}})).await;
    assert!(!metrics.allowed);
    let e = api_error(
        reviews
            .create(&PostParams::default(), &sar(&json!({"user": "x"})))
            .await,
    );
    assert_eq!(e.code, 422);
    let e = api_error(
        reviews
            .create(
                &PostParams::default(),
                &sar(&json!({"resourceAttributes": {"verb": "get"}})),
            )
            .await,
    );
    assert!(
        e.message.contains("at least one of user or group"),
        "{}",
        e.message
    );
    // Asking about oneself, and locally.
    let sa = service_account_client(&server);
    let me: SelfSubjectAccessReview = serde_json::from_value(json!({"spec": {"resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods", "subresource": "log"}}})).unwrap();
    let mine = Api::<SelfSubjectAccessReview>::all(sa)
        .create(&PostParams::default(), &me)
        .await
        .unwrap();
    assert!(mine.status.unwrap().allowed);
    let local: LocalSubjectAccessReview = serde_json::from_value(json!({"metadata": {"namespace": NS}, "spec": {"user": SA_USER,
        "resourceAttributes": {"namespace": NS, "verb": "get", "resource": "pods", "subresource": "log"}}})).unwrap();
    let answer = Api::<LocalSubjectAccessReview>::namespaced(admin, NS)
        .create(&PostParams::default(), &local)
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
}
