//! In-memory object storage with a global resourceVersion counter and an event log for watches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};

mod delete;
mod subscribe;

use super::error::{ApiError, ApiResult};
use super::object;
use super::resources::{Registry, ResourceType, from_crd};
use super::shape::Shape;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the event log and sent to watchers.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// API group of the object.
    pub group: String,
    /// Plural of the object's kind.
    pub plural: String,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (before it, for deletions), at the storage version.
    pub object: Value,
    /// The object before a modification.
    pub prev: Option<Value>,
    /// The object as watchers were sent it.
    pub encoded: Encoded,
}

/// An event's object as sent to watchers, per served version and shape: encoded once however
/// many watchers see the event (a thousand handlers watch every enactment and ledger).
#[derive(Debug, Default)]
pub struct Encoded(Mutex<Vec<(String, Shape, Bytes)>>);

impl Clone for Encoded {
    /// A cache: a copy starts empty.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Encoded {
    /// The encoding for `version` and `shape`, made by `encode` the first time it is asked for.
    pub fn get_or_encode(
        &self,
        version: &str,
        shape: Shape,
        encode: impl FnOnce() -> String,
    ) -> Bytes {
        let mut forms = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, b)) = forms.iter().find(|(v, s, _)| v == version && *s == shape) {
            return b.clone();
        }
        let b = Bytes::from(encode());
        forms.push((version.to_owned(), shape, b.clone()));
        b
    }
}

type ObjKey = (String, String);
type TypeKey = (String, String);

#[derive(Debug)]
struct Inner {
    rv: u64,
    registry: Arc<Registry>,
    objects: BTreeMap<TypeKey, BTreeMap<ObjKey, Value>>,
    log: VecDeque<Arc<Event>>,
    compacted: u64,
    window: usize,
}

/// The store shared by the request handlers, the garbage collector and persistence.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Notified after every change (garbage collection and persistence wait on it).
    pub changed: Notify,
    /// Notified after every removal (the garbage collector waits on it).
    pub removed: Notify,
}

/// The finalizer of foreground cascading deletion.
pub const FOREGROUND: &str = "foregroundDeletion";

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";

/// Retained events, a receiver for later ones, and the resourceVersion at subscription.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>, u64);

/// The persisted form of the store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The resourceVersion counter.
    pub resource_version: u64,
    /// Every object, each with its `(group, plural)`.
    pub objects: Vec<(String, String, Value)>,
}

impl Store {
    /// A store holding the default namespaces, or the content of a snapshot.
    pub fn new(window: usize, snapshot: Option<Snapshot>) -> Arc<Self> {
        let (tx, _) = broadcast::channel(4096);
        let mut inner = Inner {
            rv: 0,
            registry: Arc::new(Registry::default()),
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            compacted: 0,
            window: window.max(1),
        };
        if let Some(s) = snapshot {
            for (g, p, obj) in s.objects {
                if g == CRD_GROUP
                    && p == CRD_PLURAL
                    && let Ok(rt) = from_crd(&obj)
                {
                    Arc::make_mut(&mut inner.registry).insert(rt);
                }
                let key = (
                    object::namespace(&obj).to_owned(),
                    object::name(&obj).to_owned(),
                );
                inner.objects.entry((g, p)).or_default().insert(key, obj);
            }
            inner.rv = s.resource_version;
            inner.compacted = s.resource_version;
        } else {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                inner.rv += 1;
                let obj = json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(),
                        "creationTimestamp": object::now(),
                        "resourceVersion": inner.rv.to_string(),
                        "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                });
                inner
                    .objects
                    .entry((String::new(), "namespaces".into()))
                    .or_default()
                    .insert((String::new(), ns.to_owned()), obj);
            }
            inner.compacted = inner.rv;
        }
        Arc::new(Self {
            inner: Mutex::new(inner),
            tx,
            changed: Notify::new(),
            removed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The registry as it is now (a cheap shared snapshot).
    pub fn registry(&self) -> Arc<Registry> {
        self.lock().registry.clone()
    }

    /// A kind by group and plural.
    pub fn resource(&self, group: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.get(group, plural).cloned()
    }

    /// A snapshot for persistence.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let objects = inner
            .objects
            .iter()
            .flat_map(|((g, p), m)| m.values().map(move |o| (g.clone(), p.clone(), o.clone())))
            .collect();
        Snapshot {
            resource_version: inner.rv,
            objects,
        }
    }

    /// One object.
    pub fn get(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(group.to_owned(), plural.to_owned()))
            .and_then(|m| m.get(&(ns.to_owned(), name.to_owned())))
            .cloned()
    }

    /// All objects of a kind (in one namespace when `ns` is given), with the current resourceVersion.
    pub fn list(&self, group: &str, plural: &str, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .get(&(group.to_owned(), plural.to_owned()))
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        (items, inner.rv)
    }

    /// Every object of every kind, with its `(group, plural)`.
    pub fn all_objects(&self) -> Vec<(String, String, Value)> {
        self.snapshot().objects
    }

