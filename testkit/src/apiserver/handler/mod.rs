//! HTTP request routing: from a path and a method to a resource verb (read, write, delete),
//! one file each; the admission and validation every write goes through is in `admit`.

mod admit;
mod authz;
mod delete;
mod read;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::auth::{Attributes, Auth, UserInfo};
use super::discovery;
use super::error::{ApiError, ApiResult, qualified};
use super::metrics::Metrics;
use super::resources::ResourceType;
use super::response::{Body, bytes_response, error_response, json_response};
use super::selectors::{FieldSelector, LabelSelector};
use super::shape::Shape;
use super::storage::Store;

/// What the handlers share.
#[derive(Debug)]
pub struct Ctx {
    /// Object storage.
    pub store: Arc<Store>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// Authentication and authorization.
    pub auth: Arc<Auth>,
    /// Interval between watch bookmarks.
    pub bookmark_interval: Duration,
    /// Flips to true on shutdown; watches end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Query parameters.
#[derive(Debug, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// A parsed resource path.
#[derive(Debug, Clone)]
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: String,
}

fn parse_resource_path(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let mk = |ns: Option<&str>, r: &[&str]| -> Option<Target> {
        if r.is_empty() || r.len() > 3 || r.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(Target {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: r[0].to_owned(),
            namespace: ns.map(str::to_owned),
            name: r.get(1).map(|s| (*s).to_owned()),
            sub: r.get(2).map(|s| (*s).to_owned()).unwrap_or_default(),
        })
    };
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    if namespaced {
        mk(Some(rest[1]), &rest[2..])
    } else {
        mk(None, rest)
    }
}

