//! Typed reads of one parsed file that record a diagnostic, at the value's position, for every
//! value that is not what the file format allows, and carry on.

use serde_json::{Map, Value};

use crate::diagnostics::Diagnostic;
use crate::spans::{member, Pos, Spans};

/// Reads values of one file and collects its diagnostics.
pub(crate) struct FileReader<'a> {
    /// File name, e.g. `config.json`.
    pub file: &'static str,
    spans: &'a Spans,
    out: &'a mut Vec<Diagnostic>,
    /// The named item that diagnostics are in from now on (see [`Diagnostic::item`]).
    item: Option<String>,
}

impl<'a> FileReader<'a> {
    pub fn new(file: &'static str, spans: &'a Spans, out: &'a mut Vec<Diagnostic>) -> Self {
        FileReader {
            file,
            spans,
            out,
            item: None,
        }
    }

    /// Names the item that the following diagnostics are in; `None` for none.
    pub fn set_item(&mut self, item: Option<String>) {
        self.item = item;
    }

    /// The item that diagnostics are in now.
    pub fn item(&self) -> Option<&str> {
        self.item.as_deref()
    }

    /// A diagnostic at the value at `path`, in the current item, without recording it (for
    /// warnings, which are kept apart from the errors).
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.spans.value(path);
        Diagnostic {
            file: self.file.to_string(),
            path: path.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            item: self.item.clone(),
        }
    }

    /// How many diagnostics have been collected so far (all files).
    pub fn count(&self) -> usize {
        self.out.len()
    }

    /// Where the value at `path` starts.
    pub fn pos(&self, path: &str) -> Pos {
        self.spans.value(path)
    }

    /// Reports a problem with the value at `path`.
    pub fn at_value(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.spans.value(path);
        self.push(path, pos, message.into());
    }

    /// Reports a problem with the key of the member at `path`.
    pub fn at_key(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.spans.key(path);
        self.push(path, pos, message.into());
    }

    /// Reports a problem at `pos`, a place inside the value at `path` (e.g. a character of a
    /// condition string).
    pub fn at_position(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.push(path, pos, message.into());
    }

    fn push(&mut self, path: &str, pos: Pos, message: String) {
        self.out.push(Diagnostic {
            file: self.file.to_string(),
            path: path.to_string(),
            line: pos.line,
            column: pos.column,
            message,
            item: self.item.clone(),
        });
    }

    /// The value as an object, or a diagnostic naming `what` was expected.
    pub fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        what: &str,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.at_value(path, format!("expected {what}, found {}", kind(other)));
                None
            }
        }
    }

    /// The value as an array, or a diagnostic naming `what` was expected.
    pub fn array<'v>(&mut self, value: &'v Value, path: &str, what: &str) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.at_value(path, format!("expected {what}, found {}", kind(other)));
                None
            }
        }
    }

    /// The value as a string, or a diagnostic naming `what` was expected.
    pub fn string<'v>(&mut self, value: &'v Value, path: &str, what: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.at_value(path, format!("expected {what}, found {}", kind(other)));
                None
            }
        }
    }

    /// Reports unknown keys (at the key) and missing required keys (at the object).
    pub fn keys(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        allowed: &[&str],
        required: &[(&str, &str)],
    ) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let list = allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.at_key(
                    &member(path, key),
                    format!("unknown key `{key}`; allowed keys: {list}"),
                );
            }
        }
        for (key, what) in required {
            if !map.contains_key(*key) {
                self.at_value(
                    &member(path, key),
                    format!("missing required key `{key}` ({what})"),
                );
            }
        }
    }

    /// The value as one of `options` (matched exactly), or a diagnostic listing them.
    pub fn one_of<T: Copy>(
        &mut self,
        value: &Value,
        path: &str,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let list = options
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");
        let Value::String(text) = value else {
            self.at_value(
                path,
                format!("expected a string (one of: {list}), found {}", kind(value)),
            );
            return None;
        };
        if let Some((_, v)) = options.iter().find(|(name, _)| name == text) {
            return Some(*v);
        }
        let hint = options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(name, _)| format!(" (did you mean `{name}`? values are case-sensitive)"))
            .unwrap_or_default();
        self.at_value(
            path,
            format!("unknown {what} `{text}`{hint}; allowed: {list}"),
        );
        None
    }
}

/// An item label such as ``device `d1` ``, with the name cut short so a huge one cannot flood
/// the report.
pub(crate) fn label(what: &str, name: &str) -> String {
    if name.chars().count() > 40 {
        let cut: String = name.chars().take(37).collect();
        format!("{what} `{cut}...`")
    } else {
        format!("{what} `{name}`")
    }
}

/// How a JSON value's type reads in a sentence ("a number", "an object").
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
