//! A request as authorization sees it (kube-apiserver's request attributes), and the
//! create-only reviews and `TokenRequest`s that are answered rather than stored.

use http::Response;

use super::{Ctx, Query, Target};
use crate::apiserver::auth::{self, ResourceAttributes, UserInfo};
use crate::apiserver::error::{ApiError, ApiResult, qualified};
use crate::apiserver::resources::ResourceType;
use crate::apiserver::response::{Body, json_response};

/// Who may do what, as kube-apiserver reads it from a request: a namespace's own path is in
/// that namespace, and a list or watch selecting `metadata.name=x` names `x`.
pub(super) fn resource_attributes(t: &Target, verb: &str, q: &Query) -> ResourceAttributes {
    let mut name = t.name.clone().unwrap_or_default();
    if name.is_empty() && matches!(verb, "list" | "watch") {
        let selected = q
            .get("fieldSelector")
            .unwrap_or_default()
            .split(',')
            .find_map(|term| {
                let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
                (k.trim() == "metadata.name").then(|| v.trim().to_owned())
            });
        name = selected.unwrap_or_default();
    }
    let namespace = match &t.namespace {
        Some(ns) => ns.clone(),
        None if t.group.is_empty() && t.plural == "namespaces" => name.clone(),
        None => String::new(),
    };
    ResourceAttributes {
        verb: verb.to_owned(),
        group: t.group.clone(),
        version: t.version.clone(),
        resource: t.plural.clone(),
        subresource: t.sub.clone(),
        namespace,
        name,
    }
}

/// A review or a `TokenRequest`: answered, never stored.
pub(super) fn answer_review(
    ctx: &Ctx,
    rt: &ResourceType,
    t: &Target,
    verb: &str,
    user: &UserInfo,
    body: &[u8],
) -> ApiResult<Response<Body>> {
    if verb != "create" {
        return Err(ApiError::method_not_allowed(format!(
            "{verb} is not supported on {}",
            qualified(&rt.group, &rt.plural)
        )));
    }
    let ns = t.namespace.as_deref().unwrap_or_default();
    let answer = if t.sub == "token" {
        auth::reviews::token_request(
            &ctx.auth,
            &ctx.store,
            ns,
            t.name.as_deref().unwrap_or_default(),
            body,
        )?
    } else {
        auth::reviews::answer(&ctx.auth, &ctx.store, &rt.plural, ns, user, body)?
    };
    Ok(json_response(201, &answer))
}
