//! Decoding of the Kubernetes protobuf envelope for the few built-in kinds that kubectl's
//! generator commands send as protobuf (`kubectl create namespace|configmap|secret`).
//!
//! Only the fields those commands set are read: `ObjectMeta`'s name, generateName, namespace,
//! labels, annotations, ownerReferences and finalizers; Namespace `spec.finalizers`; ConfigMap
//! `data`, `binaryData`, `immutable`; Secret `data`, `stringData`, `type`, `immutable`; the
//! specs of the review kinds and `TokenRequest` (`kubectl auth can-i|whoami`, `kubectl create
//! token`). Other kinds are refused with 415.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

/// The magic prefix of Kubernetes protobuf bodies.
pub const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        let w = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                pos += 8;
                Wire::Other
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let b = buf.get(pos..end)?;
                pos = end;
                Wire::Bytes(b)
            }
            5 => {
                pos += 4;
                Wire::Other
            }
            _ => return None,
        };
        out.push((num, w));
    }
    (pos == buf.len()).then_some(out)
}

fn string(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// A map entry (`key = 1`, `value = 2`).
fn entry(b: &[u8]) -> Option<(String, &[u8])> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(k)) => key = string(k)?,
            (2, Wire::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Some((key, value))
}

fn insert_str(map: &mut Map<String, Value>, b: &[u8]) -> Option<()> {
    let (k, v) = entry(b)?;
    map.insert(k, json!(string(v)?));
    Some(())
}

fn insert_b64(map: &mut Map<String, Value>, b: &[u8]) -> Option<()> {
    let (k, v) = entry(b)?;
    map.insert(
        k,
        json!(base64::engine::general_purpose::STANDARD.encode(v)),
    );
    Some(())
}

fn owner_reference(b: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    for (n, w) in fields(b)? {
        let key = match n {
            1 => "kind",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            6 => "controller",
            7 => "blockOwnerDeletion",
            _ => continue,
        };
        match w {
            Wire::Bytes(s) => o.insert(key.into(), json!(string(s)?)),
            Wire::Varint(v) => o.insert(key.into(), json!(v != 0)),
            Wire::Other => None,
        };
    }
    Some(Value::Object(o))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    let (mut owners, mut finalizers) = (Vec::new(), Vec::new());
    for (n, w) in fields(b)? {
        let Wire::Bytes(s) = w else { continue };
        match n {
            1 => m.insert("name".into(), json!(string(s)?)),
            2 => m.insert("generateName".into(), json!(string(s)?)),
            3 => m.insert("namespace".into(), json!(string(s)?)),
            11 => insert_str(&mut labels, s).map(|()| Value::Null),
            12 => insert_str(&mut annotations, s).map(|()| Value::Null),
            13 => {
                owners.push(owner_reference(s)?);
                None
            }
            14 => {
                finalizers.push(json!(string(s)?));
                None
            }
            _ => None,
        };
    }
    m.retain(|_, v| v.as_str().is_none_or(|s| !s.is_empty()));
    for (k, v) in [("labels", labels), ("annotations", annotations)] {
        if !v.is_empty() {
            m.insert(k.into(), Value::Object(v));
        }
    }
    if !owners.is_empty() {
        m.insert("ownerReferences".into(), Value::Array(owners));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(m))
}

fn body(kind: &str, api_version: &str, raw: &[u8]) -> Option<Value> {
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    let (mut data, mut binary, mut string_data) = (Map::new(), Map::new(), Map::new());
    for (n, w) in fields(raw)? {
        match (kind, n, w) {
            (_, 1, Wire::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("Namespace", 2, Wire::Bytes(b)) => {
                let fin: Vec<Value> = fields(b)?
                    .into_iter()
                    .filter_map(|(n, w)| match (n, w) {
                        (1, Wire::Bytes(s)) => string(s).map(Value::String),
                        _ => None,
                    })
                    .collect();
                if !fin.is_empty() {
                    obj["spec"] = json!({"finalizers": fin});
                }
            }
            ("ConfigMap", 2, Wire::Bytes(b)) => insert_str(&mut data, b)?,
            ("ConfigMap", 3, Wire::Bytes(b)) => insert_b64(&mut binary, b)?,
            ("ConfigMap", 4, Wire::Varint(v)) | ("Secret", 5, Wire::Varint(v)) => {
                obj["immutable"] = json!(v != 0);
            }
            ("Secret", 2, Wire::Bytes(b)) => insert_b64(&mut data, b)?,
            ("Secret", 3, Wire::Bytes(b)) => obj["type"] = json!(string(b)?),
            ("Secret", 4, Wire::Bytes(b)) => insert_str(&mut string_data, b)?,
            _ => {}
        }
    }
    for (k, v) in [
        ("data", data),
        ("binaryData", binary),
        ("stringData", string_data),
    ] {
        if !v.is_empty() {
            obj[k] = Value::Object(v);
        }
    }
    Some(obj)
}

/// The string (and, in `repeated`, repeated string) fields of a message, by number.
fn strings(
    b: &[u8],
    names: &[(u64, &str)],
    repeated: &[(u64, &str)],
) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    for (n, w) in fields(b)? {
        let Wire::Bytes(s) = w else { continue };
        if let Some((_, k)) = names.iter().find(|(i, _)| *i == n) {
            m.insert((*k).to_owned(), json!(string(s)?));
        } else if let Some((_, k)) = repeated.iter().find(|(i, _)| *i == n) {
            let list = m.entry(*k).or_insert_with(|| json!([]));
            list.as_array_mut()?.push(json!(string(s)?));
        }
    }
    Some(m)
}

