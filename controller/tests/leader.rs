//! Lease election step by step against the API stand-in: one holder at a time, takeover
//! only after the holder stopped renewing for a lease duration, release on shutdown.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{Cluster, LEASE_NAME, LEASE_NAMESPACE};
use k8s_openapi::api::coordination::v1::Lease;
use knmstate_controller::leader::{LeaderElector, LeaseConfig};
use kube::api::Api;

fn config(id: &str) -> LeaseConfig {
    let mut c = LeaseConfig::new(LEASE_NAMESPACE, LEASE_NAME, id);
    c.lease_duration = Duration::from_secs(1);
    c.renew_deadline = Duration::from_millis(800);
    c.retry_period = Duration::from_millis(100);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_takeover_after_expiry() -> Result<()> {
    let c = Cluster::start().await?;
    let (mut a, a_lead) = LeaderElector::new(c.client.clone(), config("a"));
    let (mut b, _) = LeaderElector::new(c.client.clone(), config("b"));
    assert!(a.try_acquire_or_renew().await?, "a creates the Lease");
    assert!(!b.try_acquire_or_renew().await?, "b sees a fresh holder");
    assert!(a.try_acquire_or_renew().await?, "a renews");
    assert!(!b.try_acquire_or_renew().await?);
    // a stops renewing; b only takes over once the record has not moved for 1 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        b.try_acquire_or_renew().await?,
        "b takes over the expired Lease"
    );
    // a's renewal of its stale copy conflicts, and a sees b as a fresh holder.
    assert!(!a.try_acquire_or_renew().await?);
    assert!(!a_lead.is_leader());
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), LEASE_NAMESPACE);
    let spec = leases.get(LEASE_NAME).await?.spec.unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    // Release: the holder is cleared and a may take it at once.
    b.release().await?;
    assert!(
        a.try_acquire_or_renew().await?,
        "a acquires the released Lease"
    );
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_leadership_and_releases_on_shutdown() -> Result<()> {
    let c = Cluster::start().await?;
    let (a, a_lead) = LeaderElector::new(c.client.clone(), config("a"));
    let (b, b_lead) = LeaderElector::new(c.client.clone(), config("b"));
    let (stop_a, rx_a) = tokio::sync::oneshot::channel::<()>();
    let (stop_b, rx_b) = tokio::sync::oneshot::channel::<()>();
    let ta = tokio::spawn(a.run(async move {
        let _ = rx_a.await;
    }));
    common::eventually("a leads", Duration::from_secs(5), || async {
        Ok(a_lead.is_leader().then_some(()))
    })
    .await?;
    let tb = tokio::spawn(b.run(async move {
        let _ = rx_b.await;
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        a_lead.is_leader() && !b_lead.is_leader(),
        "a keeps renewing"
    );
    let _ = stop_a.send(());
    ta.await?;
    assert!(!a_lead.is_leader());
    // Released: b takes over well before a lease duration would have expired.
    common::eventually("b leads", Duration::from_millis(900), || async {
        Ok(b_lead.is_leader().then_some(()))
    })
    .await?;
    let _ = stop_b.send(());
    tb.await?;
    c.server.shutdown().await;
    Ok(())
}
