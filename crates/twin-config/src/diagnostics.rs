//! Problems found while loading a config, with the place each one is at.

use std::fmt;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    /// File name within the config directory, e.g. `config_iot_devices.json`.
    pub file: String,
    /// JSON path of the offending value, e.g. `$[1].properties[0].dataType`.
    pub path: String,
    /// 1-based line; 0 when the problem has no position (a missing file).
    pub line: usize,
    /// 1-based column in characters; 0 when the problem has no position.
    pub column: usize,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The named item the problem is in, e.g. ``device `d1`, constant property `serial` ``;
    /// `None` where the path alone says it (a file-level setting) or the item has no name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: path (item): message`; without `line:col` when there is no position and
    /// without `(item)` when there is no named item.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line != 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.path)?;
        if let Some(item) = &self.item {
            write!(f, " ({item})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config directory; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no problems.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the problems in report order (by file, then position).
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(line: usize, column: usize) -> Diagnostic {
        Diagnostic {
            file: "config.json".to_string(),
            path: "$.mode".to_string(),
            line,
            column,
            message: "bad".to_string(),
            item: None,
        }
    }

    #[test]
    fn one_line_per_problem_and_no_position_when_there_is_none() {
        let d = Diagnostics(vec![diag(3, 7), diag(0, 0)]);
        assert_eq!(
            d.to_string(),
            "config.json:3:7: $.mode: bad\nconfig.json: $.mode: bad"
        );
        assert_eq!(d.len(), 2);
        let named = Diagnostic {
            item: Some("device `d1`".to_string()),
            ..diag(1, 2)
        };
        assert_eq!(
            named.to_string(),
            "config.json:1:2: $.mode (device `d1`): bad"
        );
    }
}
