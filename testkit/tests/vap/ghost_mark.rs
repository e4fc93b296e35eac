//! The one write the node restriction admits on another node's enactment: marking a dead slot
//! holder Aborted (the handler that pruned its expired lease does it), only through `/status`,
//! only with the ghost message, and only while that enactment has not ended in its policy
//! generation.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::node_restriction::{api, object, refused, with_node2};
use crate::support::refusal;

const KIND: &str = "NodeNetworkConfigurationEnactment";
const GHOST: &str = "reconciliation of enactment \"node3.p1\" has aborted: its handler did not \
                     renew the maxUnavailable slot since 2026-01-01T00:00:00Z and the slot \
                     expired at 2026-01-01T00:02:00Z (handler gone or node cut off); the slot \
                     was freed";

/// A status of `generation` with the condition `kind` true (and `message`).
fn status(generation: i64, kind: &str, message: &str) -> Value {
    json!({"status": {"policyGeneration": generation, "conditions": [
        {"type": kind, "status": "True", "reason": kind, "message": message,
         "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
}

/// Writes `body` to the status of enactment `name` as `api`'s identity; the refusal if any.
async fn mark(
    api: &Api<DynamicObject>,
    name: &str,
    body: Value,
) -> Result<(), (u16, String, String)> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map(drop)
        .map_err(refusal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_enactment_may_only_be_marked_aborted_as_a_ghost_before_it_ended() {
    let (_server, admin, node2) = with_node2().await;
    let pp = PostParams::default();
    let ps = PatchParams::default();
    let theirs = api(&admin, KIND);
    let mine = api(&node2, KIND);
    for name in ["node3.p1", "node3.p2", "node3.p3"] {
        theirs
            .create(
                &pp,
                &object(KIND, name, json!({"nmstate.io/node": "node3"})),
            )
            .await
            .unwrap();
    }
    theirs
        .patch_status("node3.p1", &ps, &Patch::Merge(status(4, "Progressing", "")))
        .await
        .unwrap();
    theirs
        .patch_status("node3.p2", &ps, &Patch::Merge(status(4, "Available", "")))
        .await
        .unwrap();
    theirs
        .patch_status("node3.p3", &ps, &Patch::Merge(status(3, "Available", "")))
        .await
        .unwrap();
    let why = "the handler of node node2 may write only enactments named node2.<policy>, not ";
    let denied = |name: &str| {
        refused(
            "nodenetworkconfigurationenactments",
            name,
            &format!("{why}{name}"),
        )
    };

    // Progressing in generation 4: Aborted with another message, or Available, is refused.
    let e = mark(&mine, "node3.p1", status(4, "Aborted", "gone")).await;
    assert_eq!(e.unwrap_err(), denied("node3.p1"));
    let e = mark(&mine, "node3.p1", status(4, "Available", GHOST)).await;
    assert_eq!(e.unwrap_err(), denied("node3.p1"));
    // … the ghost mark is admitted.
    mark(&mine, "node3.p1", status(4, "Aborted", GHOST))
        .await
        .expect("a ghost marked Aborted");

    // Ended in generation 4: not rewritten, even as a ghost.
    let e = mark(&mine, "node3.p2", status(4, "Aborted", GHOST)).await;
    assert_eq!(e.unwrap_err(), denied("node3.p2"));
    // Ended in generation 3 and dead in generation 4 before its first write: marked.
    mark(&mine, "node3.p3", status(4, "Aborted", GHOST))
        .await
        .expect("a ghost of the next generation marked Aborted");

    // Never outside `/status`: not the object, not a delete.
    let e = mine
        .patch(
            "node3.p1",
            &ps,
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e, denied("node3.p1"));
    let e = mine
        .delete("node3.p1", &Default::default())
        .await
        .map_err(refusal)
        .unwrap_err();
    assert_eq!(e, denied("node3.p1"));
}
