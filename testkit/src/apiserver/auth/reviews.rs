//! The create-only review APIs: `TokenReview` and `SelfSubjectReview` (authentication.k8s.io/v1),
//! `SubjectAccessReview`, `LocalSubjectAccessReview` and `SelfSubjectAccessReview`
//! (authorization.k8s.io/v1), and the `serviceaccounts/<name>/token` subresource
//! (`TokenRequest`). Nothing is stored: each answers the question its body asks.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::rbac::{self, Attributes, ResourceAttributes};
use super::tokens::{BoundPod, Subject};
use super::{Auth, UserInfo};
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::object;
use crate::apiserver::resources::strs as strings;
use crate::apiserver::storage::Store;

/// The group of the authentication reviews.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";
/// The group of the authorization reviews.
pub const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";

/// Default and minimum lifetime of a requested token, in seconds (as Kubernetes).
const TOKEN_SECONDS: (i64, i64) = (3_600, 600);

/// Answers a review `plural` (in `namespace` for the local one) asked by `user`.
pub fn answer(
    auth: &Auth,
    store: &Store,
    plural: &str,
    namespace: &str,
    user: &UserInfo,
    body: &[u8],
) -> ApiResult<Value> {
    let mut review: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode the review: {e}")))?;
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match plural {
        "tokenreviews" => token_review(auth, store, &spec),
        "selfsubjectreviews" => json!({"userInfo": user}),
        "subjectaccessreviews" => access_review(store, &spec, &spec_user(&spec)?, "")?,
        "localsubjectaccessreviews" => access_review(store, &spec, &spec_user(&spec)?, namespace)?,
        _ => {
            let attrs = attributes(&spec, "")?;
            review["spec"] = attributes_spec(&attrs);
            decision(store, user, &attrs)
        }
    };
    review["status"] = status;
    review["metadata"]["creationTimestamp"] = Value::Null;
    Ok(review)
}

fn token_review(auth: &Auth, store: &Store, spec: &Value) -> Value {
    let token = spec["token"].as_str().unwrap_or_default();
    let audiences = strings(&spec["audiences"]);
    match auth.issuer().authenticate(store, token, &audiences) {
        Ok((user, accepted)) => {
            json!({"authenticated": true, "user": user, "audiences": accepted})
        }
        Err(e) => json!({"authenticated": false, "user": {}, "error": e.to_string()}),
    }
}

