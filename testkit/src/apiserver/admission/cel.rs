//! The CEL environment admission expressions run in — webhooks' `matchConditions` and
//! `ValidatingAdmissionPolicies` alike: `object`, `oldObject`, `request` (with `userInfo`
//! and its `extra`), `namespaceObject`, `params` and `variables`, with the Kubernetes
//! function libraries of `kube-cel`.
//!
//! Objects are bound as plain maps: keys keep their spelling (`labels['nmstate.io/node']`
//! works), because admission objects have no schema here to tell properties from map keys.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel::extractors::This;
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use serde_json::{Value, json};

use super::Attributes;
use crate::apiserver::storage::Store;

/// A JSON value as a CEL value: integers as `int` (or `uint` beyond `i64`), other numbers
/// as `double`, objects as maps keyed by their property names unchanged.
pub(super) fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => map(o.iter().map(|(k, v)| (k.clone(), to_cel(v)))),
    }
}

/// A CEL map with string keys.
pub(super) fn map(entries: impl IntoIterator<Item = (String, Cel)>) -> Cel {
    let m: HashMap<Key, Cel> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), v))
        .collect();
    Cel::Map(Map { map: Arc::new(m) })
}

/// The `request` variable: the AdmissionReview request's fields CEL sees.
pub(super) fn request(a: &Attributes<'_>) -> Value {
    let gvk = json!({"group": a.rt.group, "version": a.version, "kind": a.rt.kind});
    let gvr = json!({"group": a.rt.group, "version": a.version, "resource": a.rt.plural});
    json!({
        "kind": gvk, "resource": gvr, "subResource": a.subresource,
        "requestKind": gvk, "requestResource": gvr, "requestSubResource": a.subresource,
        "name": a.name,
        "namespace": a.namespace,
        "operation": a.operation,
        // Every field present, empty or not, as in the typed request of the real server.
        "userInfo": {
            "username": a.user.username, "uid": a.user.uid,
            "groups": a.user.groups, "extra": a.user.extra,
        },
        "dryRun": false,
    })
}

/// The type names `type()` gives, bound as identifiers so that `type(x) == int` reads as in
/// Kubernetes (the CEL engine has no type values: types are compared by name).
const TYPES: [&str; 9] = [
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "list",
    "map",
    "null_type",
];

/// `type(x)`: the name of the value's type.
fn type_of(This(v): This<Cel>) -> Arc<String> {
    let name = match v {
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bool(_) => "bool",
        Cel::Bytes(_) => "bytes",
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Null => "null_type",
        Cel::Timestamp(_) => "google.protobuf.Timestamp",
        Cel::Duration(_) => "google.protobuf.Duration",
        _ => "object",
    };
    Arc::new(name.to_owned())
}

/// A bound CEL context for one admission request.
pub(super) struct Scope {
    ctx: Context<'static>,
}

impl Scope {
    /// Binds `object` (null on delete), `oldObject` (null on create), `request` and
    /// `namespaceObject` (null for cluster-scoped requests).
    pub(super) fn new(store: &Store, a: &Attributes<'_>, obj: Option<&Value>) -> Self {
        let mut ctx = Context::default();
        ctx.register_all();
        ctx.add_function("type", type_of);
        for t in TYPES {
            ctx.add_variable_from_value(t, Cel::String(Arc::new(t.to_owned())));
        }
        ctx.add_variable_from_value("object", obj.map_or(Cel::Null, to_cel));
        ctx.add_variable_from_value("oldObject", a.old.map_or(Cel::Null, to_cel));
        ctx.add_variable_from_value("request", to_cel(&request(a)));
        let ns = (!a.namespace.is_empty())
            .then(|| store.get("", "namespaces", "", a.namespace))
            .flatten();
        ctx.add_variable_from_value("namespaceObject", ns.as_ref().map_or(Cel::Null, to_cel));
        Self { ctx }
    }

    /// Binds (or rebinds) a variable, e.g. `params` or `variables`.
    pub(super) fn bind(&mut self, name: &str, value: Cel) {
        self.ctx.add_variable_from_value(name, value);
    }

    /// Compiles and runs an expression.
    pub(super) fn eval(&self, expression: &str) -> Result<Cel, String> {
        let program =
            Program::compile(expression).map_err(|e| format!("compilation failed: {e}"))?;
        program.execute(&self.ctx).map_err(|e| e.to_string())
    }

    /// Runs an expression that must give a bool.
    pub(super) fn test(&self, expression: &str) -> Result<bool, String> {
        match self.eval(expression)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::UserInfo;
    use crate::apiserver::resources::builtins;

    #[test]
    fn label_keys_keep_their_spelling_and_user_extra_is_bound() {
        let rt = builtins()
            .into_iter()
            .find(|r| r.plural == "configmaps")
            .unwrap();
        let mut user = UserInfo {
            username: "u".into(),
            ..Default::default()
        };
        user.extra.insert("k".into(), vec!["v".into()]);
        let a = Attributes {
            rt: &rt,
            version: "v1",
            subresource: "",
            operation: "CREATE",
            name: "c",
            namespace: "",
            old: None,
            user: &user,
        };
        let store = Store::new(10, None);
        let obj = json!({"metadata": {"labels": {"nmstate.io/node": "n1"}}, "n": 3});
        let s = Scope::new(&store, &a, Some(&obj));
        assert!(
            s.test("object.metadata.labels['nmstate.io/node'] == 'n1'")
                .unwrap()
        );
        assert!(s.test("object.n + 1 == 4").unwrap());
        assert!(
            s.test("type(object.n) == int && type(object.metadata) == map")
                .unwrap()
        );
        assert!(
            s.test("type('x') == string && type(oldObject) == null_type")
                .unwrap()
        );
        assert!(s.test("request.userInfo.extra['k'] == ['v']").unwrap());
        assert!(
            s.test("oldObject == null && namespaceObject == null")
                .unwrap()
        );
        assert!(
            s.test("object.n ==")
                .unwrap_err()
                .starts_with("compilation failed")
        );
        assert!(s.test("object.missing").is_err());
    }
}