/// The review kinds kubectl sends as protobuf (`auth can-i`, `auth whoami`, `create token`):
/// their specs as JSON; `None` for other kinds.
fn review_body(kind: &str, api_version: &str, raw: &[u8]) -> Option<Value> {
    const RESOURCE: [(u64, &str); 7] = [
        (1, "namespace"),
        (2, "verb"),
        (3, "group"),
        (4, "version"),
        (5, "resource"),
        (6, "subresource"),
        (7, "name"),
    ];
    if !matches!(
        kind,
        "SelfSubjectAccessReview"
            | "SubjectAccessReview"
            | "LocalSubjectAccessReview"
            | "SelfSubjectReview"
            | "TokenReview"
            | "TokenRequest"
    ) {
        return None;
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "spec": {}});
    for (n, w) in fields(raw)? {
        let Wire::Bytes(b) = w else { continue };
        match n {
            1 => obj["metadata"] = object_meta(b)?,
            2 if kind == "TokenReview" => {
                obj["spec"] = Value::Object(strings(b, &[(1, "token")], &[(2, "audiences")])?);
            }
            2 if kind == "TokenRequest" => {
                let spec = obj["spec"].as_object_mut()?;
                for (n, w) in fields(b)? {
                    match (n, w) {
                        (1, Wire::Bytes(a)) => spec
                            .entry("audiences")
                            .or_insert_with(|| json!([]))
                            .as_array_mut()?
                            .push(json!(string(a)?)),
                        (3, Wire::Bytes(r)) => {
                            let names = [(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")];
                            spec.insert(
                                "boundObjectRef".into(),
                                Value::Object(strings(r, &names, &[])?),
                            );
                        }
                        (4, Wire::Varint(v)) => {
                            spec.insert("expirationSeconds".into(), json!(v));
                        }
                        _ => {}
                    }
                }
            }
            2 if kind.ends_with("AccessReview") => {
                let mut spec = strings(b, &[(3, "user"), (6, "uid")], &[(4, "groups")])?;
                for (n, w) in fields(b)? {
                    match (n, w) {
                        (1, Wire::Bytes(r)) => {
                            spec.insert(
                                "resourceAttributes".into(),
                                Value::Object(strings(r, &RESOURCE, &[])?),
                            );
                        }
                        (2, Wire::Bytes(r)) => {
                            let names = [(1, "path"), (2, "verb")];
                            spec.insert(
                                "nonResourceAttributes".into(),
                                Value::Object(strings(r, &names, &[])?),
                            );
                        }
                        _ => {}
                    }
                }
                obj["spec"] = Value::Object(spec);
            }
            _ => {}
        }
    }
    Some(obj)
}

/// Decodes a protobuf body into the JSON form of the object.
pub fn decode(buf: &[u8]) -> ApiResult<Value> {
    let bad = || ApiError::bad_request("invalid protobuf body");
    let rest = buf.strip_prefix(MAGIC).ok_or_else(bad)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(rest).ok_or_else(bad)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (n, w) in fields(tm).ok_or_else(bad)? {
                    match (n, w) {
                        (1, Wire::Bytes(s)) => api_version = string(s).ok_or_else(bad)?,
                        (2, Wire::Bytes(s)) => kind = string(s).ok_or_else(bad)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if let Some(obj) = review_body(&kind, &api_version, raw) {
        return Ok(obj);
    }
    if !matches!(kind.as_str(), "Namespace" | "ConfigMap" | "Secret") {
        return Err(ApiError::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf (only Namespace, ConfigMap and Secret bodies are decoded, got {kind}; send JSON, e.g. kubectl create -f)"
        )));
    }
    body(&kind, &api_version, raw).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![
            u8::try_from(n << 3 | 2).unwrap(),
            u8::try_from(b.len()).unwrap(),
        ];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn decodes_a_configmap() {
        let meta = [
            field(1, b"cfg"),
            field(3, b"team"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &tm), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cfg", "namespace": "team", "labels": {"a": "b"}},
                "data": {"k": "v"}})
        );
    }
}
