//! Reading a client's JSON file: comments and trailing commas allowed (VS Code
//! writes JSONC), syntax errors with line and column, and JSON paths for reports.

use std::fmt;

use serde_json::Value;

/// Parses JSON that may hold `//` and `/* */` comments and trailing commas.
///
/// They are blanked out with spaces (newlines kept), so a syntax error that
/// serde_json reports still points at the right line and column of the file.
pub(super) fn parse_jsonc(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(&blank_jsonc(text))
}

fn blank_jsonc(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut in_string = false;
    // The last byte that was neither whitespace nor part of a comment: a `,`
    // there followed by `}` or `]` is a trailing comma.
    let mut last_comma: Option<usize> = None;
    // The last significant byte: a comma is only trailing after a value, so
    // an invalid `"a": ,}` keeps its comma and its error position.
    let mut prev = b'{';
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    in_string = false;
                    prev = b'"';
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                last_comma = None;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
                continue;
            }
            (b'/', Some(b'*')) => {
                let start = i;
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                let end = (i + 2).min(bytes.len());
                for o in &mut out[start..end] {
                    if *o != b'\n' {
                        *o = b' ';
                    }
                }
                i = end;
                continue;
            }
            (b',', _) => {
                last_comma = (!matches!(prev, b':' | b',' | b'[' | b'{')).then_some(i);
                prev = b',';
            }
            (b'}' | b']', _) => {
                if let Some(c) = last_comma.take() {
                    out[c] = b' ';
                }
                prev = b;
            }
            (b' ' | b'\t' | b'\r' | b'\n', _) => {}
            _ => {
                last_comma = None;
                prev = b;
            }
        }
        i += 1;
    }
    // Only ASCII bytes outside strings were replaced by ASCII spaces, so the
    // text is still UTF-8; the fallback keeps the original on the impossible path.
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// A JSON path such as `$.mcpServers.github.env`, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct JsonPath(String);

impl JsonPath {
    pub(super) fn root() -> Self {
        Self("$".into())
    }

    /// The path of `key` inside this object: `.key`, or `["key"]` when the
    /// key is not a plain identifier.
    pub(super) fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if plain {
            Self(format!("{}.{key}", self.0))
        } else {
            Self(format!("{}[{}]", self.0, Value::String(key.into())))
        }
    }

    pub(super) fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The JSON type of a value, for messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_are_blanked_in_place() {
        let text =
            "{\n  // a comment\n  \"a\": \"x // not a comment\", /* b */\n  \"b\": [1, 2,],\n}\n";
        let v = parse_jsonc(text).unwrap();
        assert_eq!(v["a"], "x // not a comment");
        assert_eq!(v["b"], serde_json::json!([1, 2]));
        let err = parse_jsonc("{\n  // c\n  \"a\": ,\n}").unwrap_err();
        assert_eq!((err.line(), err.column()), (3, 8));
    }

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let p = JsonPath::root()
            .key("projects")
            .key("/home/me/app")
            .key("mcpServers");
        assert_eq!(p.to_string(), "$.projects[\"/home/me/app\"].mcpServers");
        assert_eq!(
            JsonPath::root().key("args").index(2).to_string(),
            "$.args[2]"
        );
    }
}
