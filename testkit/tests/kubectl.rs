//! The real `kubectl` binary against the stand-in: CRD, objects, printer columns, patch,
//! wait on a condition, label, server-side apply, delete, webhook-free validation errors.
//!
//! Needs `kubectl` on `PATH` (or at `$KUBECTL`).

mod common;

use std::path::Path;
use std::process::Output;

use common::Widget;
use kube::CustomResourceExt;

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(kubectl_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", kubeconfig.with_file_name("kube-cache"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running kubectl (set KUBECTL to its path): {e}"))
}

async fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn fails(kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, args).await;
    assert!(!out.status.success(), "kubectl {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_end_to_end() {
    let server = common::server().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();
    let crd = dir.path().join("crd.json");
    std::fs::write(&crd, serde_json::to_vec_pretty(&Widget::crd()).unwrap()).unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_string_lossy().into_owned()
    };

    assert!(
        ok(&kc, &["version"])
            .await
            .contains("Server Version: v1.32")
    );
    ok(&kc, &["apply", "-f", crd.to_str().unwrap()]).await;
    ok(
        &kc,
        &[
            "wait",
            "--for",
            "condition=Established",
            "crd/widgets.example.com",
            "--timeout=10s",
        ],
    )
    .await;
    let a = file(
        "a.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: a\nspec:\n  size: 3\n",
    );
    let b = file(
        "b.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: b\n  labels:\n    tier: silver\nspec:\n  size: 5\n",
    );
    assert!(
        ok(&kc, &["create", "-f", &a])
            .await
            .contains("widget.example.com/a created")
    );
    ok(&kc, &["apply", "-f", &b]).await;

    // Printer columns, and the schema default.
    let table = ok(&kc, &["get", "widgets"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "STATUS", "AGE"], "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["b", "5"])),
        "{table}"
    );
    assert_eq!(
        ok(&kc, &["get", "wd", "a", "-o", "jsonpath={.spec.color}"]).await,
        "blue"
    );

    // Strict field validation: unknown fields are refused.
    let bad = file(
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  size: 1\n  junk: 2\n",
    );
    assert!(
        fails(&kc, &["create", "-f", &bad])
            .await
            .contains("unknown field \"spec.junk\"")
    );
    let bad = file(
        "bad2.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  size: many\n",
    );
    assert!(
        fails(&kc, &["create", "-f", &bad])
            .await
            .contains("spec.size")
    );

    // Patch (merge and JSON) bumps generation.
    ok(
        &kc,
        &[
            "patch",
            "widget",
            "a",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"size":9}}"#,
        ],
    )
    .await;
    ok(
        &kc,
        &[
            "patch",
            "widget",
            "a",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/color","value":"red"}]"#,
        ],
    )
    .await;
    assert_eq!(
        ok(
            &kc,
            &[
                "get",
                "widget",
                "a",
                "-o",
                "jsonpath={.spec.size} {.spec.color} {.metadata.generation}"
            ]
        )
        .await,
        "9 red 3"
    );

    // wait --for condition, satisfied by a later status write.
    let kc2 = kc.clone();
    let waiter = tokio::spawn(async move {
        kubectl(
            &kc2,
            &[
                "wait",
                "--for",
                "condition=Ready",
                "widget/a",
                "--timeout=20s",
            ],
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    ok(
        &kc,
        &[
            "patch",
            "widget",
            "a",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
    )
    .await;
    let waited = waiter.await.unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let table = ok(&kc, &["get", "widgets"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["a", "9", "Ready"])),
        "{table}"
    );
    // Status writes did not move generation.
    assert_eq!(
        ok(
            &kc,
            &[
                "get",
                "widget",
                "a",
                "-o",
                "jsonpath={.metadata.generation}"
            ]
        )
        .await,
        "3"
    );

    // Labels and selectors.
    ok(&kc, &["label", "widget", "a", "tier=gold"]).await;
    assert_eq!(
        ok(&kc, &["get", "widgets", "-l", "tier=gold", "-o", "name"])
            .await
            .trim(),
        "widget.example.com/a"
    );
    let both = ok(
        &kc,
        &[
            "get",
            "widgets",
            "-l",
            "tier in (gold,silver)",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(both.lines().count(), 2, "{both}");
    assert_eq!(
        ok(
            &kc,
            &[
                "get",
                "widgets",
                "--field-selector",
                "metadata.name=b",
                "-o",
                "name"
            ]
        )
        .await
        .trim(),
        "widget.example.com/b"
    );

    // Server-side apply, with a conflict against another manager.
    let c = file(
        "c.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: a\nspec:\n  size: 4\n",
    );
    let err = fails(
        &kc,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "other",
            "-f",
            &c,
        ],
    )
    .await;
    assert!(err.contains("conflict"), "{err}");
    ok(
        &kc,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "other",
            "-f",
            &c,
        ],
    )
    .await;
    assert_eq!(
        ok(&kc, &["get", "widget", "a", "-o", "jsonpath={.spec.size}"]).await,
        "4"
    );

    // Built-in kinds and namespaces.
    // Generator commands send protobuf bodies.
    ok(&kc, &["create", "namespace", "team"]).await;
    ok(
        &kc,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "team",
            "--from-literal",
            "k=v",
        ],
    )
    .await;
    ok(
        &kc,
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "-n",
            "team",
            "--from-literal",
            "p=hunter2",
        ],
    )
    .await;
    assert_eq!(
        ok(
            &kc,
            &[
                "get",
                "secret",
                "pw",
                "-n",
                "team",
                "-o",
                "jsonpath={.data.p}"
            ]
        )
        .await,
        "aHVudGVyMg=="
    );
    assert_eq!(
        ok(
            &kc,
            &["get", "ns", "team", "-o", "jsonpath={.spec.finalizers}"]
        )
        .await,
        r#"["kubernetes"]"#
    );
    let ns = file(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n",
    );
    ok(&kc, &["apply", "-f", &ns]).await;
    assert_eq!(
        ok(
            &kc,
            &["get", "cm", "cfg", "-n", "team", "-o", "jsonpath={.data.k}"]
        )
        .await,
        "v"
    );

    // Delete.
    assert!(
        ok(&kc, &["delete", "widget", "a"])
            .await
            .contains("deleted")
    );
    assert_eq!(
        ok(&kc, &["get", "widgets", "-o", "name"]).await.trim(),
        "widget.example.com/b"
    );
    ok(&kc, &["delete", "namespace", "team", "--timeout=20s"]).await;
    let err = fails(&kc, &["get", "namespace", "team"]).await;
    assert!(err.contains("not found"), "{err}");
    assert!(server.metrics().count("patch", "widgets.example.com") >= 3);
    server.shutdown().await;
}
