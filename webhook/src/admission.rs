//! AdmissionReview handling: the three upstream mutations, our validation of policies, and
//! the node restriction of slot ledgers ([`crate::slot_ledger`]).
//!
//! Everything here is synchronous and free of I/O so it can be tested with fixture reviews;
//! [`crate::server`] only moves bytes.

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use knmstate_api::names::{WEBHOOK_MUTATING_TIMESTAMP_ANNOTATION, policy};
use knmstate_api::{Condition, ConditionStatus};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, Ordering};

use crate::rules;

/// Mutation of the main resource: clears `status.conditions` (upstream's behaviour).
pub const MUTATE_PATH: &str = "/nodenetworkconfigurationpolicies-mutate";
/// Mutation of the status subresource: initialises the four policy conditions to Unknown.
pub const STATUS_MUTATE_PATH: &str = "/nodenetworkconfigurationpolicies-status-mutate";
/// Mutation of both: stamps `nmstate.io/webhook-mutating-timestamp`.
pub const TIMESTAMP_MUTATE_PATH: &str = "/nodenetworkconfigurationpolicies-timestamp-mutate";
/// Validation of policy creates and updates.
pub const VALIDATE_PATH: &str = "/nodenetworkconfigurationpolicies-validate";

/// The admission logic, with the clock it stamps with.
pub struct Admission {
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
    last_stamp: AtomicI64,
}

impl Default for Admission {
    fn default() -> Self {
        Self::with_clock(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
        })
    }
}

impl Admission {
    /// An admission handler whose timestamps come from `clock` (Unix nanoseconds).
    pub fn with_clock(clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self {
            clock: Box::new(clock),
            last_stamp: AtomicI64::new(0),
        }
    }

    /// Answers one AdmissionReview sent to `path`, in its wire form: like the Go API types, the
    /// JSON patch is a base64 string. A body that cannot be decoded, or an unknown path, gets an
    /// AdmissionReview that denies with a clear message; this never panics.
    pub fn review(&self, path: &str, body: &[u8]) -> Value {
        let mut out = serde_json::to_value(self.review_typed(path, body))
            .or_else(|e| {
                let failed = format!("failed to encode the review: {e}");
                serde_json::to_value(AdmissionResponse::invalid(failed).into_review())
            })
            .unwrap_or_default();
        if let Some(patch) = out.pointer_mut("/response/patch")
            && let Some(bytes) = patch.as_array().map(|a| {
                a.iter()
                    .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Vec<u8>>()
            })
        {
            use base64::Engine as _;
            *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        out
    }

    /// Answers one AdmissionReview sent to `path` with kube's typed review.
    #[tracing::instrument(skip(self, body), fields(uid, operation, allowed))]
    pub fn review_typed(&self, path: &str, body: &[u8]) -> AdmissionReview<DynamicObject> {
        let mut decoder = serde_json::Deserializer::from_slice(body);
        let review: AdmissionReview<DynamicObject> =
            match serde_path_to_error::deserialize(&mut decoder) {
                Ok(r) => r,
                Err(e) => return undecodable(body, &e).into_review(),
            };
        let req: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => {
                return AdmissionResponse::invalid(
                    "failed to read the AdmissionReview: it carries no request",
                )
                .into_review();
            }
        };
        let response = match path {
            MUTATE_PATH => mutate_main(&req),
            STATUS_MUTATE_PATH => self.mutate_status(&req),
            TIMESTAMP_MUTATE_PATH => self.mutate_timestamp(&req),
            VALIDATE_PATH => validate(&req),
            crate::slot_ledger::PATH => crate::slot_ledger::validate(&req, &self.now()),
            other => AdmissionResponse::from(&req)
                .deny(format!("no admission hook is served at {other}")),
        };
        let span = tracing::Span::current();
        span.record("uid", req.uid.as_str());
        span.record("operation", tracing::field::debug(&req.operation));
        span.record("allowed", response.allowed);
        tracing::debug!("reviewed");
        response.into_review()
    }

