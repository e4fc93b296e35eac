//! Field ownership (`metadata.managedFields`) and server-side apply, approximated.
//!
//! Ownership is tracked per `(manager, operation, subresource)` as a set of paths in the real
//! `FieldsV1` vocabulary: `f:<field>` for map keys, `k:{...}` for an item of a list declared
//! `x-kubernetes-list-type: map` (by its `x-kubernetes-list-map-keys`), `v:<value>` for an
//! item of a `set` list. Other lists are atomic (owned as a whole), as are all lists of kinds
//! without a schema (built-in kinds). The path of a keyed list item itself (FieldsV1's `.`)
//! is owned too, so an item disappears when nobody owns it any more.
//!
//! Apply merges the applied configuration into the live object (keyed lists item by item),
//! removes the fields the manager applied before and no longer applies (unless someone else
//! owns them), and reports a conflict when another manager owns a field the apply would change.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::object;

/// A field path: `f:`/`k:`/`v:` components from the root.
pub type Path = Vec<String>;

const META_SKIP: &[&str] = &[
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

static NULL: Value = Value::Null;

fn child_schema<'a>(schema: &'a Value, key: &str) -> &'a Value {
    match schema["properties"].get(key) {
        Some(s) => s,
        None if schema["additionalProperties"].is_object() => &schema["additionalProperties"],
        None => &NULL,
    }
}

/// The list keys of an associative list, or `Some(empty)` for a set; None when atomic.
fn list_keys(schema: &Value) -> Option<Vec<String>> {
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
fn item_component(item: &Value, keys: &[String]) -> Option<String> {
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

fn collect(v: &Value, schema: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
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
                out.insert(p.clone());
                if !keys.is_empty() {
                    collect_children(item, item_schema, p, out);
                }
            }
        }
        _ => {
            out.insert(prefix);
        }
    }
}

fn collect_children(v: &Value, schema: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
    for (k, c) in v.as_object().into_iter().flatten() {
        let mut p = prefix.clone();
        p.push(format!("f:{k}"));
        collect(c, child_schema(schema, k), p, out);
    }
}

/// Whether a list item is the one a `k:`/`v:` component names.
fn item_matches(comp: &str, item: &Value) -> bool {
    if let Some(keys) = comp.strip_prefix("k:") {
        serde_json::from_str::<Map<String, Value>>(keys)
            .is_ok_and(|keys| keys.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else if let Some(v) = comp.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|want| *item == want)
    } else {
        false
    }
}

fn step<'a>(cur: &'a Value, comp: &str) -> Option<&'a Value> {
    match comp.strip_prefix("f:") {
        Some(k) => cur.as_object()?.get(k),
        None => cur.as_array()?.iter().find(|i| item_matches(comp, i)),
    }
}

fn step_mut<'a>(cur: &'a mut Value, comp: &str) -> Option<&'a mut Value> {
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

fn remove_path(v: &mut Value, path: &[String]) {
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
fn is_key_field(p: &[String]) -> bool {
    let [.., item, field] = p else { return false };
    let (Some(keys), Some(field)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|k| k.contains_key(field))
}

fn overlap(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn is_item(comp: &str) -> bool {
    comp.starts_with("k:") || comp.starts_with("v:")
}

/// Whether applying `f` (a path of `applied`) touches the owned path `p`: an applied map or list
/// item above `p` merges and does not touch it.
fn touches(f: &[String], p: &[String], applied: &Value) -> bool {
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

fn build(paths: &[&[String]]) -> Value {
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

fn decode(v: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
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

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `""` or `status`.
    pub subresource: String,
    /// apiVersion of the write.
    pub api_version: String,
    /// Time of the last write.
    pub time: String,
    /// Owned paths.
    pub set: BTreeSet<Path>,
}

impl Entry {
    fn same(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

/// Reads `metadata.managedFields`.
pub fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
            set: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn write_entries(obj: &mut Value, list: &[Entry]) {
    let arr: Vec<Value> = list
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.set),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = object::meta_mut(obj);
    if arr.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(arr));
    }
}

fn upsert<'a>(
    list: &'a mut Vec<Entry>,
    manager: &str,
    op: &str,
    sub: &str,
    api_version: &str,
) -> &'a mut Entry {
    let idx = match list.iter().position(|e| e.same(manager, op, sub)) {
        Some(i) => i,
        None => {
            list.push(Entry {
                manager: manager.to_owned(),
                operation: op.to_owned(),
                subresource: sub.to_owned(),
                api_version: String::new(),
                time: String::new(),
                set: BTreeSet::new(),
            });
            list.len() - 1
        }
    };
    let e = &mut list[idx];
    e.api_version = api_version.to_owned();
    e.time = object::now();
    e
}

/// Who writes, and how the object's fields are laid out.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// Field manager.
    pub manager: &'a str,
    /// `""` or `status`.
    pub subresource: &'a str,
    /// apiVersion of the write.
    pub api_version: &'a str,
    /// The kind's openAPIV3Schema, if it has one.
    pub schema: Option<&'a Value>,
}

