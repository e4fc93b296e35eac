//! Golden and fixture directories: list the cases, read their files, rewrite expectations.
//!
//! Two layouts are in use: a directory per case holding named files (state-engine's
//! `tests/fixtures/<case>/{current,desired,expected}.yml`, see [`cases`]), and a directory of
//! files, one case each, with companion files beside them (the webhook's
//! `tests/fixtures/{pass,fail}/<case>.json` and `<case>.message`, see [`files`]). Every read
//! that fails panics naming the file, which is what a test wants.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One case directory.
#[derive(Debug, Clone)]
pub struct Case {
    /// The directory's name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
}

impl Case {
    /// The parsed file `file` of this case (YAML, or JSON for `.json`), if it exists.
    pub fn read(&self, file: &str) -> Option<Value> {
        let path = self.dir.join(file);
        path.exists().then(|| load(&path))
    }

    /// The parsed file `file` of this case; panics naming it when it is missing.
    pub fn need(&self, file: &str) -> Value {
        self.read(file)
            .unwrap_or_else(|| panic!("{} is missing", self.dir.join(file).display()))
    }

    /// Write `value` as YAML to `file` of this case (to update an expectation).
    pub fn write_yaml(&self, file: &str, value: &Value) {
        let yaml = serde_saphyr::to_string(value)
            .unwrap_or_else(|e| panic!("{}: cannot render YAML: {e}", self.name));
        write(&self.dir.join(file), &yaml);
    }
}

/// The sub-directories of `root`, sorted by name; panics when there is none.
pub fn cases(root: impl AsRef<Path>) -> Vec<Case> {
    let root = root.as_ref();
    let mut v: Vec<Case> = list(root)
        .into_iter()
        .filter(|p| p.is_dir())
        .map(|dir| Case {
            name: file_name(&dir),
            dir,
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!v.is_empty(), "no case directories in {}", root.display());
    v
}

/// The files of `dir` ending in `.<ext>`, sorted; panics when there is none.
pub fn files(dir: impl AsRef<Path>, ext: &str) -> Vec<PathBuf> {
    let dir = dir.as_ref();
    let mut v: Vec<PathBuf> = list(dir)
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} fixtures in {}", dir.display());
    v
}

/// The text of `path`; panics naming it when it cannot be read.
pub fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The parsed file `path` (JSON for `.json`, YAML otherwise); panics naming it.
pub fn load(path: &Path) -> Value {
    let t = text(path);
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&t).map_err(|e| e.to_string())
    } else {
        serde_saphyr::from_str(&t).map_err(|e| e.to_string())
    };
    parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Write `text` to `path`; panics naming it.
pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Whether the environment variable `var` asks to rewrite the expectations (`var=1`).
pub fn update_requested(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| v == "1")
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (case, file, body) in [
            ("b-case", "in.yml", "x: 1\n"),
            ("a-case", "in.json", "{\"x\": 2}"),
        ] {
            std::fs::create_dir(t.path().join(case)).unwrap();
            std::fs::write(t.path().join(case).join(file), body).unwrap();
        }
        std::fs::write(t.path().join("loose.json"), "{}").unwrap();
        t
    }

    #[test]
    fn cases_are_sorted_directories_and_files_parse_by_extension() {
        let t = tree();
        let c = cases(t.path());
        assert_eq!(
            c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["a-case", "b-case"]
        );
        assert_eq!(c[0].need("in.json")["x"], 2);
        assert_eq!(c[1].need("in.yml")["x"], 1);
        assert!(c[1].read("expected.yml").is_none());
        assert_eq!(files(t.path(), "json"), [t.path().join("loose.json")]);
    }

    #[test]
    #[should_panic(expected = "expected.yml is missing")]
    fn a_missing_file_is_named() {
        let t = tree();
        cases(t.path())[0].need("expected.yml");
    }

    #[test]
    fn an_expectation_round_trips() {
        let t = tree();
        let c = &cases(t.path())[0];
        c.write_yaml("expected.yml", &serde_json::json!({"a": [1, 2]}));
        assert_eq!(c.need("expected.yml"), serde_json::json!({"a": [1, 2]}));
    }
}
