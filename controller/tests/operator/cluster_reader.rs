//! The optional aggregated role: rendered while the cluster has a `cluster-reader` cluster
//! role, pruned once it is gone (upstream's `nmstate-cluster-reader`).

use k8s_openapi::api::rbac::v1::ClusterRole;

use super::*;

const READER: &str = "nmstate-cluster-reader";

/// The operator's aggregated role, once its presence is `present`.
async fn wait_reader(roles: &Api<ClusterRole>, present: bool) -> Result<Option<ClusterRole>> {
    let what = if present { "rendered" } else { "gone" };
    Ok(eventually(&format!("{READER} {what}"), WAIT, || async {
        let role = roles.get_opt(READER).await?;
        Ok((role.is_some() == present).then_some(role))
    })
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_reader_role_follows_the_clusters_cluster_reader() -> Result<()> {
    let c = Cluster::start().await?;
    c.create("nmstate", NMStateSpec::default()).await?;
    c.wait_state("nmstate", "Progressing", "Deploying").await?;
    let roles: Api<ClusterRole> = Api::all(c.client.clone());
    assert!(
        roles.get_opt(READER).await?.is_none(),
        "no cluster-reader, no aggregated role"
    );

    // The cluster gains a `cluster-reader` (as OpenShift has): the next reconcile adds the
    // role aggregated into it, owned by the NMState like the rest.
    let cluster_reader: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "cluster-reader"},
        "rules": []
    }))?;
    roles
        .create(&PostParams::default(), &cluster_reader)
        .await?;
    let role = wait_reader(&roles, true).await?.context("the role")?;
    assert_eq!(
        role.labels()
            .get("rbac.authorization.k8s.io/aggregate-to-cluster-reader")
            .map(String::as_str),
        Some("true")
    );
    let rule = &role.rules.clone().unwrap_or_default()[0];
    assert_eq!(rule.api_groups, Some(vec!["nmstate.io".to_owned()]));
    assert_eq!(rule.verbs, ["get", "list", "watch"]);
    assert_eq!(role.owner_references()[0].name, "nmstate");

    // Gone again: the role it no longer renders is pruned.
    roles
        .delete("cluster-reader", &DeleteParams::default())
        .await?;
    wait_reader(&roles, false).await?;
    c.shutdown().await;
    Ok(())
}
