//! The audit record, [`LogEntry`], and the redaction applied to what a client
//! sent before it leaves the request path.
//!
//! Field names are the wire names every destination writes (snake_case; the
//! HTTP destination turns them into camelCase). Nothing here may see `[auth]`:
//! the front never hands a token or a header to an entry.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `log_type` of a call to a tool.
pub const TOOL_EXECUTION: &str = "tool_execution";
/// `log_type` of the gateway's own events (backend up/down, reloads, auth refusals).
pub const INTERNAL: &str = "internal";
/// `log_type` of every other request (prompts, resources, completion).
pub const FRAMEWORK: &str = "framework";

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// One audit record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The gateway's request id (the `x-request-id` response header).
    pub correlation_id: String,
    /// RFC 3339, UTC, milliseconds (`2026-11-29T20:04:32.123Z`).
    pub timestamp: String,
    /// `debug`, `info`, `warning` or `error`.
    pub level: String,
    /// [`TOOL_EXECUTION`], [`INTERNAL`] or [`FRAMEWORK`].
    pub log_type: String,
    pub message: String,
    /// The exposed tool name (or prompt name, resource URI) the request was for.
    pub tool_name: Option<String>,
    pub duration_ms: Option<f64>,
    /// `success`, `error`, `timeout`, `cancelled` or `denied`.
    pub status: Option<String>,
    /// The request's arguments, redacted.
    pub input_args: Option<Value>,
    /// The first characters of the result's text.
    pub output_summary: Option<String>,
    pub error_message: Option<String>,
    pub module: String,
    pub function: String,
    pub line: u32,
    pub thread_name: String,
    pub process_id: u32,
    /// `client_id`, `session_id`, `backend`, `transport`, `request_bytes`,
    /// `response_bytes`, `method`, `job_id` (when a job made the call).
    pub extra_data: Map<String, Value>,
}

impl LogEntry {
    /// An entry stamped now, with the process and thread filled in.
    pub fn now(log_type: &str, level: &str, message: impl Into<String>) -> Self {
        let thread = std::thread::current();
        Self {
            timestamp: now_rfc3339(),
            level: level.into(),
            log_type: log_type.into(),
            message: message.into(),
            thread_name: thread.name().unwrap_or("unnamed").to_string(),
            process_id: std::process::id(),
            ..Self::default()
        }
    }

    /// Where in the gateway the entry was made.
    pub fn at(mut self, module: &str, function: &str, line: u32) -> Self {
        self.module = module.into();
        self.function = function.into();
        self.line = line;
        self
    }

    pub fn extra(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra_data.insert(key.into(), value.into());
        self
    }

    /// A string field of `extra_data`, for the columns stores index.
    pub fn extra_str(&self, key: &str) -> Option<&str> {
        self.extra_data.get(key).and_then(Value::as_str)
    }

    /// The entry with camelCase field names (also inside `extra_data`), as
    /// Convex-style HTTP ingestion endpoints expect.
    pub fn to_camel_json(&self) -> Value {
        let Ok(Value::Object(map)) = serde_json::to_value(self) else {
            return Value::Null;
        };
        let mut out = Map::new();
        for (k, v) in map {
            let v = match v {
                Value::Object(inner) => {
                    Value::Object(inner.into_iter().map(|(ik, iv)| (camel(&ik), iv)).collect())
                }
                other => other,
            };
            out.insert(camel(&k), v);
        }
        Value::Object(out)
    }
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Now as RFC 3339 UTC with milliseconds: sorts as text, which the stores rely on.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Normalizes a client-given time (RFC 3339, any offset) to the stored form.
pub fn normalize_time(s: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e})"))
}

/// The words that mark a key as holding a secret, compared without case,
/// `_` or `-` (so `apiKey`, `API_KEY` and `x-api-key` all match `apikey`).
pub const DEFAULT_REDACT_KEYS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "cookie",
];

/// Redacts secrets and cuts long values out of a request's arguments.
#[derive(Clone, Debug)]
pub struct Redactor {
    words: Arc<[String]>,
    /// Strings longer than this are cut, with a marker saying how much.
    max_chars: usize,
}

impl Redactor {
    pub fn new(extra: &[String], max_chars: usize) -> Self {
        let words: Vec<String> = DEFAULT_REDACT_KEYS
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(|s| squash(s)))
            .filter(|s| !s.is_empty())
            .collect();
        Self {
            words: words.into(),
            max_chars,
        }
    }

    fn is_secret(&self, key: &str) -> bool {
        let k = squash(key);
        self.words.iter().any(|w| k.contains(w.as_str()))
    }

    pub fn redact(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let v = if self.is_secret(k) {
                            Value::String(REDACTED.into())
                        } else {
                            self.redact(v)
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.redact(v)).collect()),
            Value::String(s) => Value::String(cut(s, self.max_chars)),
            other => other.clone(),
        }
    }
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The first `max` characters of `s`, with a marker when it was longer.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((at, _)) => {
            let rest = s[at..].chars().count();
            format!("{}…[truncated {rest} chars]", &s[..at])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_long_values_cut() {
        let r = Redactor::new(&["pin".into()], 8);
        let out = r.redact(&json!({
            "query": "hello",
            "apiKey": "sk-1",
            "nested": {"Authorization": "Bearer x", "list": [{"db_password": "p"}], "PIN": "1234"},
            "long": "abcdefghijkl",
        }));
        assert_eq!(out["query"], "hello");
        assert_eq!(out["apiKey"], REDACTED);
        assert_eq!(out["nested"]["Authorization"], REDACTED);
        assert_eq!(out["nested"]["list"][0]["db_password"], REDACTED);
        assert_eq!(out["nested"]["PIN"], REDACTED);
        assert_eq!(out["long"], "abcdefgh…[truncated 4 chars]");
    }

    #[test]
    fn camel_case_names() {
        let e = LogEntry::now(TOOL_EXECUTION, "info", "m").extra("client_id", "a");
        let v = e.to_camel_json();
        assert!(v.get("correlationId").is_some());
        assert!(v.get("logType").is_some());
        assert_eq!(v["extraData"]["clientId"], "a");
    }

    #[test]
    fn times_normalize_to_utc_millis() {
        assert_eq!(
            normalize_time("2026-01-02T03:04:05+01:00").as_deref(),
            Ok("2026-01-02T02:04:05.000Z")
        );
        assert!(normalize_time("yesterday").is_err());
    }
}