/// Handles one request.
pub async fn handle(ctx: Arc<Ctx>, req: http::Request<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    match route(&ctx, &parts, body).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn route(
    ctx: &Arc<Ctx>,
    parts: &http::request::Parts,
    body: Bytes,
) -> ApiResult<Response<Body>> {
    let path = parts.uri.path().trim_end_matches('/');
    let q = Query::parse(parts.uri.query());
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let user = Arc::new(ctx.auth.authenticate(&ctx.store, &parts.headers, path)?);
    if !matches!(
        segs.as_slice(),
        ["api", "v1", _, ..] | ["apis", _, _, _, ..]
    ) {
        let verb = match parts.method {
            Method::HEAD => "get".to_owned(),
            ref m => m.as_str().to_lowercase(),
        };
        let attrs = Attributes::NonResource {
            verb,
            path: parts.uri.path().to_owned(),
        };
        ctx.auth.authorize(&ctx.store, &user, &attrs)?;
    }
    let reg = ctx.store.registry();
    let get = parts.method == Method::GET;
    match segs.as_slice() {
        ["version"] if get => return Ok(json_response(200, &discovery::version())),
        ["healthz" | "readyz" | "livez"] if get => {
            return Ok(bytes_response(200, "text/plain", Bytes::from_static(b"ok")));
        }
        ["metrics"] if get => {
            return Ok(bytes_response(
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                Bytes::from(ctx.metrics.encode()),
            ));
        }
        ["openapi", "v3"] if get => return Ok(json_response(200, &discovery::openapi_index(&reg))),
        ["openapi", "v3", "api", v] if get => {
            return discovery::openapi_group_version(&reg, "", v)
                .map(|d| json_response(200, &d))
                .ok_or_else(|| ApiError::no_route(path));
        }
        ["openapi", "v3", "apis", g, v] if get => {
            return discovery::openapi_group_version(&reg, g, v)
                .map(|d| json_response(200, &d))
                .ok_or_else(|| ApiError::no_route(path));
        }
        ["api"] if get => return Ok(json_response(200, &discovery::core_versions())),
        ["apis"] if get => return Ok(json_response(200, &discovery::groups(&reg))),
        ["api", "v1"] if get => {
            return Ok(json_response(
                200,
                &discovery::resource_list(&reg, "", "v1"),
            ));
        }
        ["apis", g] if get => {
            return discovery::group(&reg, g)
                .map(|v| json_response(200, &v))
                .ok_or_else(|| ApiError::no_route(path));
        }
        ["apis", g, v] if get => {
            let list = discovery::resource_list(&reg, g, v);
            if list["resources"].as_array().is_none_or(Vec::is_empty) {
                return Err(ApiError::no_route(path));
            }
            return Ok(json_response(200, &list));
        }
        _ => {}
    }
    let target = match segs.as_slice() {
        ["api", "v1", rest @ ..] => parse_resource_path("", "v1", rest),
        ["apis", g, v, rest @ ..] => parse_resource_path(g, v, rest),
        _ => None,
    }
    .ok_or_else(|| ApiError::no_route(path))?;
    let rt = reg
        .get(&target.group, &target.plural)
        .filter(|rt| rt.serves(&target.version))
        .cloned()
        .ok_or_else(|| ApiError::no_route(path))?;
    if target.namespace.is_some() && !rt.namespaced {
        return Err(ApiError::no_route(path));
    }
    let sub_ok = match target.sub.as_str() {
        "" => true,
        "token" => rt.group.is_empty() && rt.plural == "serviceaccounts",
        "status" => rt.status_subresource,
        "finalize" => rt.group.is_empty() && rt.plural == "namespaces",
        _ => false,
    };
    if !sub_ok {
        return Err(ApiError::no_route(path));
    }
    let mut resource = qualified(&rt.group, &rt.plural);
    if !target.sub.is_empty() {
        resource = format!("{resource}/{}", target.sub);
    }
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let shape = if accept.contains("as=Table") {
        Shape::Table
    } else if accept.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Object
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let manager = q.get("fieldManager").map_or_else(
        || user_agent.split('/').next().unwrap_or("unknown").to_owned(),
        str::to_owned,
    );
    if rt.namespaced && target.namespace.is_none() && target.name.is_some() {
        return Err(ApiError::no_route(path));
    }
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(&content_type));
    }
    let body = if content_type.contains("protobuf") {
        Bytes::from(super::proto::decode(&body)?.to_string())
    } else {
        body
    };
    let verb = match (&parts.method, target.name.is_some()) {
        (&Method::POST, true) if target.sub == "token" => "create",
        (&Method::GET, false) if q.flag("watch") => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "{} is not allowed here",
                parts.method
            )));
        }
    };
    let attrs = Attributes::Resource(authz::resource_attributes(&target, verb, &q));
    ctx.auth.authorize(&ctx.store, &user, &attrs)?;
    ctx.metrics.inc(verb, &resource);
    if target.sub == "token" || rt.is_review() {
        return authz::answer_review(ctx, &rt, &target, verb, &user, &body);
    }
    let req = Req {
        ctx: ctx.clone(),
        user,
        rt,
        t: target,
        q,
        manager,
        body,
    };
    match verb {
        "watch" => req.watch(shape),
        "list" => req.list(shape),
        "get" => req.get(shape),
        "create" => req.create().await,
        "update" => req.update().await,
        "patch" => req.patch(&content_type).await,
        "delete" => req.delete().await,
        _ => req.delete_collection().await,
    }
}

/// One resource request.
struct Req {
    ctx: Arc<Ctx>,
    /// Who is asking (authorization has allowed the request already).
    user: Arc<UserInfo>,
    rt: ResourceType,
    t: Target,
    q: Query,
    manager: String,
    body: Bytes,
}

impl Req {
    fn name(&self) -> &str {
        self.t.name.as_deref().unwrap_or_default()
    }

    fn ns(&self) -> &str {
        self.t.namespace.as_deref().unwrap_or_default()
    }

    fn api_version(&self) -> String {
        self.rt.api_version(&self.t.version)
    }

    fn served(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!(self.api_version());
        obj
    }

    fn dry_run(&self) -> bool {
        self.q.get("dryRun").is_some_and(|d| !d.is_empty())
    }

    fn selectors(&self) -> ApiResult<(LabelSelector, FieldSelector)> {
        Ok((
            LabelSelector::parse(self.q.get("labelSelector").unwrap_or_default())?,
            FieldSelector::parse(self.q.get("fieldSelector").unwrap_or_default())?,
        ))
    }

    fn current(&self) -> ApiResult<Value> {
        self.ctx
            .store
            .get(&self.rt.group, &self.rt.plural, self.ns(), self.name())
            .ok_or_else(|| ApiError::not_found(&self.rt.group, &self.rt.plural, self.name()))
    }

    fn stale(&self) -> ApiError {
        ApiError::conflict(
            &self.rt.group,
            &self.rt.plural,
            self.name(),
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
}
