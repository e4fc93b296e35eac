//! What every write goes through before storage: normalization, scoping to the (sub)resource,
//! server-filled fields, admission and schema validation; admission's warnings on the answer.

use std::future::Future;

use http::Response;
use serde_json::{Value, json};

use super::Req;
use crate::apiserver::admission::warnings;
use crate::apiserver::admission::{self, Attributes};
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::fields;
use crate::apiserver::object;
use crate::apiserver::response::Body;
use crate::apiserver::schema;

/// Runs a write and adds the warnings admission gave (a policy binding's `Warn`) to its
/// answer as `Warning` headers.
pub(super) async fn warned(
    write: impl Future<Output = ApiResult<Response<Body>>>,
) -> ApiResult<Response<Body>> {
    // Boxed: a write's future is large, and this one would hold it inline.
    let (answer, given) = warnings::collect(Box::pin(write)).await;
    answer.map(|mut resp| {
        warnings::attach(&mut resp, &given);
        resp
    })
}

impl Req {
    pub(super) fn attrs<'a>(
        &'a self,
        op: &'a str,
        name: &'a str,
        old: Option<&'a Value>,
    ) -> Attributes<'a> {
        Attributes {
            rt: &self.rt,
            version: &self.t.version,
            subresource: &self.t.sub,
            operation: op,
            name,
            namespace: self.ns(),
            old,
            user: &self.user,
        }
    }

    pub(super) fn writer<'a>(&'a self, sub: &'a str, api_version: &'a str) -> fields::Writer<'a> {
        fields::Writer {
            manager: &self.manager,
            subresource: sub,
            api_version,
            schema: self.schema(),
        }
    }

    pub(super) fn schema(&self) -> Option<&Value> {
        self.rt.schemas.get(&self.t.version)
    }

    pub(super) fn normalize(&self, obj: &mut Value) -> ApiResult<()> {
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

    pub(super) fn validate_schema(&self, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
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
                    &errs,
                ));
            }
        }
        Ok(())
    }

    /// Kind-specific fields the server fills in.
    pub(super) fn prepare(&self, obj: &mut Value, old: Option<&Value>) {
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
    pub(super) async fn admit_create(
        &self,
        mut obj: Value,
        record_manager: bool,
    ) -> ApiResult<Value> {
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
                        &[(
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

    /// Keeps what a write to this (sub)resource may not change.
    pub(super) fn scope(&self, current: &Value, proposed: Value) -> Value {
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
    pub(super) async fn finish_update(
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
