//! Field ownership (`metadata.managedFields`) and server-side apply, approximated.
//!
//! Ownership is tracked per `(manager, operation, subresource)` as a set of paths in the real
//! `FieldsV1` vocabulary: `f:<field>` for map keys, `k:{...}` for an item of a list declared
//! `x-kubernetes-list-type: map` (by its `x-kubernetes-list-map-keys`), `v:<value>` for an
//! item of a `set` list. Other lists are atomic (owned as a whole), as are all lists of kinds
//! without a schema (built-in kinds). The path of a keyed list item itself (`FieldsV1`'s `.`)
//! is owned too, so an item disappears when nobody owns it any more.
//!
//! Apply merges the applied configuration into the live object (keyed lists item by item),
//! removes the fields the manager applied before and no longer applies (unless someone else
//! owns them), and reports a conflict when another manager owns a field the apply would change.

mod entries;
mod paths;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use entries::upsert;
pub use entries::{Entry, entries, write_entries};
use paths::{
    NULL, child_schema, is_item, is_key_field, item_component, item_matches, list_keys, overlap,
    remove_path, touches,
};
pub use paths::{Path, from_fields_v1, get_path, leaf_paths, to_fields_v1};

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
    for e in &mut list {
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
                        deep_merge(existing, v, s);
                    }
                    Some(existing) if existing.is_array() && v.is_array() => {
                        deep_merge(existing, v, s);
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
            let _ = write!(s, "[{}]", parts.join(","));
        } else if let Some(v) = c.strip_prefix("v:") {
            let _ = write!(s, "[{v}]");
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
    for e in &mut list {
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
    use serde_json::json;

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
