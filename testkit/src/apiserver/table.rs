//! `meta.k8s.io/v1` Table output for `kubectl get`, with CRD printer columns.
//!
//! Columns are NAME plus the version's `additionalPrinterColumns`, or NAME and AGE when a CRD
//! declares none (as the real API server does); built-in kinds get NAME and AGE only.

use serde_json::{Value, json};

use super::resources::ResourceType;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, String, bool),
}

fn parse_path(path: &str) -> Vec<Step> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = p.strip_prefix('$').unwrap_or(p);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_owned()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            let inner = r[..end].trim();
            rest = &r[end + 1..];
            if inner == "*" {
                steps.push(Step::All);
            } else if let Ok(i) = inner.parse() {
                steps.push(Step::Index(i));
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs, eq) = if let Some((l, r)) = f.split_once("!=") {
                    (l, r, false)
                } else if let Some((l, r)) = f.split_once("==") {
                    (l, r, true)
                } else {
                    continue;
                };
                let field = lhs.trim().trim_start_matches("@.").to_owned();
                let val = rhs
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_owned();
                steps.push(Step::Filter(field, val, eq));
            } else {
                steps.push(Step::Field(
                    inner.trim_matches(|c| c == '"' || c == '\'').to_owned(),
                ));
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    steps
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Evaluates a simple JSONPath (`.a.b`, `[0]`, `[*]`, `[?(@.x=="y")]`) on a value.
pub fn eval(path: &str, root: &Value) -> Vec<Value> {
    let mut cur = vec![root.clone()];
    for step in parse_path(path) {
        let mut next = Vec::new();
        for v in cur {
            match &step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f.as_str()) {
                        next.push(x.clone());
                    }
                }
                Step::Index(i) => {
                    if let Some(x) = v.get(*i) {
                        next.push(x.clone());
                    }
                }
                Step::All => next.extend(v.as_array().cloned().unwrap_or_default()),
                Step::Filter(field, want, eq) => {
                    for item in v.as_array().into_iter().flatten() {
                        let got = eval(&format!(".{field}"), item);
                        let hit = got.first().is_some_and(|g| scalar(g) == *want);
                        if hit == *eq {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// A Kubernetes-style short duration ("5s", "3m", "2h", "4d").
pub fn human_age(since: &str) -> String {
    let Ok(ts) = since.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(col_type: &str, values: &[Value]) -> Value {
    if values.is_empty() {
        return Value::Null;
    }
    if col_type == "date" {
        return json!(human_age(&scalar(&values[0])));
    }
    if values.len() == 1 {
        return match (col_type, &values[0]) {
            ("integer" | "number" | "boolean", v @ (Value::Number(_) | Value::Bool(_))) => {
                v.clone()
            }
            (_, v) => json!(scalar(v)),
        };
    }
    json!(values.iter().map(scalar).collect::<Vec<_>>().join(","))
}

/// Renders objects (served at `version`) as a Table.
pub fn render(rt: &ResourceType, version: &str, objects: &[Value], list_meta: &Value) -> Value {
    let cols = rt.columns.get(version).cloned().unwrap_or_default();
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    let age = cols.is_empty();
    for c in &cols {
        defs.push(json!({"name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority}));
    }
    if age {
        defs.push(json!({"name": "Age", "type": "string", "format": "",
            "description": "CreationTimestamp", "priority": 0}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for c in &cols {
                cells.push(cell(&c.type_, &eval(&c.json_path, o)));
            }
            if age {
                cells.push(json!(human_age(
                    o["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or_default()
                )));
            }
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                }
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_forms() {
        let o = json!({"status": {"conditions": [
            {"type": "Available", "status": "False", "reason": "A"},
            {"type": "Degraded", "status": "True", "reason": "B"}
        ]}, "spec": {"size": 3}});
        assert_eq!(eval(".spec.size", &o), vec![json!(3)]);
        assert_eq!(
            eval(".status.conditions[?(@.status==\"True\")].type", &o),
            vec![json!("Degraded")]
        );
        assert_eq!(
            eval(".status.conditions[?(@.type=='Available')].reason", &o),
            vec![json!("A")]
        );
        assert_eq!(eval(".status.conditions[*].type", &o).len(), 2);
        assert_eq!(eval(".status.conditions[1].reason", &o), vec![json!("B")]);
        assert!(eval(".missing.x", &o).is_empty());
    }
}
