//! Field ownership (`metadata.managedFields`) and server-side apply, approximated.
//!
//! Ownership is tracked per `(manager, operation, subresource)` as a set of leaf paths: maps
//! are walked key by key, lists are atomic (owned as a whole, like a list without
//! `x-kubernetes-list-type: map`). The sets are stored in the real `FieldsV1` format.
//! Apply merges the applied configuration into the live object, removes the fields the
//! manager applied before and no longer applies (unless someone else owns them), and
//! reports a conflict when another manager owns a field the apply would change.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::object;

/// A field path: map keys from the root.
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

/// The leaf paths of an object that field ownership tracks.
pub fn leaf_paths(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(m) = v.as_object() {
        for (k, child) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    for (mk, mv) in child.as_object().into_iter().flatten() {
                        if !META_SKIP.contains(&mk.as_str()) {
                            collect(mv, vec!["metadata".into(), mk.clone()], &mut out);
                        }
                    }
                }
                _ => collect(child, vec![k.clone()], &mut out),
            }
        }
    }
    out
}

fn collect(v: &Value, prefix: Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                collect(c, p, out);
            }
        }
        _ => {
            out.insert(prefix);
        }
    }
}

/// The value at a path.
pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(p)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn overlap(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Whether applying `f` (a leaf of `applied`) touches the owned path `p`: an applied empty map
/// above `p` merges and does not touch it.
fn touches(f: &[String], p: &[String], applied: &Value) -> bool {
    overlap(f, p) && !(f.len() < p.len() && get_path(applied, f).is_some_and(Value::is_object))
}

/// Encodes a path set as `FieldsV1`.
pub fn to_fields_v1(set: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for p in path {
            let entry = cur
                .entry(format!("f:{p}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry {
                Value::Object(m) => cur = m,
                _ => break,
            }
        }
    }
    Value::Object(root)
}

/// Decodes `FieldsV1` into a path set (keys other than `f:` make their parent atomic).
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
    if m.keys().any(|k| !k.starts_with("f:") && k != ".") {
        if !prefix.is_empty() {
            out.insert(prefix);
        }
        return;
    }
    for (k, c) in m {
        if let Some(name) = k.strip_prefix("f:") {
            let mut p = prefix.clone();
            p.push(name.to_owned());
            decode(c, p, out);
        }
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

/// Records an `Update` write (create, update, non-apply patch): the manager takes the fields it
/// changed, other managers lose them.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: &str,
    api_version: &str,
) {
    let mut list = old.map(entries).unwrap_or_default();
    let new_paths = leaf_paths(new);
    let changed: BTreeSet<Path> = match old {
        None => new_paths.clone(),
        Some(o) => {
            let old_paths = leaf_paths(o);
            old_paths
                .union(&new_paths)
                .filter(|p| get_path(o, p) != get_path(new, p))
                .cloned()
                .collect()
        }
    };
    if changed.is_empty() {
        write_entries(new, &list);
        return;
    }
    for e in list.iter_mut() {
        if !e.same(manager, "Update", sub) {
            e.set.retain(|p| !changed.iter().any(|c| overlap(c, p)));
        }
    }
    let mine = upsert(&mut list, manager, "Update", sub, api_version);
    mine.set.retain(|p| new_paths.contains(p));
    mine.set
        .extend(changed.into_iter().filter(|p| new_paths.contains(p)));
    write_entries(new, &list);
}

/// A field another manager owns with a different value: `(manager, field)`.
pub type Conflict = (String, String);

fn deep_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `current` (None: the object is created).
/// Returns the merged object with updated `managedFields`, or the conflicts.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    sub: &str,
    force: bool,
    api_version: &str,
) -> Result<Value, Vec<Conflict>> {
    let applied_set = leaf_paths(applied);
    let Some(current) = current else {
        let mut obj = applied.clone();
        let mut list = Vec::new();
        upsert(&mut list, manager, "Apply", sub, api_version).set = applied_set;
        write_entries(&mut obj, &list);
        return Ok(obj);
    };
    let mut list = entries(current);
    let mut conflicts = Vec::new();
    for e in list.iter_mut() {
        if e.manager == manager {
            continue;
        }
        let mut lost = Vec::new();
        for p in &e.set {
            for f in &applied_set {
                if !touches(f, p, applied) {
                    continue;
                }
                let at = if p.len() > f.len() { p } else { f };
                if get_path(current, at) != get_path(applied, at) {
                    conflicts.push((e.manager.clone(), format!(".{}", at.join("."))));
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
        .find(|e| e.same(manager, "Apply", sub))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut merged = current.clone();
    deep_merge(&mut merged, applied);
    for p in previous.difference(&applied_set) {
        let owned_elsewhere = list
            .iter()
            .filter(|e| !e.same(manager, "Apply", sub))
            .any(|e| e.set.iter().any(|q| overlap(p, q)));
        if !owned_elsewhere && !applied_set.iter().any(|f| touches(f, p, applied)) {
            remove_path(&mut merged, p);
        }
    }
    upsert(&mut list, manager, "Apply", sub, api_version).set = applied_set;
    write_entries(&mut merged, &list);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"a": {"b": 1, "c": [1, 2]}, "d": {}}});
        let set = leaf_paths(&obj);
        assert_eq!(set.len(), 4);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn apply_conflicts_and_force() {
        let base = json!({"metadata": {"name": "a"}, "spec": {"size": 1, "color": "red"}});
        let a = apply(None, &base, "alice", "", false, "v1").unwrap();
        let bob = json!({"metadata": {"name": "a"}, "spec": {"size": 2}});
        let err = apply(Some(&a), &bob, "bob", "", false, "v1").unwrap_err();
        assert_eq!(err, vec![("alice".to_owned(), ".spec.size".to_owned())]);
        let b = apply(Some(&a), &bob, "bob", "", true, "v1").unwrap();
        assert_eq!(b["spec"]["size"], json!(2));
        // alice stops applying color: it is removed, size stays (bob owns it now).
        let alice2 = json!({"metadata": {"name": "a"}, "spec": {}});
        let c = apply(Some(&b), &alice2, "alice", "", false, "v1").unwrap();
        assert_eq!(c["spec"], json!({"size": 2}));
    }

    #[test]
    fn update_takes_ownership() {
        let a = apply(
            None,
            &json!({"spec": {"size": 1}}),
            "alice",
            "",
            false,
            "v1",
        )
        .unwrap();
        let mut b = a.clone();
        b["spec"]["size"] = json!(5);
        record_update(Some(&a), &mut b, "editor", "", "v1");
        let e = entries(&b);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].manager, "editor");
    }
}
