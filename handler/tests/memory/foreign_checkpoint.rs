//! A checkpoint another tool created keeps the apply from starting (NetworkManager would refuse
//! the apply's own): the node waits for it without using an attempt, and applies once it is
//! gone. knmstate never rolls it back or destroys it.

use super::*;

#[tokio::test]
async fn a_foreign_checkpoint_uses_no_attempt_and_the_policy_applies_once_it_is_gone() -> Result<()>
{
    let c = Cluster::start().await?;
    c.add_node("n1", &[]).await?;
    let b = MemoryBackend::harness_like("198.18.0.101");
    let before = b.state();
    // Another tool's checkpoint, which NetworkManager rolls back after its 4 s timeout.
    let foreign = b.hold_foreign_checkpoint(Duration::from_secs(4));
    let h = c.start_handler("n1", b.clone(), Duration::ZERO);
    c.create_policy(example("linux-bridge.yaml")?).await?;

    let e = eventually("n1 waiting for the foreign checkpoint", T, || {
        let api = c.enactments();
        async move {
            let e = api.get("n1.linux-bridge").await.ok()?;
            let pending = e.status.as_ref()?.conditions.find("Pending")?.clone();
            (pending.status == knmstate_api::condition::ConditionStatus::True
                && pending.reason == "ForeignCheckpointHeld")
                .then_some(e)
        }
    })
    .await?;
    let s = e.status.expect("status");
    let pending = s.conditions.find("Pending").expect("Pending");
    assert!(
        pending.message.contains(&foreign.0)
            && pending
                .message
                .contains("leaves them to their owner or their rollback timeout"),
        "{}",
        pending.message
    );
    assert!(!s.conditions.is_true("Failing"), "{:?}", s.conditions);
    assert!(!s.conditions.is_true("Progressing"), "{:?}", s.conditions);
    assert_eq!(
        s.retry_count.get("1").copied().unwrap_or(0),
        0,
        "no attempt used"
    );
    // Untouched meanwhile, the checkpoint left in place.
    assert_eq!(b.state(), before);
    assert_eq!(b.checkpoints(), vec![foreign]);

    // Gone at its timeout: the policy applies, on its first attempt.
    let e = wait_condition(&c, "n1.linux-bridge", "Available", T).await?;
    let s = e.status.expect("status");
    assert_eq!(s.retry_count.get("1").copied().unwrap_or(0), 0);
    assert!(iface(&b.state(), "br1").is_some(), "br1 applied");
    assert!(b.checkpoints().is_empty());
    h.stop().await
}
