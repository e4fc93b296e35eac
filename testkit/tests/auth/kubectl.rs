//! The real `kubectl` against a stand-in that enforces authentication and RBAC: `auth can-i`,
//! `auth whoami`, `create token`, a forbidden `get` and an unauthorized one.

use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use knmstate_testkit::apiserver::ApiServer;
use knmstate_testkit::apiserver::auth::Subject;
use serde_json::json;

use super::{NS, SA, SA_USER, create_in, tls_server};

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    tokio::process::Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kube-cache"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running kubectl (set KUBECTL to its path): {e}"))
}

/// A kubeconfig for `server` whose user sends `token`.
fn kubeconfig(server: &ApiServer, dir: &Path, name: &str, token: &str) -> PathBuf {
    let admin = server.kubeconfig_yaml();
    let path = dir.join(name);
    let start = admin.find("token: ").unwrap() + "token: ".len();
    let end = start + admin[start..].find('\n').unwrap();
    std::fs::write(
        &path,
        format!("{}{token}{}", &admin[..start], &admin[end..]),
    )
    .unwrap();
    path
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_unauthorized_forbidden_and_can_i() {
    let server = tls_server().await;
    let admin = server.client().unwrap();
    create_in::<Role>(
        &admin,
        NS,
        json!({"metadata": {"name": "leader"}, "rules": [{"apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"], "resourceNames": ["leader"], "verbs": ["get", "update"]}]}),
    )
    .await;
    create_in::<RoleBinding>(&admin, NS,
        json!({"metadata": {"name": "leader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "leader"},
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = server.token_for(Subject::ServiceAccount {
        namespace: NS.into(),
        name: SA.into(),
    });
    let sa = kubeconfig(&server, dir.path(), "sa", &token);
    let ask = |args: &'static [&'static str]| {
        let sa = sa.clone();
        async move {
            let (out, err) = text(&kubectl(&sa, args).await);
            assert!(
                err.is_empty() || err.contains("is not namespace scoped"),
                "kubectl {args:?}: {err}"
            );
            (out, err)
        }
    };
    assert_eq!(
        ask(&["auth", "can-i", "update", "leases/leader", "-n", NS])
            .await
            .0,
        "yes"
    );
    assert_eq!(
        ask(&["auth", "can-i", "update", "leases/other", "-n", NS])
            .await
            .0,
        "no"
    );
    assert_eq!(ask(&["auth", "can-i", "list", "nodes"]).await.0, "no");
    let whoami = ask(&["auth", "whoami"]).await.0;
    assert!(whoami.contains(SA_USER), "{whoami}");
    assert!(
        whoami.contains("system:serviceaccounts:nmstate"),
        "{whoami}"
    );
    let out = kubectl(&sa, &["get", "nodes"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains(&format!(
            "Error from server (Forbidden): nodes is forbidden: User \"{SA_USER}\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        )),
        "{}",
        text(&out).1
    );
    let out = kubectl(&sa, &["get", "lease", "other", "-n", NS]).await;
    assert!(
        text(&out).1.contains(&format!(
            "Error from server (Forbidden): leases.coordination.k8s.io \"other\" is forbidden: User \"{SA_USER}\" cannot get resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"nmstate\""
        )),
        "{}",
        text(&out).1
    );
    let bad = kubeconfig(&server, dir.path(), "bad", "forged");
    let out = kubectl(&bad, &["get", "namespaces"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("error: You must be logged in to the server (Unauthorized)"),
        "{}",
        text(&out).1
    );
    // The administrator's kubeconfig may do anything, and mint a bound token.
    let root = dir.path().join("admin");
    server.write_kubeconfig(&root).unwrap();
    assert_eq!(
        text(&kubectl(&root, &["auth", "can-i", "*", "*"]).await).0,
        "yes"
    );
    let out = kubectl(
        &root,
        &[
            "create",
            "token",
            SA,
            "-n",
            NS,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "handler-node2",
        ],
    )
    .await;
    let (minted, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let bound = kubeconfig(&server, dir.path(), "bound", &minted);
    let who = text(&kubectl(&bound, &["auth", "whoami", "-o", "json"]).await).0;
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], SA_USER);
    assert_eq!(
        who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"],
        json!(["node2"])
    );
}
