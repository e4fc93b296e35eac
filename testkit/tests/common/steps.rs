//! The request-step language of the stand-in's conformance table: a step is one HTTP request
//! with what its answer must hold; `$rvN`/`$uidN`-style references name earlier answers.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{Value, json};

pub const W: &str = "/apis/example.com/v1/namespaces/default/widgets";
pub const CM: &str = "/api/v1/namespaces/default/configmaps";
pub const MERGE: &str = "application/merge-patch+json";
pub const JSONP: &str = "application/json-patch+json";
pub const SMP: &str = "application/strategic-merge-patch+json";
pub const APPLY: &str = "application/apply-patch+yaml";
/// Events the conformance servers retain for watches.
pub const WINDOW: usize = 40;
pub const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Debug, Clone)]
pub struct Step {
    pub method: &'static str,
    pub path: String,
    pub content_type: &'static str,
    pub accept: &'static str,
    pub body: Option<Value>,
    pub code: u16,
    pub has: Vec<(&'static str, Value)>,
    pub lacks: Vec<&'static str>,
    pub eventually: bool,
    pub watch: bool,
}

pub fn step(method: &'static str, path: &str, body: Option<Value>) -> Step {
    Step {
        method,
        path: path.to_owned(),
        content_type: "application/json",
        accept: "application/json",
        body,
        code: 200,
        has: Vec::new(),
        lacks: Vec::new(),
        eventually: false,
        watch: false,
    }
}

pub fn get(path: &str) -> Step {
    step("GET", path, None)
}
pub fn post(path: &str, body: Value) -> Step {
    step("POST", path, Some(body)).code(201)
}
pub fn put(path: &str, body: Value) -> Step {
    step("PUT", path, Some(body))
}
pub fn patch(path: &str, ct: &'static str, body: Value) -> Step {
    Step {
        content_type: ct,
        ..step("PATCH", path, Some(body))
    }
}
pub fn delete(path: &str) -> Step {
    step("DELETE", path, None)
}
/// A watch request; its answer is the first event.
pub fn watch(path: &str) -> Step {
    Step {
        watch: true,
        ..get(path)
    }
}

impl Step {
    pub fn code(mut self, c: u16) -> Self {
        self.code = c;
        self
    }
    pub fn has(mut self, pointer: &'static str, v: Value) -> Self {
        self.has.push((pointer, v));
        self
    }
    pub fn lacks(mut self, pointer: &'static str) -> Self {
        self.lacks.push(pointer);
        self
    }
    pub fn eventually(mut self) -> Self {
        self.eventually = true;
        self
    }
    pub fn accept(mut self, a: &'static str) -> Self {
        self.accept = a;
        self
    }
}

pub fn widget(name: &str, spec: Value) -> Value {
    let mut w =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}});
    w["spec"] = spec;
    w
}

pub fn cm(name: &str, extra: &Value) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}});
    json_patch::merge(&mut v, extra);
    v
}

pub fn gadget_crd() -> Value {
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "!has(self.label) || self.label != 'forbidden'", "message": "label is forbidden"}],
        "properties": {"port": {"x-kubernetes-int-or-string": true},
            "label": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "label is immutable"}]}}}}}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": schema},
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
            ]},
    })
}

pub fn gadget(version: &str, port: Value) -> Value {
    let mut g = json!({"apiVersion": format!("example.com/{version}"), "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}});
    g["spec"]["port"] = port;
    g
}

/// Replaces `$uidN` and `$rvN` with the uid / resourceVersion answered at step N.
pub fn substitute(s: &str, answers: &[Value]) -> String {
    let mut out = s.to_owned();
    for (i, a) in answers.iter().enumerate().rev() {
        let uid = a["metadata"]["uid"].as_str().unwrap_or_default();
        let rv = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        out = out
            .replace(&format!("$uid{i}"), uid)
            .replace(&format!("$rv{i}"), rv);
    }
    out
}

pub async fn send(client: &kube::Client, s: &Step, answers: &[Value]) -> (u16, Value) {
    let body = s
        .body
        .as_ref()
        .map(|b| substitute(&b.to_string(), answers).into_bytes())
        .unwrap_or_default();
    let req = http::Request::builder()
        .method(s.method)
        .uri(substitute(&s.path, answers))
        .header(http::header::CONTENT_TYPE, s.content_type)
        .header(http::header::ACCEPT, s.accept)
        .body(body)
        .unwrap();
    let resp = client.send(req.map(Into::into)).await.expect("send");
    let code = resp.status().as_u16();
    let mut body = resp.into_body();
    if s.watch {
        let mut buf = Vec::new();
        while !buf.contains(&b'\n') {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
            match frame {
                Ok(Some(Ok(f))) => buf.extend_from_slice(&f.into_data().unwrap_or_default()),
                _ => break,
            }
        }
        let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
        return (code, serde_json::from_slice(line).unwrap_or(Value::Null));
    }
    let bytes = body.collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn check(s: &Step, code: u16, v: &Value, answers: &[Value]) -> Result<(), String> {
    if code != s.code {
        return Err(format!("code {code}, want {}: {v}", s.code));
    }
    for (p, want) in &s.has {
        let want = match want {
            Value::String(w) => &json!(substitute(w, answers)),
            w => w,
        };
        if v.pointer(p) != Some(want) {
            return Err(format!("{p} = {:?}, want {want}: {v}", v.pointer(p)));
        }
    }
    for p in &s.lacks {
        if v.pointer(p).is_some() {
            return Err(format!("{p} should be absent: {v}"));
        }
    }
    Ok(())
}