    fn mutate_status(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let object = object_value(req.object.as_ref());
        let empty = object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !empty {
            return AdmissionResponse::from(req);
        }
        let now = k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(self.stamp(None)))
            .map(Time)
            .ok();
        let conditions: Vec<Condition> = policy::TYPES
            .iter()
            .map(|t| Condition {
                type_: (*t).to_owned(),
                status: ConditionStatus::Unknown,
                reason: String::new(),
                message: String::new(),
                last_heartbeat_time: now.clone(),
                last_transition_time: now.clone(),
            })
            .collect();
        let op = if object.get("status").is_some_and(Value::is_object) {
            add(&["status", "conditions"], json!(conditions))
        } else {
            add(&["status"], json!({ "conditions": conditions }))
        };
        with_patch(req, vec![op])
    }

    fn mutate_timestamp(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let old = req
            .old_object
            .as_ref()
            .and_then(|o| o.metadata.annotations.as_ref())
            .and_then(|a| a.get(WEBHOOK_MUTATING_TIMESTAMP_ANNOTATION))
            .and_then(|v| v.parse::<i64>().ok());
        let stamp = self.stamp(old).to_string();
        let has_annotations = req
            .object
            .as_ref()
            .is_some_and(|o| o.metadata.annotations.is_some());
        let op = if has_annotations {
            add(
                &[
                    "metadata",
                    "annotations",
                    WEBHOOK_MUTATING_TIMESTAMP_ANNOTATION,
                ],
                stamp.into(),
            )
        } else {
            add(
                &["metadata", "annotations"],
                json!({ WEBHOOK_MUTATING_TIMESTAMP_ANNOTATION: stamp }),
            )
        };
        with_patch(req, vec![op])
    }

    /// The clock, as a Kubernetes time (the Unix epoch when it is out of range).
    fn now(&self) -> Time {
        let nanos = i128::from((self.clock)());
        Time(k8s_openapi::jiff::Timestamp::from_nanosecond(nanos).unwrap_or_default())
    }

    /// A timestamp later than every one this process handed out and than `after`.
    fn stamp(&self, after: Option<i64>) -> i64 {
        let now = (self.clock)();
        let floor = after.unwrap_or(0);
        let mut prev = self.last_stamp.load(Ordering::SeqCst);
        loop {
            // Saturating: an annotation of i64::MAX (set by anyone who can edit the policy)
            // must not overflow; the stamp then stays at i64::MAX.
            let next = now.max(prev.saturating_add(1)).max(floor.saturating_add(1));
            match self
                .last_stamp
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }
}

/// Drops conditions a client sent with the policy: only the controllers write them.
fn mutate_main(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let object = object_value(req.object.as_ref());
    let mut ops = Vec::new();
    if object.pointer("/status/conditions").is_some() {
        ops.push(PatchOperation::Remove(RemoveOperation {
            path: pointer(&["status", "conditions"]),
        }));
    }
    with_patch(req, ops)
}

fn validate(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let new = object_value(req.object.as_ref());
    let old = req.old_object.as_ref().map(|o| object_value(Some(o)));
    let name = req
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.clone())
        .unwrap_or_else(|| req.name.clone());
    let verdict = match req.operation {
        Operation::Create => rules::validate_create(&name, &new),
        Operation::Update => {
            rules::validate_update(&name, old.as_ref().unwrap_or(&Value::Null), &new)
        }
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => AdmissionResponse::from(req),
        Err(rejection) => {
            let mut resp = AdmissionResponse::from(req).deny(rejection.message());
            rejection.reason().clone_into(&mut resp.result.reason);
            resp.result.code = rejection.code();
            resp.result.details = Some(StatusDetails {
                name,
                group: req.kind.group.clone(),
                kind: req.kind.kind.clone(),
                uid: String::new(),
                causes: rejection
                    .problems()
                    .into_iter()
                    .map(|p| StatusCause {
                        reason: cause_reason(&rejection).to_owned(),
                        message: p.message,
                        field: p.field,
                    })
                    .collect(),
                retry_after_seconds: 0,
            });
            resp
        }
    }
}

/// The answer to a body that is not an AdmissionReview: it names the field that could not be
/// read (relative to the policy when it lies inside `request.object`) and carries the request's
/// uid when the body has one, so the API server can match the answer.
fn undecodable(
    body: &[u8],
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> AdmissionResponse {
    let path = e.path().to_string();
    let mut resp = AdmissionResponse::invalid(format!(
        "failed to decode the AdmissionReview: {path}: {}",
        e.inner()
    ));
    if let Ok(raw) = serde_json::from_slice::<Value>(body)
        && let Some(uid) = raw.pointer("/request/uid").and_then(Value::as_str)
    {
        uid.clone_into(&mut resp.uid);
    }
    if path != "." {
        let field = path.strip_prefix("request.object.").unwrap_or(&path);
        resp.result.details = Some(StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: e.inner().to_string(),
                field: field.to_owned(),
            }],
            retry_after_seconds: 0,
        });
    }
    resp
}

/// Kubernetes' cause reason for a field the rules refuse.
fn cause_reason(rejection: &rules::Rejection) -> &'static str {
    match rejection {
        rules::Rejection::Invalid(_) => "FieldValueInvalid",
        rules::Rejection::Forbidden(_) => "FieldValueForbidden",
    }
}

fn object_value(o: Option<&DynamicObject>) -> Value {
    o.and_then(|o| serde_json::to_value(o).ok())
        .unwrap_or(Value::Null)
}

fn pointer(segments: &[&str]) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::from_tokens(segments.iter().copied())
}

fn add(segments: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(segments),
        value,
    })
}

fn with_patch(
    req: &AdmissionRequest<DynamicObject>,
    ops: Vec<PatchOperation>,
) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if ops.is_empty() {
        return resp;
    }
    match resp.clone().with_patch(Patch(ops)) {
        Ok(r) => r,
        Err(e) => resp.deny(format!("failed to encode the patch: {e}")),
    }
}