    fn emit(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        kind: EventType,
        obj: &Value,
        prev: Option<Value>,
    ) {
        let ev = Arc::new(Event {
            prev,
            rv: inner.rv,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: object::namespace(obj).to_owned(),
            kind,
            object: obj.clone(),
            encoded: Encoded::default(),
        });
        inner.log.push_back(ev.clone());
        while inner.log.len() > inner.window {
            if let Some(old) = inner.log.pop_front() {
                inner.compacted = old.rv;
            }
        }
        let _ = self.tx.send(ev);
        self.changed.notify_waiters();
        if kind == EventType::Deleted {
            self.removed.notify_waiters();
        }
    }

    /// Stores a new object; sets uid, creationTimestamp, generation and resourceVersion.
    pub fn create(&self, rt: &ResourceType, mut obj: Value) -> ApiResult<Value> {
        let mut inner = self.lock();
        let ns = object::namespace(&obj).to_owned();
        let name = object::name(&obj).to_owned();
        if rt.namespaced {
            let nsobj = inner
                .objects
                .get(&(String::new(), "namespaces".to_owned()))
                .and_then(|m| m.get(&(String::new(), ns.clone())));
            match nsobj {
                None => return Err(ApiError::not_found("", "namespaces", &ns)),
                Some(n) if object::is_terminating(n) => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            super::error::qualified(&rt.group, &rt.plural)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let key = (rt.group.clone(), rt.plural.clone());
        if inner
            .objects
            .get(&key)
            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
        {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        let crd = defined_type(rt, &obj)?;
        inner.rv += 1;
        let rv = inner.rv;
        let meta = object::meta_mut(&mut obj);
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(object::now()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.remove("deletionTimestamp");
        if let Some(t) = crd {
            Arc::make_mut(&mut inner.registry).insert(t);
        }
        inner
            .objects
            .entry(key)
            .or_default()
            .insert((ns, name), obj.clone());
        self.emit(&mut inner, rt, EventType::Added, &obj, None);
        Ok(obj)
    }

    /// Replaces a stored object if its resourceVersion is still `expected_rv`.
    ///
    /// Keeps the immutable metadata, moves `generation` only when the non-metadata (and, with a
    /// status subresource, non-status) content changed, and does nothing when the object is
    /// unchanged. An object that is being deleted and has no finalizers left is removed.
    pub fn update(&self, rt: &ResourceType, expected_rv: &str, mut obj: Value) -> ApiResult<Value> {
        let mut inner = self.lock();
        let ns = object::namespace(&obj).to_owned();
        let name = object::name(&obj).to_owned();
        let key = (rt.group.clone(), rt.plural.clone());
        let Some(old) = inner
            .objects
            .get(&key)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned()
        else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, &name));
        };
        if object::resource_version(&old) != expected_rv {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                &name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        {
            let meta = object::meta_mut(&mut obj);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            meta.insert("resourceVersion".into(), json!(expected_rv));
        }
        let gen_changed = object::spec_part(&old, rt.status_subresource)
            != object::spec_part(&obj, rt.status_subresource);
        if gen_changed {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            object::meta_mut(&mut obj).insert("generation".into(), json!(g));
        }
        if without_times(&old) == without_times(&obj) {
            return Ok(old);
        }
        let crd = defined_type(rt, &obj)?;
        inner.rv += 1;
        let rv = inner.rv;
        object::meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        if let Some(t) = crd {
            Arc::make_mut(&mut inner.registry).insert(t);
        }
        if object::is_terminating(&obj) && !object::has_finalizers(&obj) {
            return Ok(self.remove_locked(&mut inner, rt, &ns, &name, obj));
        }
        inner
            .objects
            .entry(key)
            .or_default()
            .insert((ns, name), obj.clone());
        self.emit(&mut inner, rt, EventType::Modified, &obj, Some(old));
        Ok(obj)
    }

    /// The uids of every stored object.
    pub fn uids(&self) -> BTreeSet<String> {
        self.lock()
            .objects
            .values()
            .flat_map(|m| m.values().map(|o| object::uid(o).to_owned()))
            .collect()
    }
}

/// The resource type a CustomResourceDefinition object defines; `None` for other kinds.
fn defined_type(rt: &ResourceType, obj: &Value) -> ApiResult<Option<ResourceType>> {
    if rt.group == CRD_GROUP && rt.plural == CRD_PLURAL {
        Ok(Some(from_crd(obj)?))
    } else {
        Ok(None)
    }
}

fn without_times(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(list) = v["metadata"]["managedFields"].as_array_mut() {
        for e in list {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_encoded_once_per_version_and_shape() {
        let encoded = Encoded::default();
        let calls = std::cell::Cell::new(0);
        let encode = |s: &str| {
            calls.set(calls.get() + 1);
            s.to_owned()
        };
        let a = encoded.get_or_encode("v1", Shape::Object, || encode("a"));
        let again = encoded.get_or_encode("v1", Shape::Object, || encode("b"));
        let other_version = encoded.get_or_encode("v1beta1", Shape::Object, || encode("c"));
        let metadata = encoded.get_or_encode("v1", Shape::Metadata, || encode("d"));
        assert_eq!((&a[..], &again[..]), (&b"a"[..], &b"a"[..]));
        assert_eq!((&other_version[..], &metadata[..]), (&b"c"[..], &b"d"[..]));
        assert_eq!(calls.get(), 3);
        // A copy of an event starts with nothing encoded.
        let copy = encoded.clone();
        assert_eq!(
            &copy.get_or_encode("v1", Shape::Object, || encode("e"))[..],
            b"e"
        );
    }
}
