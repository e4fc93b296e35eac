//! The read verbs: get, list (with paging) and watch.

use std::convert::Infallible;
use std::time::Duration;

use base64::Engine;
use http::{Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use super::Req;
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::object;
use crate::apiserver::response::{Body, json_response};
use crate::apiserver::shape::{Shape, partial_metadata};
use crate::apiserver::table;
use crate::apiserver::watch::{self, WatchRequest};

impl Req {
    pub(super) fn watch(&self, shape: Shape) -> ApiResult<Response<Body>> {
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

    pub(super) fn list(&self, shape: Shape) -> ApiResult<Response<Body>> {
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
                    &table::render(&self.rt, &self.t.version, &items, &meta),
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

    pub(super) fn get(&self, shape: Shape) -> ApiResult<Response<Body>> {
        let obj = self.served(self.current()?);
        match shape {
            Shape::Table => {
                let meta = json!({"resourceVersion": object::resource_version(&obj)});
                Ok(json_response(
                    200,
                    &table::render(&self.rt, &self.t.version, &[obj], &meta),
                ))
            }
            Shape::Metadata => Ok(json_response(200, &partial_metadata(&obj))),
            Shape::Object => Ok(json_response(200, &obj)),
        }
    }
}
