//! Reading objects from YAML files: every document of a file, with its index, for messages
//! that say where a problem is.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::PluginError;

/// One YAML document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file it came from.
    pub file: PathBuf,
    /// Its position among the file's non-empty documents, from 0 (an empty document, e.g.
    /// between two `---` lines, is not counted).
    pub index: usize,
    /// Its content.
    pub value: Value,
}

impl Document {
    /// `kind` of the object (empty when missing).
    pub fn kind(&self) -> &str {
        self.value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `metadata.name` of the object (empty when missing).
    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Where it is, for messages: `file[index]`.
    pub fn place(&self) -> String {
        format!("{}[{}]", self.file.display(), self.index)
    }

    /// The document as the type of its kind.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_value(self.value.clone()).map_err(|e| PluginError::DecodeObject {
            what: format!("{} {:?} at {}", self.kind(), self.name(), self.place()),
            message: e.to_string(),
        })
    }
}

/// Every non-empty document of the YAML text `text` read from `file`.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Document>, PluginError> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| PluginError::ParseYaml {
            path: file.to_owned(),
            message: e.to_string(),
        })?;
    Ok(values
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null())
        .map(|(index, value)| Document {
            file: file.to_owned(),
            index,
            value,
        })
        .collect())
}

/// Every non-empty document of the YAML file `path`.
pub fn read_documents(path: &Path) -> Result<Vec<Document>, PluginError> {
    let text = std::fs::read_to_string(path).map_err(|source| PluginError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    parse_documents(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_index_and_skip_empty_ones() {
        let text = "kind: A\nmetadata: {name: a}\n---\n---\nkind: B\n";
        let docs = parse_documents(Path::new("f.yaml"), text).unwrap();
        let got: Vec<(usize, &str, &str)> =
            docs.iter().map(|d| (d.index, d.kind(), d.name())).collect();
        assert_eq!(got, [(0, "A", "a"), (1, "B", "")]);
        assert_eq!(docs[1].place(), "f.yaml[1]");
    }

    #[test]
    fn broken_yaml_names_the_file() {
        let err = parse_documents(Path::new("bad.yaml"), "a: [1,\n").unwrap_err();
        assert_eq!(err.category(), "parse-yaml");
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }
}
