//! The delete verbs: one object, or a collection by selectors.

use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};

use super::admit::warned;
use super::{Query, Req, Target};
use crate::apiserver::admission;
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::object;
use crate::apiserver::patch;
use crate::apiserver::response::{Body, json_response};

impl Req {
    pub(super) async fn delete_one(&self, name: &str, options: &Value) -> ApiResult<Value> {
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
            crate::apiserver::gc::orphan_dependents(&self.ctx.store, object::uid(&current));
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

    pub(super) fn delete_options(&self) -> Value {
        let mut options = patch::parse_json(&self.body).unwrap_or(Value::Null);
        for k in ["propagationPolicy", "dryRun"] {
            if let Some(v) = self.q.get(k) {
                options[k] = json!(v);
            }
        }
        options
    }

    pub(super) async fn delete(&self) -> ApiResult<Response<Body>> {
        warned(self.delete_unwarned()).await
    }

    async fn delete_unwarned(&self) -> ApiResult<Response<Body>> {
        let options = self.delete_options();
        let name = self.name().to_owned();
        let obj = self.delete_one(&name, &options).await?;
        Ok(json_response(200, &self.served(obj)))
    }

    pub(super) async fn delete_collection(&self) -> ApiResult<Response<Body>> {
        warned(self.delete_collection_unwarned()).await
    }

    async fn delete_collection_unwarned(&self) -> ApiResult<Response<Body>> {
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
                user: self.user.clone(),
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