/// Records an `Update` write (create, update, non-apply patch): the manager takes the fields it
/// changed, other managers lose them.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: Writer<'_>) {
    let mut list = old.map(entries).unwrap_or_default();
    let new_paths = leaf_paths(new, w.schema);
    let changed: BTreeSet<Path> = match old {
        None => new_paths.clone(),
        Some(o) => {
            let old_paths = leaf_paths(o, w.schema);
            old_paths
                .union(&new_paths)
                .filter(|p| {
                    let (a, b) = (get_path(o, p), get_path(new, p));
                    // An item marker changes only when the item appears or disappears.
                    if p.last().is_some_and(|c| is_item(c)) {
                        a.is_some() != b.is_some()
                    } else {
                        a != b
                    }
                })
                .cloned()
                .collect()
        }
    };
    if changed.is_empty() {
        write_entries(new, &list);
        return;
    }
    for e in list.iter_mut() {
        if !e.same(w.manager, "Update", w.subresource) {
            e.set
                .retain(|p| !changed.iter().any(|c| overlap(c, p) && c.len() <= p.len()));
        }
    }
    let mine = upsert(&mut list, w.manager, "Update", w.subresource, w.api_version);
    mine.set.retain(|p| new_paths.contains(p));
    mine.set
        .extend(changed.into_iter().filter(|p| new_paths.contains(p)));
    write_entries(new, &list);
}

/// A field another manager owns with a different value: `(manager, field)`.
pub type Conflict = (String, String);

