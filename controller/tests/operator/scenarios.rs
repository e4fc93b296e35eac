//! The scenarios: install, report, roll and uninstall; a second CR; certificate rotation.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmstate_installs_reports_rolls_and_uninstalls() -> Result<()> {
    let c = Cluster::start().await?;
    c.create("nmstate", NMStateSpec::default()).await?;

    // Applied and owned; still Deploying, as no workload reports ready; monitoring skipped.
    let message = c.wait_state("nmstate", "Progressing", "Deploying").await?;
    assert!(
        message.contains("DaemonSet \"nmstate-handler\""),
        "{message}"
    );
    assert!(
        message.contains("ServiceMonitor/nmstate/controller-manager-metrics-monitor"),
        "{message}"
    );
    let ds: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);
    let handler = ds.get("nmstate-handler").await?;
    let owner = &handler.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("NMState", "nmstate", Some(true))
    );
    let ns: Api<Namespace> = Api::all(c.client.clone());
    assert!(
        ns.get(NS).await?.owner_references().is_empty(),
        "the Namespace is never owned"
    );
    let deps: Api<Deployment> = Api::namespaced(c.client.clone(), NS);
    assert_eq!(
        deps.get("nmstate-webhook").await?.spec.replicas,
        Some(2),
        "two Linux nodes"
    );
    assert_eq!(deps.get("nmstate-controller").await?.spec.replicas, Some(2));

    // The webhook's certificate: issued into its Secret, its CA injected into the config.
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    let tls = secrets.get("nmstate-webhook").await?;
    let data = tls.data.context("no data")?;
    assert!(data.contains_key("tls.crt") && data.contains_key("tls.key"));
    let ca = String::from_utf8(data["ca.crt"].0.clone())?;
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(c.client.clone());
    let m = hooks.get("nmstate").await?;
    for w in m.webhooks.iter().flatten() {
        assert_eq!(
            w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
            Some(ca.clone().into_bytes())
        );
    }

    c.roll_out().await?;
    let message = c
        .wait_state("nmstate", "Available", "SuccessfullyDeployed")
        .await?;
    assert!(
        message.starts_with("All components are available and ready"),
        "{message}"
    );

    // Status is written with server-side apply under the operator's own field manager.
    let api: Api<NMState> = Api::all(c.client.clone());
    let managers: Vec<(String, String, String)> = api
        .get("nmstate")
        .await?
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("knmstate-operator".into(), "Apply".into(), "status".into())),
        "{managers:?}"
    );

    // A nodeSelector change renders a new pod template: the DaemonSet rolls.
    let selector = BTreeMap::from([("role".to_owned(), "net".to_owned())]);
    api.patch(
        "nmstate",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"nodeSelector": selector}})),
    )
    .await?;
    eventually("the DaemonSet's new nodeSelector", WAIT, || async {
        let d = ds.get("nmstate-handler").await?;
        let got = d.spec.template.spec.and_then(|s| s.node_selector);
        Ok(got
            .as_ref()
            .is_some_and(|s| s.get("role").map(String::as_str) == Some("net"))
            .then_some(()))
    })
    .await?;
    c.wait_state("nmstate", "Progressing", "Deploying").await?;

    // Deleting the CR removes what it owns; CRDs and the Namespace stay.
    api.delete("nmstate", &DeleteParams::default()).await?;
    eventually("the workloads gone", WAIT, || async {
        let left = ds.list(&ListParams::default()).await?.items.len()
            + deps.list(&ListParams::default()).await?.items.len()
            + hooks.list(&ListParams::default()).await?.items.len();
        Ok((left == 0).then_some(()))
    })
    .await?;
    assert!(ns.get_opt(NS).await?.is_some());
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    assert!(crds.get_opt("nmstates.nmstate.io").await?.is_some());
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nmstate_with_another_name_is_ignored_with_a_condition() -> Result<()> {
    let c = Cluster::start().await?;
    c.create("nmstate", NMStateSpec::default()).await?;
    c.wait_state("nmstate", "Progressing", "Deploying").await?;
    c.create("other", NMStateSpec::default()).await?;
    let message = c.wait_state("other", "Degraded", "Ignored").await?;
    assert!(
        message.contains("only the NMState named \"nmstate\" is reconciled"),
        "{message}"
    );
    // Still exactly one installation, owned by the honoured resource only.
    let ds: Api<DaemonSet> = Api::namespaced(c.client.clone(), NS);
    let all = ds.list(&ListParams::default()).await?.items;
    assert_eq!(all.len(), 1);
    assert!(
        all[0]
            .owner_references()
            .iter()
            .all(|o| o.name == "nmstate")
    );
    let api: Api<NMState> = Api::all(c.client.clone());
    assert!(api.get_opt("other").await?.is_some(), "not deleted");
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_certificates_rotate_and_the_old_ca_stays_trusted() -> Result<()> {
    let c = Cluster::start().await?;
    let spec: NMStateSpec = serde_json::from_value(json!({"selfSignConfiguration": {
        "caRotateInterval": "3s", "caOverlapInterval": "1h",
        "certRotateInterval": "1s", "certOverlapInterval": "1h"}}))?;
    c.create("nmstate", spec).await?;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), NS);
    let serving = |s: Secret| -> Option<Vec<u8>> { Some(s.data?.get("tls.crt")?.0.clone()) };
    let first = eventually("a serving certificate", WAIT, || async {
        Ok(secrets.get_opt("nmstate-webhook").await?.and_then(serving))
    })
    .await?;
    eventually("a new serving certificate", WAIT, || async {
        let now = secrets.get_opt("nmstate-webhook").await?.and_then(serving);
        Ok(now.filter(|n| *n != first).map(|_| ()))
    })
    .await?;
    // After the CA's rotation the webhooks trust both CAs until the old one expires.
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(c.client.clone());
    eventually("a bundle of two CAs", WAIT, || async {
        let m = hooks.get_opt("nmstate").await?;
        let bundle = m
            .and_then(|m| m.webhooks)
            .and_then(|w| w.first().and_then(|w| w.client_config.ca_bundle.clone()))
            .map(|b| {
                String::from_utf8_lossy(&b.0)
                    .matches("BEGIN CERTIFICATE")
                    .count()
            });
        Ok((bundle == Some(2)).then_some(()))
    })
    .await?;
    c.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_objects_the_installation_no_longer_renders_are_pruned() -> Result<()> {
    let c = Cluster::start().await?;
    c.create("nmstate", NMStateSpec::default()).await?;
    c.wait_state("nmstate", "Progressing", "Deploying").await?;
    let api: Api<NMState> = Api::all(c.client.clone());
    let uid = api.get("nmstate").await?.uid().context("no uid")?;
    // What an older release rendered (upstream's cert-manager Deployment), owned by the CR,
    // and a Deployment a user made beside it.
    let deps: Api<Deployment> = Api::namespaced(c.client.clone(), NS);
    let deployment = |name: &str, owned: bool| -> Result<Deployment> {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "kubernetes-nmstate"}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}}
        }))?;
        if owned {
            d.metadata.owner_references = Some(vec![serde_json::from_value(json!({
                "apiVersion": "nmstate.io/v1", "kind": "NMState", "name": "nmstate",
                "uid": uid, "controller": true, "blockOwnerDeletion": true}))?]);
        }
        Ok(d)
    };
    deps.create(
        &PostParams::default(),
        &deployment("nmstate-cert-manager", true)?,
    )
    .await?;
    deps.create(&PostParams::default(), &deployment("user-app", false)?)
        .await?;
    // Any change makes the operator reconcile; it prunes on every reconcile.
    api.patch(
        "nmstate",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"logLevel": "debug"}})),
    )
    .await?;
    eventually("the old release's Deployment pruned", WAIT, || async {
        Ok(deps
            .get_opt("nmstate-cert-manager")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    assert!(deps.get_opt("user-app").await?.is_some(), "not owned: kept");
    assert!(
        deps.get_opt("nmstate-controller").await?.is_some(),
        "rendered: kept"
    );
    c.shutdown().await;
    Ok(())
}
