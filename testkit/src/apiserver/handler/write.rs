//! The write verbs: create, update, patch and server-side apply.

use http::Response;
use serde_json::{Value, json};

use super::Req;
use super::admit::warned;
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::fields;
use crate::apiserver::object;
use crate::apiserver::patch::{self, PatchKind};
use crate::apiserver::response::{Body, json_response};

impl Req {
    pub(super) async fn create(&self) -> ApiResult<Response<Body>> {
        warned(self.create_unwarned()).await
    }

    async fn create_unwarned(&self) -> ApiResult<Response<Body>> {
        let obj = patch::parse_yaml(&self.body)?;
        let obj = self.admit_create(obj, true).await?;
        if self.dry_run() {
            return Ok(json_response(201, &self.served(obj)));
        }
        let stored = self.ctx.store.create(&self.rt, obj)?;
        Ok(json_response(201, &self.served(stored)))
    }

    pub(super) async fn update(&self) -> ApiResult<Response<Body>> {
        warned(self.update_unwarned()).await
    }

    async fn update_unwarned(&self) -> ApiResult<Response<Body>> {
        let body = patch::parse_yaml(&self.body)?;
        let precondition = object::resource_version(&body).to_owned();
        for _ in 0..10 {
            let current = self.current()?;
            if !precondition.is_empty() && precondition != object::resource_version(&current) {
                return Err(self.stale());
            }
            match self.finish_update(&current, body.clone(), true).await {
                // A conflict without a precondition: read again and retry.
                Err(e) if e.code == 409 && e.reason == "Conflict" && precondition.is_empty() => {}
                r => return Ok(json_response(200, &self.served(r?))),
            }
        }
        Err(self.stale())
    }

    pub(super) async fn patch(&self, content_type: &str) -> ApiResult<Response<Body>> {
        warned(self.patch_unwarned(content_type)).await
    }

    async fn patch_unwarned(&self, content_type: &str) -> ApiResult<Response<Body>> {
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
                Err(e) if e.code == 409 && e.reason == "Conflict" && !explicit => {}
                r => return Ok(json_response(200, &self.served(r?))),
            }
        }
        Err(self.stale())
    }

    pub(super) async fn apply(&self) -> ApiResult<Response<Body>> {
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
                Err(e) if e.code == 409 && e.reason == "Conflict" => {}
                r => return Ok(json_response(200, &self.served(r?))),
            }
        }
        Err(self.stale())
    }

    pub(super) fn apply_conflict(&self, conflicts: &[fields::Conflict]) -> ApiError {
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
}