fn deep_merge(base: &mut Value, patch: &Value, schema: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                let s = child_schema(schema, k);
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v, s)
                    }
                    Some(existing) if existing.is_array() && v.is_array() => {
                        deep_merge(existing, v, s)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(p)) if list_keys(schema).is_some() => {
            let keys = list_keys(schema).unwrap_or_default();
            for item in p {
                let comp = item_component(item, &keys);
                let pos = comp
                    .as_deref()
                    .and_then(|c| b.iter().position(|i| item_matches(c, i)));
                match pos {
                    Some(i) if !keys.is_empty() => deep_merge(&mut b[i], item, &schema["items"]),
                    Some(_) => {}
                    None => b.push(item.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Display form of a path (`.spec.conditions[type="Ready"].status`).
fn display(path: &[String]) -> String {
    let mut s = String::new();
    for c in path {
        if let Some(f) = c.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = c.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = c.strip_prefix("v:") {
            s.push_str(&format!("[{v}]"));
        }
    }
    s
}

/// Server-side apply of `applied` by `w.manager` onto `current` (None: the object is created).
/// Returns the merged object with updated `managedFields`, or the conflicts.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    w: Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let applied_set = leaf_paths(applied, w.schema);
    let Some(current) = current else {
        let mut obj = applied.clone();
        let mut list = Vec::new();
        upsert(&mut list, w.manager, "Apply", w.subresource, w.api_version).set = applied_set;
        write_entries(&mut obj, &list);
        return Ok(obj);
    };
    let mut list = entries(current);
    let mut conflicts = Vec::new();
    for e in list.iter_mut() {
        if e.manager == w.manager {
            continue;
        }
        let mut lost = Vec::new();
        for p in &e.set {
            for f in &applied_set {
                if !touches(f, p, applied) {
                    continue;
                }
                let at = if p.len() > f.len() { p } else { f };
                if at.last().is_some_and(|c| is_item(c)) {
                    continue;
                }
                if get_path(current, at) != get_path(applied, at) {
                    conflicts.push((e.manager.clone(), display(at)));
                    lost.push(p.clone());
                }
            }
        }
        if force {
            for p in lost {
                e.set.remove(&p);
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        conflicts.dedup();
        return Err(conflicts);
    }
    let previous: BTreeSet<Path> = list
        .iter()
        .find(|e| e.same(w.manager, "Apply", w.subresource))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut merged = current.clone();
    deep_merge(&mut merged, applied, w.schema.unwrap_or(&NULL));
    // Shallowest first: an item goes as a whole; the key fields of an item that stays do not.
    let mut gone: Vec<&Path> = previous.difference(&applied_set).collect();
    gone.sort_by_key(|p| p.len());
    for p in gone {
        if is_key_field(p) {
            continue;
        }
        let owned_elsewhere = list
            .iter()
            .filter(|e| !e.same(w.manager, "Apply", w.subresource))
            .any(|e| e.set.iter().any(|q| overlap(p, q)));
        if !owned_elsewhere && !applied_set.iter().any(|f| touches(f, p, applied)) {
            remove_path(&mut merged, p);
        }
    }
    upsert(&mut list, w.manager, "Apply", w.subresource, w.api_version).set = applied_set;
    write_entries(&mut merged, &list);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            subresource: "",
            api_version: "v1",
            schema: None,
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"a": {"b": 1, "c": [1, 2]}, "d": {}}});
        let set = leaf_paths(&obj, None);
        assert_eq!(set.len(), 4);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn apply_conflicts_and_force() {
        let base = json!({"metadata": {"name": "a"}, "spec": {"size": 1, "color": "red"}});
        let a = apply(None, &base, w("alice"), false).unwrap();
        let bob = json!({"metadata": {"name": "a"}, "spec": {"size": 2}});
        let err = apply(Some(&a), &bob, w("bob"), false).unwrap_err();
        assert_eq!(err, vec![("alice".to_owned(), ".spec.size".to_owned())]);
        let b = apply(Some(&a), &bob, w("bob"), true).unwrap();
        assert_eq!(b["spec"]["size"], json!(2));
        // alice stops applying color: it is removed, size stays (bob owns it now).
        let alice2 = json!({"metadata": {"name": "a"}, "spec": {}});
        let c = apply(Some(&b), &alice2, w("alice"), false).unwrap();
        assert_eq!(c["spec"], json!({"size": 2}));
    }

    #[test]
    fn update_takes_ownership() {
        let a = apply(None, &json!({"spec": {"size": 1}}), w("alice"), false).unwrap();
        let mut b = a.clone();
        b["spec"]["size"] = json!(5);
        record_update(Some(&a), &mut b, w("editor"));
        let e = entries(&b);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].manager, "editor");
    }

    #[test]
    fn keyed_lists_are_shared_item_by_item() {
        let schema = json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}}}}}});
        let ws = |m| Writer {
            manager: m,
            subresource: "status",
            api_version: "v1",
            schema: Some(&schema),
        };
        let cond = |t: &str, s: &str| json!({"type": t, "status": s});
        let a = apply(
            None,
            &json!({"status": {"conditions": [cond("A", "True")]}}),
            ws("one"),
            false,
        )
        .unwrap();
        let b = apply(
            Some(&a),
            &json!({"status": {"conditions": [cond("B", "False")]}}),
            ws("two"),
            false,
        )
        .unwrap();
        assert_eq!(
            b["status"]["conditions"],
            json!([cond("A", "True"), cond("B", "False")])
        );
        let fv = &b["metadata"]["managedFields"][1]["fieldsV1"];
        assert_eq!(
            fv["f:status"]["f:conditions"]["k:{\"type\":\"B\"}"]["."],
            json!({})
        );
        // "two" changing A's status conflicts with "one".
        let err = apply(
            Some(&b),
            &json!({"status": {"conditions": [cond("A", "False"), cond("B", "False")]}}),
            ws("two"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err,
            vec![(
                "one".to_owned(),
                ".status.conditions[type=\"A\"].status".to_owned()
            )]
        );
        // "one" stops applying A: the item goes away, B stays.
        let c = apply(
            Some(&b),
            &json!({"status": {"conditions": []}}),
            ws("one"),
            false,
        )
        .unwrap();
        assert_eq!(c["status"]["conditions"], json!([cond("B", "False")]));
    }
}
