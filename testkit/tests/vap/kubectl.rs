//! What `kubectl` prints for a policy's denial and warning.

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::common;
use crate::support::{binding, deny_configmaps, on_configmaps, policy};

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned()))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kube-cache"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running kubectl (set KUBECTL to its path): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_the_denial_and_the_warning() {
    let server = common::server().await;
    let c = server.client().unwrap();
    deny_configmaps(
        &c,
        &["CREATE"],
        json!([
            {"expression": "object.metadata.name != 'refused'", "messageExpression": "'the name ' + object.metadata.name + ' is taken'", "reason": "Forbidden"},
            {"expression": "object.metadata.name != 'warned'", "message": "warned is discouraged"},
        ]),
    )
    .await;
    policy(
        &c,
        "advice",
        json!({
            "matchConstraints": on_configmaps(),
            "validations": [{"expression": "!object.metadata.name.startsWith('w-')", "messageExpression": "object.metadata.name + ' is discouraged'"}],
        }),
    )
    .await;
    binding(&c, "w", "advice", &["Warn"], json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();

    let out = kubectl(
        &kc,
        &["create", "configmap", "refused", "--from-literal=a=b"],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: failed to create configmap: configmaps \"refused\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: the name refused is taken\n"
    );

    let file = dir.path().join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warned\ndata:\n  a: b\n",
    )
    .unwrap();
    let out = kubectl(&kc, &["apply", "-f", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    // An Invalid refusal carries its message as a cause without a field, as kube-apiserver's
    // does, so kubectl prints it after an empty field name.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "The configmaps \"warned\" is invalid: : ValidatingAdmissionPolicy 'p' with binding 'b' denied request: warned is discouraged\n"
    );
    // Only `Warn` binds the advice: kubectl prints the warning and creates the map.
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w-fine\n",
    )
    .unwrap();
    let out = kubectl(&kc, &["apply", "-f", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Warning: Validation failed for ValidatingAdmissionPolicy 'advice' with binding 'w': w-fine is discouraged\n"
    );
}
