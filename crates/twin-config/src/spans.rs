//! Where each value and key of a JSON document starts, by JSON path.
//!
//! serde_json forgets positions once a document is parsed, so this walks the (already
//! syntax-checked) text a second time and records line:column for every path.

use std::collections::HashMap;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
}

/// A key that appears twice in the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DuplicateKey {
    /// Path of the member, e.g. `$.mode`.
    pub path: String,
    /// The key as written (unescaped).
    pub key: String,
    /// Where the first occurrence's key starts.
    pub first: Pos,
    /// Where the repeated key starts.
    pub again: Pos,
}

/// Positions of every value and object key of one document.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    pub duplicates: Vec<DuplicateKey>,
}

impl Spans {
    /// Records the positions in `text`, which must be valid JSON (serde_json checked it first);
    /// on text that is not, the positions found so far are kept.
    pub fn of(text: &str) -> Spans {
        let mut walker = Walker {
            bytes: text.as_bytes(),
            at: 0,
            pos: Pos { line: 1, column: 1 },
            spans: Spans::default(),
        };
        walker.value("$".to_string());
        walker.spans
    }

    /// Where the value at `path` starts; the nearest enclosing value's start when `path` is not in
    /// the document (e.g. a missing key reports at its object).
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// Where the key of the member at `path` starts; the value's position for array elements.
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

/// The path of an object member: `$.name`, or `$["odd key"]` when the key is not an identifier.
pub fn member(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        let quoted = serde_json::Value::String(key.to_string()).to_string();
        format!("{path}[{quoted}]")
    }
}

/// The path of an array element: `$[3]`.
pub fn element(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The enclosing path, or `None` for the root.
fn parent(path: &str) -> Option<&str> {
    if path == "$" {
        return None;
    }
    // A quoted key may itself contain `.` or `[`, so look for the last step boundary outside quotes.
    let bytes = path.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut cut = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'.' | b'[' => cut = Some(i),
                _ => {}
            }
        }
    }
    cut.map(|i| &path[..i])
}

struct Walker<'t> {
    bytes: &'t [u8],
    at: usize,
    pos: Pos,
    spans: Spans,
}

impl Walker<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn bump(&mut self) {
        if let Some(&b) = self.bytes.get(self.at) {
            self.at += 1;
            if b == b'\n' {
                self.pos.line += 1;
                self.pos.column = 1;
            } else if b & 0xC0 != 0x80 {
                // UTF-8 continuation bytes belong to the character already counted.
                self.pos.column += 1;
            }
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn value(&mut self, path: String) {
        self.skip_ws();
        self.spans.values.insert(path.clone(), self.pos);
        match self.peek() {
            Some(b'{') => self.object(&path),
            Some(b'[') => self.array(&path),
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.bump();
                }
            }
            None => {}
        }
    }

    fn object(&mut self, path: &str) {
        self.bump();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.bump();
                    return;
                }
                Some(b',') => {
                    self.bump();
                    continue;
                }
                Some(b'"') => {}
                _ => return,
            }
            let key_pos = self.pos;
            let key = self.string();
            let child = member(path, &key);
            if let Some(first) = self.spans.keys.insert(child.clone(), key_pos) {
                self.spans.duplicates.push(DuplicateKey {
                    path: child.clone(),
                    key,
                    first,
                    again: key_pos,
                });
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return;
            }
            self.bump();
            self.value(child);
        }
    }

    fn array(&mut self, path: &str) {
        self.bump();
        let mut index = 0;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') => {
                    self.bump();
                    return;
                }
                Some(b',') => {
                    self.bump();
                }
                Some(_) => {
                    self.value(element(path, index));
                    index += 1;
                }
                None => return,
            }
        }
    }

    /// Consumes a string literal and returns its unescaped text.
    fn string(&mut self) -> String {
        let start = self.at;
        self.bump();
        let mut escaped = false;
        while let Some(b) = self.peek() {
            self.bump();
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                break;
            }
        }
        let raw = &self.bytes[start..self.at];
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| serde_json::from_str::<String>(s).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn records_values_and_keys_by_path() {
        let text = "{\n  \"a\": [1, {\"b\": true}],\n  \"c d\": \"x\"\n}";
        let s = Spans::of(text);
        assert_eq!(s.value("$"), at(1, 1));
        assert_eq!(s.key("$.a"), at(2, 3));
        assert_eq!(s.value("$.a"), at(2, 8));
        assert_eq!(s.value("$.a[0]"), at(2, 9));
        assert_eq!(s.value("$.a[1]"), at(2, 12));
        assert_eq!(s.key("$.a[1].b"), at(2, 13));
        assert_eq!(s.value("$.a[1].b"), at(2, 18));
        assert_eq!(s.key("$[\"c d\"]"), at(3, 3));
        assert_eq!(s.value("$[\"c d\"]"), at(3, 10));
    }

    #[test]
    fn missing_paths_fall_back_to_the_enclosing_value() {
        let s = Spans::of("[ {\"id\": 1} ]");
        assert_eq!(s.value("$[0].properties"), at(1, 3));
        assert_eq!(s.value("$[0].properties[2].name"), at(1, 3));
        assert_eq!(s.value("$[5]"), at(1, 1));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let s = Spans::of("{\"ä\u{1F600}\": 1, \"x\": 2}");
        assert_eq!(s.value("$.x"), at(1, 16));
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let s = Spans::of(r#"{"a": "x\"y", "b\"": 2}"#);
        assert_eq!(s.value("$.a"), at(1, 7));
        assert_eq!(s.key(r#"$["b\""]"#), at(1, 15));
    }

    #[test]
    fn duplicate_keys_are_recorded() {
        let s = Spans::of("{\"a\": 1,\n \"a\": 2}");
        assert_eq!(s.duplicates.len(), 1);
        assert_eq!(s.duplicates[0].first, at(1, 2));
        assert_eq!(s.duplicates[0].again, at(2, 2));
        assert_eq!(s.value("$.a"), at(2, 7));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("$"), None);
        assert_eq!(parent("$.a"), Some("$"));
        assert_eq!(parent("$[1].b[2]"), Some("$[1].b"));
        assert_eq!(parent(r#"$["x.y"]"#), Some("$"));
    }
}
