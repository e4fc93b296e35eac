//! Deletion: finalizers and foreground deletion mark an object terminating, otherwise it is
//! removed (a CustomResourceDefinition with all its objects).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{CRD_GROUP, CRD_PLURAL, EventType, FOREGROUND, Inner, Store};
use crate::apiserver::error::{ApiError, ApiResult};
use crate::apiserver::object;
use crate::apiserver::resources::ResourceType;

impl Store {
    pub(super) fn remove_locked(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Value {
        let key = (rt.group.clone(), rt.plural.clone());
        if let Some(m) = inner.objects.get_mut(&key) {
            m.remove(&(ns.to_owned(), name.to_owned()));
        }
        object::meta_mut(&mut obj).insert("resourceVersion".into(), json!(inner.rv.to_string()));
        self.emit(inner, rt, EventType::Deleted, &obj, None);
        if rt.group == CRD_GROUP && rt.plural == CRD_PLURAL {
            let group = obj["spec"]["group"].as_str().unwrap_or_default().to_owned();
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if let Some(crt) = inner.registry.get(&group, &plural).cloned() {
                let gone = inner
                    .objects
                    .remove(&(group.clone(), plural.clone()))
                    .unwrap_or_default();
                for (_, mut o) in gone {
                    inner.rv += 1;
                    object::meta_mut(&mut o)
                        .insert("resourceVersion".into(), json!(inner.rv.to_string()));
                    self.emit(inner, &crt, EventType::Deleted, &o, None);
                }
                Arc::make_mut(&mut inner.registry).remove(&group, &plural);
            }
        }
        obj
    }

    /// Deletes an object: with finalizers it only gets a deletionTimestamp; without, it is removed.
    /// `precondition` is an optional `(uid, resourceVersion)` pair to check first; `foreground`
    /// adds the `foregroundDeletion` finalizer, which the garbage collector removes once the
    /// object's dependents are gone.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        precondition: (Option<&str>, Option<&str>),
        foreground: bool,
    ) -> ApiResult<Value> {
        let mut inner = self.lock();
        let key = (rt.group.clone(), rt.plural.clone());
        let Some(mut obj) = inner
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.to_owned(), name.to_owned())))
            .cloned()
        else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        check_precondition(rt, name, "UID", precondition.0, object::uid(&obj))?;
        check_precondition(
            rt,
            name,
            "ResourceVersion",
            precondition.1,
            object::resource_version(&obj),
        )?;
        if foreground && !object::is_terminating(&obj) {
            let meta = object::meta_mut(&mut obj);
            let mut fin = meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !fin.contains(&json!(FOREGROUND)) {
                fin.push(json!(FOREGROUND));
            }
            meta.insert("finalizers".into(), Value::Array(fin));
        }
        inner.rv += 1;
        if object::has_finalizers(&obj) {
            if object::is_terminating(&obj) {
                inner.rv -= 1;
                return Ok(obj);
            }
            let rv = inner.rv;
            let meta = object::meta_mut(&mut obj);
            meta.insert("deletionTimestamp".into(), json!(object::now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if rt.group.is_empty() && rt.plural == "namespaces" {
                obj["status"]["phase"] = json!("Terminating");
            }
            let prev = inner
                .objects
                .entry(key)
                .or_default()
                .insert((ns.to_owned(), name.to_owned()), obj.clone());
            self.emit(&mut inner, rt, EventType::Modified, &obj, prev);
            return Ok(obj);
        }
        Ok(self.remove_locked(&mut inner, rt, ns, name, obj))
    }
}

/// The 409 of a delete whose precondition (`what`: UID or `ResourceVersion`) does not hold.
fn check_precondition(
    rt: &ResourceType,
    name: &str,
    what: &str,
    wanted: Option<&str>,
    actual: &str,
) -> ApiResult<()> {
    match wanted {
        Some(w) if w != actual => Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "Precondition failed: {what} in precondition: {w}, {what} in object meta: {actual}"
            ),
        )),
        _ => Ok(()),
    }
}
