//! `kubectl nmstate validate FILE…`: offline checks of nmstate.io objects, with no cluster.
//!
//! Each document is checked against its CRD's schema (as an API server with strict field
//! validation would, `knmstate_api::schema`), and a NodeNetworkConfigurationPolicy also
//! against the admission webhook's own rules (`knmstate_webhook::rules::validate_create`:
//! name, selectors, maxUnavailable, captures, and nmstate's offline validation of the desired
//! state), each problem with the field it names. A finding names the file, the document's
//! index in it and the field path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use knmstate_api::schema::{CrdValidator, SchemaError};
use knmstate_webhook::rules;
use serde::Serialize;

use super::error::PluginError;
use super::input::{self, Document};
use super::output::Table;

/// One problem found in one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The file.
    pub file: PathBuf,
    /// The document's index in the file, from 0.
    pub document: usize,
    /// The object's kind and name, as far as they are known.
    pub object: String,
    /// The field at fault (`spec.desiredState.interfaces[0].mtu`), or empty for the object.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What `validate` found.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Documents checked.
    pub documents: usize,
    /// Every problem, in file and document order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// The report for people: one line per finding, then a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if !self.findings.is_empty() {
            let mut t = Table::new(&["FILE", "DOC", "OBJECT", "FIELD", "PROBLEM"]);
            for f in &self.findings {
                t.row(vec![
                    f.file.display().to_string(),
                    f.document.to_string(),
                    f.object.clone(),
                    f.path.clone(),
                    f.message.clone(),
                ]);
            }
            out.push_str(&t.render());
        }
        let files: std::collections::BTreeSet<&PathBuf> =
            self.findings.iter().map(|f| &f.file).collect();
        if self.passed() {
            let _ = writeln!(out, "{} documents valid", self.documents);
        } else {
            let _ = writeln!(
                out,
                "{} problem(s) in {} file(s) ({} documents checked)",
                self.findings.len(),
                files.len(),
                self.documents
            );
        }
        out
    }
}

/// The checks, with the CRD schemas compiled once.
pub struct Validator {
    schemas: BTreeMap<String, CrdValidator>,
}

impl Validator {
    /// Compiles the schemas of every nmstate.io CRD.
    pub fn new() -> Result<Self, PluginError> {
        let crds = knmstate_api::crd::all().map_err(|e| PluginError::LoadSchemas(e.to_string()))?;
        let mut schemas = BTreeMap::new();
        for (_, crd) in crds {
            let v = CrdValidator::new(&crd).map_err(|e| PluginError::LoadSchemas(e.to_string()))?;
            schemas.insert(crd.spec.names.kind.clone(), v);
        }
        Ok(Self { schemas })
    }

    /// Checks every document of every file. A file that cannot be read or parsed is a finding
    /// of its own (document 0), so one bad file does not hide the others.
    pub fn files(&self, files: &[PathBuf]) -> Report {
        let mut report = Report::default();
        for file in files {
            match input::read_documents(file) {
                Ok(docs) => {
                    for doc in &docs {
                        report.documents += 1;
                        report.findings.extend(self.document(doc));
                    }
                }
                Err(e) => report.findings.push(Finding {
                    file: file.clone(),
                    document: 0,
                    object: String::new(),
                    path: String::new(),
                    message: e.to_string(),
                }),
            }
        }
        report
    }

    /// The problems of one document.
    pub fn document(&self, doc: &Document) -> Vec<Finding> {
        let finding = |path: String, message: String| Finding {
            file: doc.file.clone(),
            document: doc.index,
            object: format!("{}/{}", doc.kind(), doc.name()),
            path,
            message,
        };
        let Some(schema) = self.schemas.get(doc.kind()) else {
            let known: Vec<&str> = self.schemas.keys().map(String::as_str).collect();
            return vec![finding(
                "kind".into(),
                format!("not an nmstate.io kind (one of {})", known.join(", ")),
            )];
        };
        let mut out = match schema.validate(&doc.value) {
            Ok(()) => Vec::new(),
            Err(SchemaError::Invalid(violations)) => violations
                .into_iter()
                .map(|v| finding(dotted(&v.path), v.message))
                .collect(),
            Err(e @ SchemaError::UnknownVersion(_)) => {
                vec![finding("apiVersion".into(), e.to_string())]
            }
            Err(e) => vec![finding(String::new(), e.to_string())],
        };
        if doc.kind() == "NodeNetworkConfigurationPolicy"
            && let Err(rejection) = rules::validate_create(doc.name(), &doc.value)
        {
            out.extend(rejection.problems().into_iter().map(|p| {
                let prefix = format!("{}: ", p.field);
                let message = p.message.strip_prefix(&prefix).unwrap_or(&p.message);
                finding(p.field.clone(), message.to_owned())
            }));
        }
        out
    }
}

/// `/spec/desiredState/interfaces/0/mtu` → `spec.desiredState.interfaces[0].mtu`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            let _ = write!(out, "[{seg}]");
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use std::path::Path;

    fn check(yaml: &str) -> Vec<(String, String)> {
        let v = Validator::new().unwrap();
        input::parse_documents(Path::new("p.yaml"), yaml)
            .unwrap()
            .iter()
            .flat_map(|d| v.document(d))
            .map(|f| {
                (
                    format!("{}#{} {}", f.file.display(), f.document, f.path),
                    f.message,
                )
            })
            .collect()
    }

    const GOOD: &str = "apiVersion: nmstate.io/v1\nkind: NodeNetworkConfigurationPolicy\n\
        metadata: {name: br1}\nspec:\n  desiredState:\n    interfaces:\n    - {name: br1, type: linux-bridge, state: up}\n";

    #[test]
    fn a_good_policy_has_no_findings() {
        assert_eq!(check(GOOD), []);
    }

    #[test]
    fn nmstate_errors_name_the_field_and_the_document() {
        let bad = GOOD.replace("state: up}", "state: up, mtu: big}");
        let got = check(&format!("{GOOD}---\n{bad}"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "p.yaml#1 spec.desiredState.interfaces[0].mtu");
    }

    #[test]
    fn schema_and_admission_findings_have_paths() {
        let bad = GOOD.replace(
            "spec:\n",
            "spec:\n  maxUnavailable: \"x\"\n  nodeSelector: {\"a b\": c}\n  bogus: 1\n",
        );
        let paths: Vec<String> = check(&bad).into_iter().map(|(p, _)| p).collect();
        assert!(
            paths.contains(&"p.yaml#0 spec.maxUnavailable".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"p.yaml#0 spec.nodeSelector".to_owned()),
            "{paths:?}"
        );
        assert!(
            paths
                .iter()
                .any(|p| p == "p.yaml#0 " || p == "p.yaml#0 spec"),
            "{paths:?}"
        );
    }

    #[test]
    fn unknown_kinds_are_findings() {
        let got = check("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert_eq!(got[0].0, "p.yaml#0 kind");
    }

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(
            dotted("/spec/desiredState/interfaces/0/mtu"),
            "spec.desiredState.interfaces[0].mtu"
        );
        assert_eq!(dotted(""), "");
    }
}
