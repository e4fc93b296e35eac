//! What a failed validation does: messages, reasons and codes, failure policies on errors,
//! `Warn` and `Audit`, and parameters.

use bytes::Bytes;
use http_body_util::BodyExt;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::common;
use crate::support::{binding, cm, create, denied, on_configmaps, policy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reasons_and_codes() {
    let server = common::server().await;
    let c = server.client().unwrap();
    policy(
        &c,
        "p",
        json!({
            "matchConstraints": on_configmaps(),
            "validations": [
                {"expression": "object.metadata.name != 'plain'"},
                {"expression": "object.metadata.name != 'fixed'", "message": "fixed message", "reason": "Forbidden"},
                {"expression": "object.metadata.name != 'computed'", "messageExpression": "'computed for ' + object.metadata.name", "message": "unused"},
                {"expression": "object.metadata.name != 'fallback'", "messageExpression": "object.data.missing", "message": "fallback message"},
                {"expression": "object.metadata.name != 'big'", "message": "too large", "reason": "RequestEntityTooLarge"},
            ],
        }),
    )
    .await;
    binding(&c, "b", "p", &["Deny"], json!({})).await;
    let cases = [
        (
            "plain",
            422,
            "Invalid",
            "failed expression: object.metadata.name != 'plain'",
        ),
        ("fixed", 403, "Forbidden", "fixed message"),
        ("computed", 422, "Invalid", "computed for computed"),
        ("fallback", 422, "Invalid", "fallback message"),
        ("big", 413, "RequestEntityTooLarge", "too large"),
    ];
    for (name, code, reason, message) in cases {
        let e = create(&c, "default", &cm(name, json!({}), json!({})))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            (code, reason.to_owned(), denied(name, message)),
            "{name}"
        );
    }
    create(&c, "default", &cm("fine", json!({}), json!({})))
        .await
        .expect("every validation holds");
}

