//! A free-form nmstate network state, carried through the API without loss.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// An nmstate network state (`interfaces`, `routes`, `dns-resolver`, …) as an opaque JSON object.
///
/// The API server never validates it beyond "an object": its schema is `type: object` with
/// `x-kubernetes-preserve-unknown-fields: true`, and every key, known to us or not, round-trips
/// unchanged. nmstate itself is the validator (the webhook parses it with the nmstate crate).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct State(pub Map<String, Value>);

impl State {
    /// Whether the state carries no key at all (upstream treats it as a no-op apply).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The state as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

impl From<Map<String, Value>> for State {
    fn from(m: Map<String, Value>) -> Self {
        Self(m)
    }
}

impl TryFrom<Value> for State {
    type Error = Value;
    /// Accepts a JSON object; gives the value back otherwise.
    fn try_from(v: Value) -> Result<Self, Value> {
        match v {
            Value::Object(m) => Ok(Self(m)),
            other => Err(other),
        }
    }
}

impl JsonSchema for State {
    fn schema_name() -> Cow<'static, str> {
        "State".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}
