//! Output: aligned text tables for people, YAML or JSON for machines (`-o yaml|json`).

use serde::Serialize;

use super::error::PluginError;

/// The output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Text tables.
    #[default]
    Text,
    /// The report as YAML.
    Yaml,
    /// The report as JSON.
    Json,
}

/// `report` in `format`; `text` renders it for people.
pub fn render<T: Serialize>(
    report: &T,
    format: Format,
    text: impl FnOnce(&T) -> String,
) -> Result<String, PluginError> {
    match format {
        Format::Text => Ok(text(report)),
        Format::Json => serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|e| PluginError::EncodeOutput(e.to_string())),
        Format::Yaml => {
            serde_saphyr::to_string(report).map_err(|e| PluginError::EncodeOutput(e.to_string()))
        }
    }
}

/// A text table: a header row and rows, each column as wide as its widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table, two spaces between columns, no trailing blanks.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration in seconds as `1h2m`, `3m4s`, `5s`, or `0.4s` below a second.
pub fn human_duration(seconds: f64) -> String {
    if seconds < 1.0 {
        return format!("{:.1}s", seconds.max(0.0));
    }
    // Whole seconds are enough above one second; the cast cannot overflow for real durations.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = seconds as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NODE", "CONDITION"]);
        t.row(vec!["node-longer".into(), "Available".into()]);
        t.row(vec!["n2".into()]);
        assert_eq!(
            t.render(),
            "NODE         CONDITION\nnode-longer  Available\nn2\n"
        );
    }

    #[test]
    fn machine_formats_carry_the_report() {
        let report = json!({"a": [1, 2]});
        let j = render(&report, Format::Json, |_| String::new()).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&j).unwrap(),
            report
        );
        let y = render(&report, Format::Yaml, |_| String::new()).unwrap();
        assert_eq!(
            serde_saphyr::from_str::<serde_json::Value>(&y).unwrap(),
            report
        );
        assert_eq!(render(&report, Format::Text, |_| "t".into()).unwrap(), "t");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0.42), "0.4s");
        assert_eq!(human_duration(59.9), "59s");
        assert_eq!(human_duration(184.0), "3m4s");
        assert_eq!(human_duration(7322.0), "2h2m");
    }
}