/// A policy on config maps whose names start with `prefix`, with this failure policy, bound
/// by `<name>-b` with `Deny`.
async fn prefixed(
    c: &kube::Client,
    name: &str,
    failure: &str,
    prefix: &str,
    validations: serde_json::Value,
) {
    policy(
        c,
        name,
        json!({
            "failurePolicy": failure,
            "matchConstraints": on_configmaps(),
            "matchConditions": [{"name": "mine", "expression": format!("object.metadata.name.startsWith('{prefix}')")}],
            "validations": validations,
        }),
    )
    .await;
    binding(c, &format!("{name}-b"), name, &["Deny"], json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policy_on_errors_and_compilation_failures() {
    let server = common::server().await;
    let c = server.client().unwrap();
    let erring = json!([
        {"expression": "!object.metadata.name.endsWith('-eval') || object.data.missing == 'x'"},
        {"expression": "!object.metadata.name.endsWith('-authz') || authorizer.group('').resource('pods').check('get').allowed()"},
    ]);
    let uncompilable = json!([{"expression": "object.data.(", "message": "never"}]);
    prefixed(&c, "s", "Fail", "s-", erring.clone()).await;
    prefixed(&c, "l", "Ignore", "l-", erring).await;
    prefixed(&c, "cs", "Fail", "cs-", uncompilable.clone()).await;
    prefixed(&c, "cl", "Ignore", "cl-", uncompilable).await;
    let prefix = |policy: &str, name: &str| {
        format!(
            "configmaps \"{name}\" is forbidden: ValidatingAdmissionPolicy '{policy}' with binding '{policy}-b' denied request: "
        )
    };
    let e = create(&c, "default", &cm("s-eval", json!({}), json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.0, 422);
    assert!(
        e.2.starts_with(&format!("{}expression '!object.metadata.name.endsWith('-eval') || object.data.missing == 'x'' resulted in error: ", prefix("s", "s-eval"))),
        "{}",
        e.2
    );
    let e = create(&c, "default", &cm("s-authz", json!({}), json!({})))
        .await
        .unwrap_err();
    assert!(
        e.2.starts_with(&prefix("s", "s-authz")) && e.2.contains("resulted in error"),
        "{}",
        e.2
    );
    create(&c, "default", &cm("s-ok", json!({}), json!({})))
        .await
        .expect("no validation errs");
    let e = create(&c, "default", &cm("cs-any", json!({}), json!({})))
        .await
        .unwrap_err();
    assert!(
        e.2.starts_with(&format!(
            "{}expression 'object.data.(' resulted in error: compilation failed: ",
            prefix("cs", "cs-any")
        )),
        "{}",
        e.2
    );
    for name in ["l-eval", "l-authz", "cl-any"] {
        create(&c, "default", &cm(name, json!({}), json!({})))
            .await
            .expect(name);
    }
    // A matchCondition that cannot be evaluated follows the failure policy too.
    policy(
        &c,
        "broken-condition",
        json!({
            "matchConstraints": on_configmaps(),
            "matchConditions": [{"name": "bad", "expression": "object.metadata.name.startsWith('bc') && object.data.nope == 'x'"}],
            "validations": [{"expression": "true"}],
        }),
    )
    .await;
    binding(&c, "bc-b", "broken-condition", &["Deny"], json!({})).await;
    let e = create(&c, "default", &cm("bc1", json!({}), json!({})))
        .await
        .unwrap_err();
    assert!(e.2.contains("'broken-condition' with binding 'bc-b' denied request: matchCondition 'bad' resulted in error: "), "{}", e.2);
}

/// Creates a ConfigMap with a raw request; the answer's status and `Warning` headers.
async fn create_raw(c: &kube::Client, name: &str) -> (u16, Vec<String>) {
    let body = serde_json::to_vec(&cm(name, json!({}), json!({}))).unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .unwrap();
    let resp = c.send(req).await.expect("an answer");
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let status = resp.status().as_u16();
    let _: Bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, warnings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_and_audit_actions() {
    let server = common::server().await;
    let c = server.client().unwrap();
    policy(
        &c,
        "p",
        json!({"matchConstraints": on_configmaps(), "validations": [{"expression": "!object.metadata.name.startsWith('w')", "message": "names starting with w are discouraged"}]}),
    )
    .await;
    binding(&c, "warn", "p", &["Warn"], json!({})).await;
    binding(&c, "audit", "p", &["Audit"], json!({})).await;
    let (status, warnings) = create_raw(&c, "w1").await;
    assert_eq!(status, 201);
    assert_eq!(
        warnings,
        [
            "299 - \"Validation failed for ValidatingAdmissionPolicy 'p' with binding 'warn': names starting with w are discouraged\""
        ]
    );
    let (status, warnings) = create_raw(&c, "ok").await;
    assert_eq!((status, warnings.len()), (201, 0));
    binding(&c, "zdeny", "p", &["Deny", "Warn"], json!({})).await;
    let (status, _) = create_raw(&c, "w2").await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_by_name_and_selector() {
    let server = common::server().await;
    let c = server.client().unwrap();
    let spec = |matching: &str| {
        json!({
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
                                 "objectSelector": {"matchLabels": {"limited": matching}}},
            "validations": [{"expression": "int(object.data.size) <= int(params.data.max)",
                             "messageExpression": "'size ' + object.data.size + ' above ' + params.data.max + ' of ' + params.metadata.name"}],
        })
    };
    policy(&c, "p", spec("by-name")).await;
    binding(&c, "b", "p", &["Deny"], json!({"paramRef": {"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"}})).await;
    policy(&c, "q", spec("by-selector")).await;
    binding(&c, "qb", "q", &["Deny"], json!({"paramRef": {"selector": {"matchLabels": {"kind": "limit"}}, "parameterNotFoundAction": "Allow"}})).await;
    let by_name = |n: &str, size: &str| cm(n, json!({"limited": "by-name"}), json!({"size": size}));
    let by_sel =
        |n: &str, size: &str| cm(n, json!({"limited": "by-selector"}), json!({"size": size}));

    let e = create(&c, "default", &by_name("n1", "1"))
        .await
        .unwrap_err();
    assert_eq!(
        e.2,
        denied(
            "n1",
            "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
        )
    );
    create(&c, "default", &by_sel("s1", "100"))
        .await
        .expect("no parameters, Allow");

    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c.clone(), "default");
    for (n, max) in [("limits", "5"), ("limit-a", "10"), ("limit-b", "20")] {
        let labels = if n == "limits" {
            json!({})
        } else {
            json!({"kind": "limit"})
        };
        cms.create(&PostParams::default(), &cm(n, labels, json!({"max": max})))
            .await
            .unwrap();
    }
    create(&c, "default", &by_name("n2", "5"))
        .await
        .expect("within the limit");
    let e = create(&c, "default", &by_name("n3", "9"))
        .await
        .unwrap_err();
    assert_eq!(e.2, denied("n3", "size 9 above 5 of limits"));
    create(&c, "default", &by_sel("s2", "10"))
        .await
        .expect("within every selected limit");
    let e = create(&c, "default", &by_sel("s3", "15"))
        .await
        .unwrap_err();
    assert_eq!(
        e.2,
        "configmaps \"s3\" is forbidden: ValidatingAdmissionPolicy 'q' with binding 'qb' denied request: size 15 above 10 of limit-a"
    );
}
