//! Background garbage collection through ownerReferences, and namespace termination.
//!
//! An object whose ownerReferences all name uids that no longer exist is deleted (with the
//! usual finalizer rules). `propagationPolicy: Foreground` puts the `foregroundDeletion`
//! finalizer on the owner: its dependents are deleted, and the finalizer is removed once none
//! is left (whatever their `blockOwnerDeletion`). `Orphan` removes the owner's reference from
//! its dependents first. A terminating Namespace has its objects deleted and is removed once
//! it is empty.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::object;
use super::storage::{FOREGROUND, Store};

/// Removes the ownerReference to `owner_uid` from every object.
pub fn orphan_dependents(store: &Store, owner_uid: &str) {
    for (g, p, obj) in store.all_objects() {
        let refs = obj["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !refs.iter().any(|r| r["uid"] == owner_uid) {
            continue;
        }
        let Some(rt) = store.resource(&g, &p) else {
            continue;
        };
        let mut new = obj.clone();
        let kept: Vec<Value> = refs.into_iter().filter(|r| r["uid"] != owner_uid).collect();
        let meta = object::meta_mut(&mut new);
        if kept.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), json!(kept));
        }
        let _ = store.update(&rt, object::resource_version(&obj), new);
    }
}

/// One collection pass; returns how many deletions it started.
pub fn collect(store: &Store) -> usize {
    let uids = store.uids();
    let all = store.all_objects();
    let mut started = 0;
    let terminating_ns: Vec<String> = all
        .iter()
        .filter(|(g, p, o)| g.is_empty() && p == "namespaces" && object::is_terminating(o))
        .map(|(_, _, o)| object::name(o).to_owned())
        .collect();
    for (g, p, obj) in &all {
        if object::is_terminating(obj) {
            continue;
        }
        let refs = obj["metadata"]["ownerReferences"].as_array();
        let orphaned = refs.is_some_and(|r| {
            !r.is_empty()
                && r.iter()
                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
        });
        let in_dying_ns = terminating_ns.iter().any(|n| n == object::namespace(obj));
        if !(orphaned || in_dying_ns) {
            continue;
        }
        if start_delete(store, g, p, obj) {
            started += 1;
        }
    }
    for (g, p, owner) in &all {
        let fin = owner["metadata"]["finalizers"].as_array();
        if !object::is_terminating(owner) || !fin.is_some_and(|f| f.contains(&json!(FOREGROUND))) {
            continue;
        }
        let uid = object::uid(owner);
        let dependents: Vec<&(String, String, Value)> = all
            .iter()
            .filter(|(_, _, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
            })
            .collect();
        for (dg, dp, d) in &dependents {
            if !object::is_terminating(d) && start_delete(store, dg, dp, d) {
                started += 1;
            }
        }
        if dependents.is_empty()
            && let Some(rt) = store.resource(g, p)
        {
            let mut new = owner.clone();
            let kept: Vec<Value> = fin
                .into_iter()
                .flatten()
                .filter(|f| *f != FOREGROUND)
                .cloned()
                .collect();
            new["metadata"]["finalizers"] = Value::Array(kept);
            if store
                .update(&rt, object::resource_version(owner), new)
                .is_ok()
            {
                started += 1;
            }
        }
    }
    for ns in terminating_ns {
        let empty = !all.iter().any(|(_, _, o)| object::namespace(o) == ns);
        if !empty {
            continue;
        }
        if let (Some(rt), Some(obj)) = (
            store.resource("", "namespaces"),
            store.get("", "namespaces", "", &ns),
        ) {
            if obj["spec"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                continue;
            }
            let mut new = obj.clone();
            new["spec"]["finalizers"] = json!([]);
            if store
                .update(&rt, object::resource_version(&obj), new)
                .is_ok()
            {
                started += 1;
            }
        }
    }
    started
}

/// Runs collection after removals and every `interval`, until the shutdown signal.
pub async fn run(
    store: Arc<Store>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        while collect(&store) > 0 {}
        tokio::select! {
            () = store.removed.notified() => {}
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts deleting `obj` of kind `group`/`plural` in the background; whether that began.
fn start_delete(store: &Store, group: &str, plural: &str, obj: &Value) -> bool {
    store.resource(group, plural).is_some_and(|rt| {
        store
            .delete(
                &rt,
                object::namespace(obj),
                object::name(obj),
                (None, None),
                false,
            )
            .is_ok()
    })
}
