//! The `knmstate-apiserver` binary: flags, kubeconfig, persistence across SIGTERM and restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use knmstate_testkit::poll::eventually;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

fn start(listen: &str, data: &std::path::Path, kubeconfig: &std::path::Path) -> (Guard, String) {
    start_with(listen, data, kubeconfig, &[])
}

fn start_with(
    listen: &str,
    data: &std::path::Path,
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_knmstate-apiserver"))
        .args(extra)
        .args(["--listen", listen, "--data-file"])
        .arg(data)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start knmstate-apiserver");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Guard(child), line.trim().to_owned())
}

/// Kills the server if a test fails before stopping it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn terminate(child: &mut Guard) {
    let child = &mut child.0;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "exit status {code}");
}

async fn client(kubeconfig: &std::path::Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_persists_across_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.json");
    let kc = dir.path().join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");

    let (mut child, url) = start(&listen, &data, &kc);
    assert_eq!(url, format!("http://{listen}"));
    let api: Api<ConfigMap> = Api::namespaced(client(&kc).await, "default");
    let cm: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "kept"}, "data": {"k": "v"}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    terminate(&mut child);
    assert!(data.exists(), "the data file is written on SIGTERM");

    let (mut child, _) = start(&listen, &data, &kc);
    let api: Api<ConfigMap> = Api::namespaced(client(&kc).await, "default");
    eventually("the kept object served", Duration::from_secs(5), || async {
        api.get("kept").await.is_ok()
    })
    .await
    .unwrap();
    let kept = api.get("kept").await.unwrap();
    assert_eq!(kept.uid(), created.uid());
    assert_eq!(kept.resource_version(), created.resource_version());
    let cm2: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "new"}})).unwrap();
    let new = api.create(&PostParams::default(), &cm2).await.unwrap();
    let rv = |c: &ConfigMap| c.resource_version().unwrap().parse::<u64>().unwrap();
    assert!(rv(&new) > rv(&created));
    terminate(&mut child);
}

/// With `--tls`, kubectl and kube-rs trust the server through the written kubeconfig, also
/// after a restart (the certificate is kept beside the data file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state.json");
    let kc = dir.path().join("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    for round in 0..2 {
        let (mut child, url) = start_with(&listen, &data, &kc, &["--tls"]);
        assert_eq!(url, format!("https://{listen}"));
        let api: Api<ConfigMap> = Api::namespaced(client(&kc).await, "default");
        if round == 0 {
            let cm: ConfigMap =
                serde_json::from_value(serde_json::json!({"metadata": {"name": "tls"}})).unwrap();
            api.create(&PostParams::default(), &cm).await.unwrap();
        }
        let out = tokio::process::Command::new(
            std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()),
        )
        .args(["get", "configmap", "tls", "-o", "name"])
        .env("KUBECONFIG", &kc)
        .env("KUBECACHEDIR", dir.path().join("kube-cache"))
        .output()
        .await
        .expect("run kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configmap/tls");
        terminate(&mut child);
    }
    assert!(dir.path().join("state.crt").exists());
}
