//! Node restriction of the slot ledgers: the validating hook for writes of a policy's
//! `nncp-slots-<policy>` Lease by an identity bound to a node. The rules are state-engine's
//! [`ledger_guard::check`]; here they get the node from the request's
//! `authentication.kubernetes.io/node-name` extra, the ledgers from the old and new objects'
//! [`SLOT_LEDGER_ANNOTATION`], and `now` from the webhook's clock.
//!
//! A request without a node (the controller, an administrator) is admitted: the configuration
//! sends only node-bound writes, and RBAC already keeps other identities out. A new ledger that
//! can not be read is refused (a node may not replace the ledger with something nobody can
//! count); an old one that can not be read counts as none (a node may start it afresh).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::names::SLOT_LEDGER_ANNOTATION;
use knmstate_state_engine::ledger_guard;
use knmstate_state_engine::slot::SlotLedger;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use kube::core::response::{StatusCause, StatusDetails};

/// Validation of slot-ledger Lease creates and updates by a node's handler.
pub const PATH: &str = "/slot-ledgers-validate";
/// The user extra that names the node a bound ServiceAccount token belongs to.
pub const NODE_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// The ledger a Lease carries: `Ok(None)` without the annotation.
fn ledger(o: Option<&DynamicObject>) -> Result<Option<SlotLedger>, String> {
    let Some(text) = o
        .and_then(|o| o.metadata.annotations.as_ref())
        .and_then(|a| a.get(SLOT_LEDGER_ANNOTATION))
    else {
        return Ok(None);
    };
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Admit or refuse one write of a slot ledger at `now`.
pub fn validate(req: &AdmissionRequest<DynamicObject>, now: &Time) -> AdmissionResponse {
    let Some(node) = req
        .user_info
        .extra
        .as_ref()
        .and_then(|e| e.get(NODE_EXTRA))
        .and_then(|v| v.first())
    else {
        return AdmissionResponse::from(req);
    };
    let field = format!("metadata.annotations[{SLOT_LEDGER_ANNOTATION}]");
    let refused = |message: String, reason: &str| {
        let mut resp = AdmissionResponse::from(req).deny(message.clone());
        "Forbidden".clone_into(&mut resp.result.reason);
        resp.result.code = 403;
        resp.result.details = Some(StatusDetails {
            name: req.name.clone(),
            group: req.kind.group.clone(),
            kind: req.kind.kind.clone(),
            uid: String::new(),
            causes: vec![StatusCause {
                reason: reason.to_owned(),
                message,
                field: field.clone(),
            }],
            retry_after_seconds: 0,
        });
        resp
    };
    let new = match ledger(req.object.as_ref()) {
        Ok(Some(new)) => new,
        Ok(None) => {
            return refused(
                format!(
                    "the handler of node {node} may write a slot ledger Lease only with its {field}"
                ),
                "FieldValueRequired",
            );
        }
        Err(e) => {
            return refused(
                format!(
                    "the handler of node {node} wrote a slot ledger that can not be read: {field}: {e}"
                ),
                "FieldValueInvalid",
            );
        }
    };
    let old = ledger(req.old_object.as_ref()).ok().flatten();
    match ledger_guard::check(old.as_ref(), &new, node, now) {
        Ok(()) => AdmissionResponse::from(req),
        Err(e) => {
            tracing::warn!(
                node,
                lease = req.name,
                category = e.category(),
                "refused a slot ledger write: {e}"
            );
            refused(e.to_string(), "FieldValueForbidden")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use knmstate_state_engine::slot::SlotLease;
    use kube::core::admission::AdmissionReview;
    use serde_json::json;
    use std::time::Duration;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn lease(ledger: Option<&SlotLedger>) -> serde_json::Value {
        let mut meta = json!({"name": "nncp-slots-p", "namespace": "nmstate"});
        if let Some(l) = ledger {
            meta["annotations"] =
                json!({ SLOT_LEDGER_ANNOTATION: serde_json::to_string(l).unwrap() });
        }
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": {}})
    }

    fn request(
        node: Option<&str>,
        old: Option<&serde_json::Value>,
        new: &serde_json::Value,
    ) -> AdmissionRequest<DynamicObject> {
        let mut user = json!({"username": "system:serviceaccount:nmstate:nmstate-handler"});
        if let Some(n) = node {
            user["extra"] = json!({ NODE_EXTRA: [n] });
        }
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "coordination.k8s.io", "version": "v1", "kind": "Lease"},
                "resource": {"group": "coordination.k8s.io", "version": "v1", "resource": "leases"},
                "name": "nncp-slots-p",
                "namespace": "nmstate",
                "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
                "userInfo": user,
                "object": new,
                "oldObject": old,
            }
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    /// node3 holds the slot with a lease until 60.
    fn held() -> SlotLedger {
        let mut l = SlotLedger::new(1);
        l.holders.insert("node3".into());
        l.leases.insert(
            "node3".into(),
            SlotLease::new(&t(0), Duration::from_mins(1), "a"),
        );
        l
    }

    #[test]
    fn node2_may_not_release_node3s_slot() {
        let mut freed = held();
        freed.holders.clear();
        freed.leases.clear();
        let req = request(
            Some("node2"),
            Some(&lease(Some(&held()))),
            &lease(Some(&freed)),
        );
        let resp = validate(&req, &t(10));
        assert!(!resp.allowed);
        assert_eq!(resp.result.code, 403);
        assert_eq!(
            resp.result.message,
            "node2 may change only its own entry of the slot ledger, and this write changes node3's (it removes its slot); only node3's handler may"
        );
        let cause = &resp.result.details.unwrap().causes[0];
        assert_eq!(cause.field, "metadata.annotations[nmstate.io/slot-ledger]");
        // node3 itself may.
        let req = request(
            Some("node3"),
            Some(&lease(Some(&held()))),
            &lease(Some(&freed)),
        );
        assert!(validate(&req, &t(10)).allowed);
    }

    #[test]
    fn node2_claims_its_own_and_prunes_an_expired_holder() {
        let mut next = held();
        next.holders.remove("node3");
        let last = next.leases.remove("node3").unwrap();
        next.expired.insert("node3".into(), last);
        next.holders.insert("node2".into());
        let req = request(
            Some("node2"),
            Some(&lease(Some(&held()))),
            &lease(Some(&next)),
        );
        assert!(validate(&req, &t(61)).allowed);
        assert!(
            !validate(&req, &t(59)).allowed,
            "node3's lease still holds at 59"
        );
    }

    #[test]
    fn a_write_without_a_node_is_not_judged_and_a_bad_ledger_is_refused() {
        let req = request(None, Some(&lease(Some(&held()))), &lease(None));
        assert!(validate(&req, &t(0)).allowed);
        let req = request(Some("node2"), Some(&lease(Some(&held()))), &lease(None));
        let resp = validate(&req, &t(0));
        assert!(!resp.allowed);
        assert!(
            resp.result
                .message
                .contains("metadata.annotations[nmstate.io/slot-ledger]")
        );
        let mut bad = lease(None);
        bad["metadata"]["annotations"] = json!({ SLOT_LEDGER_ANNOTATION: "{not json" });
        let resp = validate(&request(Some("node2"), None, &bad), &t(0));
        assert!(
            resp.result.message.contains("can not be read"),
            "{}",
            resp.result.message
        );
        // Creating a ledger that names another node is refused.
        let resp = validate(&request(Some("node2"), None, &lease(Some(&held()))), &t(0));
        assert!(
            resp.result.message.contains("may name only its writer"),
            "{}",
            resp.result.message
        );
    }
}
