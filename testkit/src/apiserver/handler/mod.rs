//! HTTP request routing and the API verbs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::admission::{self, Attributes};
use super::discovery;
use super::error::{ApiError, ApiResult, qualified};
use super::fields;
use super::metrics::Metrics;
use super::object;
use super::patch::{self, PatchKind};
use super::resources::ResourceType;
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};
use super::storage::Store;
use super::table;
use super::watch::{self, WatchRequest};

/// Response body type.
pub type Body = BoxBody<Bytes, Infallible>;

/// What the handlers share.
#[derive(Debug)]
pub struct Ctx {
    /// Object storage.
    pub store: Arc<Store>,
    /// Request counters.
    pub metrics: Arc<Metrics>,
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

/// A JSON response.
pub fn json_response(code: u16, v: &Value) -> Response<Body> {
    bytes_response(code, "application/json", Bytes::from(v.to_string()))
}

fn bytes_response(code: u16, ct: &str, b: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(b).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(ct) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The `Status` response for an error.
pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status())
}

/// How objects are answered, from the Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1` Table (`as=Table`).
    Table,
    /// `PartialObjectMetadata` (`as=PartialObjectMetadata[List]`).
    Metadata,
}

/// The `PartialObjectMetadata` form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
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
    let manager = q
        .get("fieldManager")
        .map(str::to_owned)
        .unwrap_or_else(|| user_agent.split('/').next().unwrap_or("unknown").to_owned());
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
    let req = Req {
        ctx: ctx.clone(),
        rt,
        t: target,
        q,
        manager,
        body,
    };
    let verb = match (&parts.method, req.t.name.is_some()) {
        (&Method::GET, false) if req.q.flag("watch") => "watch",
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
    ctx.metrics.inc(verb, &resource);
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

    fn watch(&self, shape: Shape) -> ApiResult<Response<Body>> {
        let (labels, fields) = self.selectors()?;
        let timeout = self
            .q
            .get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1800u64);
        let wr = WatchRequest {
            rt: self.rt.clone(),
            version: self.t.version.clone(),
            namespace: self.t.namespace.clone(),
            labels,
            fields,
            resource_version: self.q.get("resourceVersion").map(str::to_owned),
            send_initial_events: self.q.flag("sendInitialEvents"),
            bookmarks: self.q.flag("allowWatchBookmarks"),
            timeout: Duration::from_secs(timeout),
            bookmark_interval: self.ctx.bookmark_interval,
            shape,
        };
        let rx = watch::start(self.ctx.store.clone(), wr, self.ctx.shutdown.clone());
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        r.headers_mut().insert(
            header::TRANSFER_ENCODING,
            header::HeaderValue::from_static("chunked"),
        );
        Ok(r)
    }

    fn list(&self, shape: Shape) -> ApiResult<Response<Body>> {
        let (labels, fields) = self.selectors()?;
        let (items, rv) =
            self.ctx
                .store
                .list(&self.rt.group, &self.rt.plural, self.t.namespace.as_deref());
        let mut items: Vec<Value> = items
            .into_iter()
            .filter(|o| labels.matches_object(o) && fields.matches(o))
            .collect();
        let start = self
            .q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))
            })
            .transpose()?;
        if let Some(start) = start {
            items.retain(|o| format!("{}\u{0}{}", object::namespace(o), object::name(o)) > start);
        }
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if let Some(limit) = self
            .q
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            && items.len() > limit
        {
            let remaining = items.len() - limit;
            items.truncate(limit);
            if let Some(last) = items.last() {
                let key = format!("{}\u{0}{}", object::namespace(last), object::name(last));
                meta["continue"] =
                    json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key));
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        let items: Vec<Value> = items.into_iter().map(|o| self.served(o)).collect();
        match shape {
            Shape::Table => {
                return Ok(json_response(
                    200,
                    &table::render(&self.rt, &self.t.version, &items, meta),
                ));
            }
            Shape::Metadata => {
                let items: Vec<Value> = items.iter().map(partial_metadata).collect();
                return Ok(json_response(
                    200,
                    &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
                ));
            }
            Shape::Object => {}
        }
        Ok(json_response(
            200,
            &json!({"kind": self.rt.list_kind, "apiVersion": self.api_version(), "metadata": meta, "items": items}),
        ))
    }

    fn current(&self) -> ApiResult<Value> {
        self.ctx
            .store
            .get(&self.rt.group, &self.rt.plural, self.ns(), self.name())
            .ok_or_else(|| ApiError::not_found(&self.rt.group, &self.rt.plural, self.name()))
    }

    fn get(&self, shape: Shape) -> ApiResult<Response<Body>> {
        let obj = self.served(self.current()?);
        match shape {
            Shape::Table => {
                let meta = json!({"resourceVersion": object::resource_version(&obj)});
                Ok(json_response(
                    200,
                    &table::render(&self.rt, &self.t.version, &[obj], meta),
                ))
            }
            Shape::Metadata => Ok(json_response(200, &partial_metadata(&obj))),
            Shape::Object => Ok(json_response(200, &obj)),
        }
    }

    fn attrs<'a>(&'a self, op: &'a str, name: &'a str, old: Option<&'a Value>) -> Attributes<'a> {
        Attributes {
            rt: &self.rt,
            version: &self.t.version,
            subresource: &self.t.sub,
            operation: op,
            name,
            namespace: self.ns(),
            old,
        }
    }

    fn writer<'a>(&'a self, sub: &'a str, api_version: &'a str) -> fields::Writer<'a> {
        fields::Writer {
            manager: &self.manager,
            subresource: sub,
            api_version,
            schema: self.schema(),
        }
    }

    fn schema(&self) -> Option<&Value> {
        self.rt.schemas.get(&self.t.version)
    }

    fn normalize(&self, obj: &mut Value) -> ApiResult<()> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(k) = obj["kind"].as_str()
            && k != self.rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({k}) does not match the kind of the resource ({})",
                self.rt.kind
            )));
        }
        obj["kind"] = json!(self.rt.kind);
        obj["apiVersion"] = json!(self.rt.api_version(&self.rt.storage_version));
        let ns = self.t.namespace.clone();
        let meta = object::meta_mut(obj);
        match (self.rt.namespaced, ns) {
            (true, Some(ns)) => {
                if let Some(n) = meta.get("namespace").and_then(Value::as_str)
                    && !n.is_empty()
                    && n != ns
                {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                meta.insert("namespace".into(), json!(ns));
            }
            (true, None) => return Err(ApiError::bad_request("a namespace is required")),
            (false, _) => {
                meta.remove("namespace");
            }
        }
        if let Some(s) = self.schema() {
            let unknown = schema::prune_and_default(obj, s);
            if !unknown.is_empty() && self.q.get("fieldValidation") == Some("Strict") {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{}.{} \"{}\" is invalid: strict decoding error: {}",
                    self.rt.kind,
                    self.rt.group,
                    object::name(obj),
                    list.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn validate_schema(&self, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
        if let Some(s) = self.schema() {
            let mut errs = schema::validate(obj, s)?;
            if errs.is_empty() {
                errs = schema::validate_cel(obj, s, old);
            }
            if !errs.is_empty() {
                return Err(ApiError::invalid(
                    &self.rt.kind,
                    &self.rt.group,
                    object::name(obj),
                    errs,
                ));
            }
        }
        Ok(())
    }

    /// Kind-specific fields the server fills in.
    fn prepare(&self, obj: &mut Value, old: Option<&Value>) {
        if self.rt.group.is_empty() && self.rt.plural == "namespaces" && old.is_none() {
            if !obj["spec"].is_object() {
                obj["spec"] = json!({});
            }
            let fin = &mut obj["spec"]["finalizers"];
            if !fin
                .as_array()
                .is_some_and(|f| f.contains(&json!("kubernetes")))
            {
                let mut list = fin.as_array().cloned().unwrap_or_default();
                list.push(json!("kubernetes"));
                *fin = Value::Array(list);
            }
            obj["status"] = json!({"phase": "Active"});
            let name = object::name(obj).to_owned();
            let meta = object::meta_mut(obj);
            if !meta.get("labels").is_some_and(Value::is_object) {
                meta.insert("labels".into(), json!({}));
            }
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        if self.rt.group == "apiextensions.k8s.io" && self.rt.plural == "customresourcedefinitions"
        {
            crd_status(obj, old);
        }
    }

    /// Admission, defaults and validation for a create; returns the object to store.
    async fn admit_create(&self, mut obj: Value, record_manager: bool) -> ApiResult<Value> {
        self.normalize(&mut obj)?;
        let meta = object::meta_mut(&mut obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => {
                    let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_owned();
                    meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
                }
                _ => {
                    return Err(ApiError::invalid(
                        &self.rt.kind,
                        &self.rt.group,
                        "",
                        vec![(
                            "metadata.name".into(),
                            "Required value: name or generateName is required".into(),
                        )],
                    ));
                }
            }
        }
        if self.rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.prepare(&mut obj, None);
        let name = object::name(&obj).to_owned();
        admission::mutate(
            &self.ctx.store,
            &self.attrs("CREATE", &name, None),
            &mut obj,
        )
        .await?;
        self.normalize(&mut obj)?;
        self.validate_schema(&obj, None)?;
        admission::validate(
            &self.ctx.store,
            &self.attrs("CREATE", &name, None),
            Some(&obj),
        )
        .await?;
        if record_manager {
            let av = self.api_version();
            fields::record_update(None, &mut obj, self.writer("", &av));
        }
        Ok(obj)
    }

    async fn create(&self) -> ApiResult<Response<Body>> {
        let obj = patch::parse_yaml(&self.body)?;
        let obj = self.admit_create(obj, true).await?;
        if self.dry_run() {
            return Ok(json_response(201, &self.served(obj)));
        }
        let stored = self.ctx.store.create(&self.rt, obj)?;
        Ok(json_response(201, &self.served(stored)))
    }

    /// Keeps what a write to this (sub)resource may not change.
    fn scope(&self, current: &Value, proposed: Value) -> Value {
        let managed = proposed["metadata"].get("managedFields").cloned();
        let mut out = match self.t.sub.as_str() {
            "status" => {
                let mut out = current.clone();
                match proposed.get("status") {
                    Some(s) => out["status"] = s.clone(),
                    None => {
                        if let Some(m) = out.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                out
            }
            "finalize" => {
                let mut out = current.clone();
                out["spec"]["finalizers"] = proposed["spec"]["finalizers"].clone();
                out
            }
            _ => {
                let mut out = proposed;
                if self.rt.status_subresource {
                    match current.get("status") {
                        Some(s) => out["status"] = s.clone(),
                        None => {
                            if let Some(m) = out.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                out
            }
        };
        if let Some(mf) = managed {
            object::meta_mut(&mut out).insert("managedFields".into(), mf);
        }
        out
    }

    /// Admission, defaults, validation and storage of an update of `current`.
    async fn finish_update(
        &self,
        current: &Value,
        proposed: Value,
        record: bool,
    ) -> ApiResult<Value> {
        if !proposed.is_object() || !proposed["metadata"].is_object() {
            return Err(ApiError::bad_request(
                "the object must be a JSON object with metadata",
            ));
        }
        let mut obj = self.scope(current, proposed);
        if object::name(&obj) != self.name() {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                object::name(&obj),
                self.name()
            )));
        }
        self.normalize(&mut obj)?;
        self.prepare(&mut obj, Some(current));
        let name = self.name().to_owned();
        admission::mutate(
            &self.ctx.store,
            &self.attrs("UPDATE", &name, Some(current)),
            &mut obj,
        )
        .await?;
        self.normalize(&mut obj)?;
        obj = self.scope(current, obj);
        self.validate_schema(&obj, Some(current))?;
        admission::validate(
            &self.ctx.store,
            &self.attrs("UPDATE", &name, Some(current)),
            Some(&obj),
        )
        .await?;
        if record {
            let av = self.api_version();
            fields::record_update(Some(current), &mut obj, self.writer(&self.t.sub, &av));
        }
        if self.dry_run() {
            return Ok(obj);
        }
        self.ctx
            .store
            .update(&self.rt, object::resource_version(current), obj)
    }

    async fn update(&self) -> ApiResult<Response<Body>> {
        let body = patch::parse_yaml(&self.body)?;
        let precondition = object::resource_version(&body).to_owned();
        for _ in 0..10 {
            let current = self.current()?;
            if !precondition.is_empty() && precondition != object::resource_version(&current) {
                return Err(self.stale());
            }
            match self.finish_update(&current, body.clone(), true).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && precondition.is_empty() => {
                    continue;
                }
                r => return Ok(json_response(200, &self.served(r?))),
            }
        }
        Err(self.stale())
    }

    fn stale(&self) -> ApiError {
        ApiError::conflict(
            &self.rt.group,
            &self.rt.plural,
            self.name(),
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    async fn patch(&self, content_type: &str) -> ApiResult<Response<Body>> {
        let kind = PatchKind::from_content_type(content_type)?;
        if kind == PatchKind::Apply {
            return self.apply().await;
        }
        for _ in 0..10 {
            let current = self.current()?;
            let proposed = patch::patch(kind, &current, &self.body, self.rt.custom)?;
            let pre = object::resource_version(&proposed);
            let precondition = !pre.is_empty() && pre != object::resource_version(&current);
            if precondition {
                return Err(self.stale());
            }
            let explicit = kind != PatchKind::Json
                && patch::parse_json(&self.body)
                    .ok()
                    .is_some_and(|b| b["metadata"]["resourceVersion"].is_string());
            match self.finish_update(&current, proposed, true).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" && !explicit => continue,
                r => return Ok(json_response(200, &self.served(r?))),
            }
        }
        Err(self.stale())
    }

    async fn apply(&self) -> ApiResult<Response<Body>> {
        let mut applied = patch::parse_yaml(&self.body)?;
        if self.q.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        if object::name(&applied) != self.name() {
            return Err(ApiError::bad_request(
                "the name of the applied object does not match the name on the URL",
            ));
        }
        let force = self.q.flag("force");
        if let Some(m) = applied.as_object_mut() {
            match self.t.sub.as_str() {
                "status" => m.retain(|k, _| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                }),
                _ if self.rt.status_subresource => {
                    m.remove("status");
                }
                _ => {}
            }
        }
        if let Some(meta) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        let av = self.api_version();
        for _ in 0..10 {
            let current =
                self.ctx
                    .store
                    .get(&self.rt.group, &self.rt.plural, self.ns(), self.name());
            let merged = fields::apply(
                current.as_ref(),
                &applied,
                self.writer(&self.t.sub, &av),
                force,
            )
            .map_err(|c| self.apply_conflict(&c))?;
            let Some(current) = current else {
                if !self.t.sub.is_empty() {
                    return Err(ApiError::not_found(
                        &self.rt.group,
                        &self.rt.plural,
                        self.name(),
                    ));
                }
                let obj = self.admit_create(merged, false).await?;
                if self.dry_run() {
                    return Ok(json_response(201, &self.served(obj)));
                }
                match self.ctx.store.create(&self.rt, obj) {
                    Err(e) if e.code == 409 => continue,
                    r => return Ok(json_response(201, &self.served(r?))),
                }
            };
            match self.finish_update(&current, merged, false).await {
                Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
                r => return Ok(json_response(200, &self.served(r?))),
            }
        }
        Err(self.stale())
    }

    fn apply_conflict(&self, conflicts: &[fields::Conflict]) -> ApiError {
        let av = self.api_version();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {av}"), "field": f}))
            .collect();
        let text: Vec<String> = conflicts
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\" using {av}: {f}"))
            .collect();
        let n = conflicts.len();
        let plural = if n == 1 { "" } else { "s" };
        ApiError::new(409, "Conflict", format!("Apply failed with {n} conflict{plural}: {}", text.join("\n")))
            .with_details(json!({"name": self.name(), "group": self.rt.group, "kind": self.rt.plural, "causes": causes}))
    }

    async fn delete_one(&self, name: &str, options: &Value) -> ApiResult<Value> {
        let current = self
            .ctx
            .store
            .get(&self.rt.group, &self.rt.plural, self.ns(), name)
            .ok_or_else(|| ApiError::not_found(&self.rt.group, &self.rt.plural, name))?;
        admission::validate(
            &self.ctx.store,
            &self.attrs("DELETE", name, Some(&current)),
            None,
        )
        .await?;
        if self.dry_run() {
            return Ok(current);
        }
        let orphan =
            options["propagationPolicy"] == "Orphan" || options["orphanDependents"] == json!(true);
        if orphan {
            super::gc::orphan_dependents(&self.ctx.store, object::uid(&current));
        }
        let pre = &options["preconditions"];
        self.ctx.store.delete(
            &self.rt,
            self.ns(),
            name,
            (pre["uid"].as_str(), pre["resourceVersion"].as_str()),
            options["propagationPolicy"] == "Foreground",
        )
    }

    fn delete_options(&self) -> Value {
        let mut options = patch::parse_json(&self.body).unwrap_or(Value::Null);
        for k in ["propagationPolicy", "dryRun"] {
            if let Some(v) = self.q.get(k) {
                options[k] = json!(v);
            }
        }
        options
    }

    async fn delete(&self) -> ApiResult<Response<Body>> {
        let options = self.delete_options();
        let name = self.name().to_owned();
        let obj = self.delete_one(&name, &options).await?;
        Ok(json_response(200, &self.served(obj)))
    }

    async fn delete_collection(&self) -> ApiResult<Response<Body>> {
        let options = self.delete_options();
        let (labels, fields) = self.selectors()?;
        let (items, rv) =
            self.ctx
                .store
                .list(&self.rt.group, &self.rt.plural, self.t.namespace.as_deref());
        let mut out = Vec::new();
        for o in items
            .iter()
            .filter(|o| labels.matches_object(o) && fields.matches(o))
        {
            let name = object::name(o).to_owned();
            let ns = object::namespace(o).to_owned();
            let req = Req {
                ctx: self.ctx.clone(),
                rt: self.rt.clone(),
                t: Target {
                    namespace: Some(ns).filter(|n| !n.is_empty()),
                    name: Some(name.clone()),
                    ..self.t.clone()
                },
                q: Query(self.q.0.clone()),
                manager: self.manager.clone(),
                body: Bytes::new(),
            };
            match req.delete_one(&name, &options).await {
                Ok(o) => out.push(self.served(o)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json_response(
            200,
            &json!({"kind": self.rt.list_kind, "apiVersion": self.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": out}),
        ))
    }
}

/// Fills in a CustomResourceDefinition's status: accepted names, stored versions, conditions.
fn crd_status(obj: &mut Value, old: Option<&Value>) {
    let mut names = obj["spec"]["names"].clone();
    if names["singular"].is_null() {
        names["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if names["listKind"].is_null() {
        names["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    let mut stored: Vec<Value> = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    for v in obj["spec"]["versions"].as_array().into_iter().flatten() {
        if v["storage"] == json!(true) && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    let since = old
        .and_then(|o| {
            o["status"]["conditions"][0]["lastTransitionTime"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(object::now);
    obj["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": since},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": since},
        ],
    });
}
