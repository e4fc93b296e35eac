//! Field paths in the `FieldsV1` vocabulary: the leaf paths of an object under its schema,
//! walking and removing them, and the `FieldsV1` encoding.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path: `f:`/`k:`/`v:` components from the root.
pub type Path = Vec<String>;

pub(super) const META_SKIP: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

pub(super) static NULL: Value = Value::Null;

pub(super) fn child_schema<'a>(schema: &'a Value, key: &str) -> &'a Value {
    match schema["properties"].get(key) {
        Some(s) => s,
        None if schema["additionalProperties"].is_object() => &schema["additionalProperties"],
        None => &NULL,
    }
}

/// The list keys of an associative list, or `Some(empty)` for a set; None when atomic.
pub(super) fn list_keys(schema: &Value) -> Option<Vec<String>> {
    match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => {
            let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
                .as_array()?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            (!keys.is_empty()).then_some(keys)
        }
        Some("set") => Some(Vec::new()),
        _ => None,
    }
}

/// The `k:`/`v:` component of a list item, if the item can be addressed.
pub(super) fn item_component(item: &Value, keys: &[String]) -> Option<String> {
    if keys.is_empty() {
        return Some(format!("v:{item}"));
    }
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// The paths of an object that field ownership tracks, following `schema` (or none).
pub fn leaf_paths(v: &Value, schema: Option<&Value>) -> BTreeSet<Path> {
    let schema = schema.unwrap_or(&NULL);
    let mut out = BTreeSet::new();
    if let Some(m) = v.as_object() {
        for (k, child) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    for (mk, mv) in child.as_object().into_iter().flatten() {
                        if !META_SKIP.contains(&mk.as_str()) {
                            let p = vec!["f:metadata".to_owned(), format!("f:{mk}")];
                            collect(mv, &NULL, p, &mut out);
                        }
                    }
                }
                _ => collect(
                    child,
                    child_schema(schema, k),
                    vec![format!("f:{k}")],
                    &mut out,
                ),
            }
        }
    }
    out
}

pub(super) fn collect(v: &Value, schema: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = prefix.clone();
                p.push(format!("f:{k}"));
                collect(c, child_schema(schema, k), p, out);
            }
        }
        Value::Array(items) if list_keys(schema).is_some() => {
            let keys = list_keys(schema).unwrap_or_default();
            let item_schema = &schema["items"];
            for item in items {
                let Some(c) = item_component(item, &keys) else {
                    out.insert(prefix);
                    return;
                };
                let mut p = prefix.clone();
                p.push(c);
                if !keys.is_empty() {
                    collect_children(item, item_schema, &p, out);
                }
                out.insert(p);
            }
        }
        _ => {
            out.insert(prefix);
        }
    }
}

pub(super) fn collect_children(
    v: &Value,
    schema: &Value,
    prefix: &[String],
    out: &mut BTreeSet<Path>,
) {
    for (k, c) in v.as_object().into_iter().flatten() {
        let mut p = prefix.to_vec();
        p.push(format!("f:{k}"));
        collect(c, child_schema(schema, k), p, out);
    }
}

/// Whether a list item is the one a `k:`/`v:` component names.
pub(super) fn item_matches(comp: &str, item: &Value) -> bool {
    if let Some(keys) = comp.strip_prefix("k:") {
        serde_json::from_str::<Map<String, Value>>(keys)
            .is_ok_and(|keys| keys.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else if let Some(v) = comp.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|want| *item == want)
    } else {
        false
    }
}

pub(super) fn step<'a>(cur: &'a Value, comp: &str) -> Option<&'a Value> {
    match comp.strip_prefix("f:") {
        Some(k) => cur.as_object()?.get(k),
        None => cur.as_array()?.iter().find(|i| item_matches(comp, i)),
    }
}

pub(super) fn step_mut<'a>(cur: &'a mut Value, comp: &str) -> Option<&'a mut Value> {
    match comp.strip_prefix("f:") {
        Some(k) => cur.as_object_mut()?.get_mut(k),
        None => cur
            .as_array_mut()?
            .iter_mut()
            .find(|i| item_matches(comp, i)),
    }
}

/// The value at a path.
pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = step(cur, p)?;
    }
    Some(cur)
}

pub(super) fn remove_path(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !rest.is_empty() {
        if let Some(child) = step_mut(v, first) {
            remove_path(child, rest);
        }
        return;
    }
    match (first.strip_prefix("f:"), v) {
        (Some(k), Value::Object(m)) => {
            m.remove(k);
        }
        (None, Value::Array(a)) => a.retain(|i| !item_matches(first, i)),
        _ => {}
    }
}

/// Whether the path is a key field of a keyed list item (`.../k:{"type":..}/f:type`).
pub(super) fn is_key_field(p: &[String]) -> bool {
    let [.., item, field] = p else { return false };
    let (Some(keys), Some(field)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|k| k.contains_key(field))
}

pub(super) fn overlap(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

pub(super) fn is_item(comp: &str) -> bool {
    comp.starts_with("k:") || comp.starts_with("v:")
}

/// Whether applying `f` (a path of `applied`) touches the owned path `p`: an applied map or list
/// item above `p` merges and does not touch it.
pub(super) fn touches(f: &[String], p: &[String], applied: &Value) -> bool {
    overlap(f, p)
        && !(f.len() < p.len()
            && (f.last().is_some_and(|c| is_item(c))
                || get_path(applied, f).is_some_and(Value::is_object)))
}

/// Encodes a path set as `FieldsV1` (`.` marks a path owned along with its children).
pub fn to_fields_v1(set: &BTreeSet<Path>) -> Value {
    let paths: Vec<&[String]> = set.iter().map(Vec::as_slice).collect();
    build(&paths)
}

pub(super) fn build(paths: &[&[String]]) -> Value {
    let mut groups: std::collections::BTreeMap<&String, Vec<&[String]>> = Default::default();
    let mut itself = false;
    for p in paths {
        match p.split_first() {
            Some((first, rest)) => groups.entry(first).or_default().push(rest),
            None => itself = true,
        }
    }
    let mut m: Map<String, Value> = groups
        .into_iter()
        .map(|(k, sub)| (k.clone(), build(&sub)))
        .collect();
    if itself && !m.is_empty() {
        m.insert(".".into(), json!({}));
    }
    Value::Object(m)
}

/// Decodes `FieldsV1` into a path set (unknown prefixes make their parent atomic).
pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    decode(v, Vec::new(), &mut out);
    out
}

pub(super) fn decode(v: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
    let m = match v.as_object() {
        Some(m) if !m.is_empty() => m,
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix);
            }
            return;
        }
    };
    let known = |k: &str| k == "." || k.starts_with("f:") || is_item(k);
    if m.keys().any(|k| !known(k)) {
        if !prefix.is_empty() {
            out.insert(prefix);
        }
        return;
    }
    if m.contains_key(".") && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (k, c) in m.iter().filter(|(k, _)| *k != ".") {
        let mut p = prefix.clone();
        p.push(k.clone());
        decode(c, p, out);
    }
}