/// The user a `SubjectAccessReview` asks about (`spec.user`, `groups`, `extra`, `uid`).
fn spec_user(spec: &Value) -> ApiResult<UserInfo> {
    let user = UserInfo {
        username: spec["user"].as_str().unwrap_or_default().to_owned(),
        uid: spec["uid"].as_str().unwrap_or_default().to_owned(),
        groups: strings(&spec["groups"]),
        extra: serde_json::from_value::<BTreeMap<String, Vec<String>>>(spec["extra"].clone())
            .unwrap_or_default(),
    };
    if user.username.is_empty() && user.groups.is_empty() {
        return Err(invalid(
            "spec.user",
            "Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    Ok(user)
}

fn access_review(
    store: &Store,
    spec: &Value,
    user: &UserInfo,
    namespace: &str,
) -> ApiResult<Value> {
    let attrs = attributes(spec, namespace)?;
    Ok(decision(store, user, &attrs))
}

fn decision(store: &Store, user: &UserInfo, attrs: &Attributes) -> Value {
    let d = rbac::authorize(store, user, attrs);
    let mut status = json!({"allowed": d.allowed});
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

/// The attributes a review's spec asks about: exactly one of `resourceAttributes` and
/// `nonResourceAttributes`; a local review's namespace is its own.
fn attributes(spec: &Value, local_namespace: &str) -> ApiResult<Attributes> {
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    match (
        spec.get("resourceAttributes").filter(|v| v.is_object()),
        spec.get("nonResourceAttributes").filter(|v| v.is_object()),
    ) {
        (Some(r), None) => {
            let namespace = field(r, "namespace");
            if !local_namespace.is_empty() && namespace != local_namespace {
                return Err(invalid(
                    "spec.resourceAttributes.namespace",
                    &format!("Invalid value: \"{namespace}\": must match metadata.namespace"),
                ));
            }
            Ok(Attributes::Resource(ResourceAttributes {
                verb: field(r, "verb"),
                group: field(r, "group"),
                version: field(r, "version"),
                resource: field(r, "resource"),
                subresource: field(r, "subresource"),
                namespace,
                name: field(r, "name"),
            }))
        }
        (None, Some(n)) if local_namespace.is_empty() => Ok(Attributes::NonResource {
            verb: field(n, "verb"),
            path: field(n, "path"),
        }),
        _ => Err(invalid(
            "spec.resourceAttributes",
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

fn attributes_spec(attrs: &Attributes) -> Value {
    match attrs {
        Attributes::NonResource { verb, path } => {
            json!({"nonResourceAttributes": {"verb": verb, "path": path}})
        }
        Attributes::Resource(r) => {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("namespace", &r.namespace),
                ("verb", &r.verb),
                ("group", &r.group),
                ("version", &r.version),
                ("resource", &r.resource),
                ("subresource", &r.subresource),
                ("name", &r.name),
            ] {
                if !v.is_empty() {
                    m.insert(k.to_owned(), json!(v));
                }
            }
            json!({"resourceAttributes": m})
        }
    }
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(
        "SubjectAccessReview",
        AUTHORIZATION_GROUP,
        "",
        &[(field.to_owned(), message.to_owned())],
    )
}

/// `POST serviceaccounts/<name>/token`: a token for the ServiceAccount, bound to a Pod (with
/// the pod's node) when `spec.boundObjectRef` names one, valid `spec.expirationSeconds`
/// (default 3600, at least 600) for `spec.audiences` (the API server's by default).
pub fn token_request(
    auth: &Auth,
    store: &Store,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> ApiResult<Value> {
    let mut request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode the TokenRequest: {e}")))?;
    if store.get("", "serviceaccounts", namespace, name).is_none() {
        return Err(ApiError::not_found("", "serviceaccounts", name));
    }
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(TOKEN_SECONDS.0);
    if seconds < TOKEN_SECONDS.1 {
        return Err(ApiError::invalid(
            "TokenRequest",
            AUTHENTICATION_GROUP,
            name,
            &[(
                "spec.expirationSeconds".to_owned(),
                format!(
                    "Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
            )],
        ));
    }
    let bound = &spec["boundObjectRef"];
    let subject = match bound["kind"].as_str() {
        None | Some("") => Subject::ServiceAccount {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        Some("Pod") => Subject::Pod(bound_pod(store, namespace, name, bound)?),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "cannot bind a token to a {other}: only Pod is supported"
            )));
        }
    };
    let exp = jiff::Timestamp::now().as_second().saturating_add(seconds);
    let token = auth
        .issuer()
        .mint(subject, strings(&spec["audiences"]), Some(exp));
    let expires = jiff::Timestamp::from_second(exp)
        .map(|t| t.to_string())
        .unwrap_or_default();
    request["spec"]["expirationSeconds"] = json!(seconds);
    request["metadata"] =
        json!({"name": name, "namespace": namespace, "creationTimestamp": object::now()});
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(request)
}

/// The pod a token is bound to: it must exist, run as the ServiceAccount, and match a given uid.
fn bound_pod(store: &Store, namespace: &str, account: &str, bound: &Value) -> ApiResult<BoundPod> {
    let pod_name = bound["name"].as_str().unwrap_or_default();
    let pod = store
        .get("", "pods", namespace, pod_name)
        .ok_or_else(|| ApiError::not_found("", "pods", pod_name))?;
    let uid = object::uid(&pod).to_owned();
    if bound["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u != uid)
    {
        return Err(ApiError::conflict(
            "",
            "pods",
            pod_name,
            "the UID in the bound object reference does not match the pod's",
        ));
    }
    let runs_as = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    if runs_as != account {
        return Err(ApiError::bad_request(format!(
            "cannot bind token for serviceaccount \"{account}\" to pod running with different serviceaccount name."
        )));
    }
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let node_uid = store
        .get("", "nodes", "", &node_name)
        .map(|n| object::uid(&n).to_owned())
        .unwrap_or_default();
    Ok(BoundPod {
        namespace: namespace.to_owned(),
        service_account: account.to_owned(),
        pod_name: pod_name.to_owned(),
        pod_uid: uid,
        node_name,
        node_uid,
    })
}
