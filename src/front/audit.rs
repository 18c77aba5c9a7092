//! The front's hook into the audit log: a request that reaches a backend
//! or a built-in set (`tools/call`, `prompts/get`, `resources/read`,
//! `completion/complete`) becomes one [`LogEntry`] when it completes; so
//! does a tool call made without a session ([`Invoked`]: `POST
//! /api/v1/execute` and jobs).
//!
//! Built only when the audit log is on. The arguments are redacted here,
//! before the entry leaves the request path; the entry is then handed over
//! without waiting ([`Audit::record`]). Nothing from `[auth]` is read: the
//! client id is the one the token proved, never the token.

use serde_json::Value;

use super::reject::codes;
use super::request::Req;
use crate::audit::{Audit, FRAMEWORK, LogEntry, TOOL_EXECUTION};
use rmcp::ErrorData;
use rmcp::model::ServerResult;

/// What the request was for, known before it runs.
pub(super) struct Target<'a> {
    /// The exposed tool or prompt name, or the resource URI.
    pub name: &'a str,
    pub args: Option<Value>,
    /// The client's own name from `initialize`, when it has no authenticated id.
    pub client_name: Option<&'a str>,
}

/// Records `result` of the request `req` for `target`.
pub(super) fn record<T: Clone + Into<ServerResult>>(
    audit: &Audit,
    req: &Req,
    target: Target<'_>,
    result: &Result<T, ErrorData>,
    function: &'static str,
) {
    if !audit.enabled() {
        return;
    }
    let method = req.method();
    let log_type = if method == "tools/call" {
        TOOL_EXECUTION
    } else {
        FRAMEWORK
    };
    let (status, error_message, output) = match result {
        Ok(value) => {
            let output = serde_json::to_value(value.clone().into()).unwrap_or(Value::Null);
            if req.had_tool_error() {
                let text = text_of(&output, 2000);
                ("error", Some(text), Some(output))
            } else {
                ("success", None, Some(output))
            }
        }
        Err(e) => {
            let status = match e.code.0 {
                codes::REQUEST_TIMEOUT => "timeout",
                codes::FORBIDDEN => "denied",
                _ if req.cancel.is_cancelled() => "cancelled",
                _ => "error",
            };
            (status, Some(e.message.to_string()), None)
        }
    };
    let level = if status == "success" {
        "info"
    } else {
        "warning"
    };
    let request_bytes = target
        .args
        .as_ref()
        .map_or(0, |a| serde_json::to_vec(a).map_or(0, |v| v.len()));
    let mut entry = LogEntry::now(log_type, level, format!("{method} {}", target.name)).at(
        "manifold::front::session",
        function,
        line!(),
    );
    entry.correlation_id = req.correlation_id.to_string();
    entry.tool_name = Some(target.name.to_string());
    entry.duration_ms = Some(req.started.elapsed().as_secs_f64() * 1000.0);
    entry.status = Some(status.into());
    entry.input_args = target.args.as_ref().map(|a| audit.redact(a));
    entry.error_message = error_message;
    if let Some(output) = &output {
        entry.output_summary = Some(text_of(output, audit.summary_chars()));
        entry = entry.extra(
            "response_bytes",
            serde_json::to_vec(output).map_or(0, |v| v.len()),
        );
    }
    let client = req.client_id().or(target.client_name);
    entry = entry
        .extra("client_id", client)
        .extra("authenticated", req.client_id().is_some())
        .extra("session_id", req.session)
        .extra("backend", req.backend())
        .extra("transport", req.transport)
        .extra("method", method)
        .extra("request_bytes", request_bytes);
    audit.record(entry);
}

/// A tool call made without an MCP session (`POST /api/v1/execute`, a
/// job), from before it is forwarded until its outcome is known; `None`
/// from [`Invoked::start`] when the audit log is off.
pub(super) struct Invoked {
    entry: LogEntry,
    started: std::time::Instant,
}

impl Invoked {
    pub fn start(
        audit: &Audit,
        caller: &crate::jobs::Caller,
        tool: &str,
        backend: &str,
        args: &Option<rmcp::model::JsonObject>,
    ) -> Option<Self> {
        if !audit.enabled() {
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut entry = LogEntry::now(TOOL_EXECUTION, "info", format!("tools/call {tool}")).at(
            "manifold::front::invoke",
            "call_tool",
            line!(),
        );
        entry.correlation_id = caller.correlation_id.clone().unwrap_or_else(|| {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("invoke-{}-{n}", std::process::id())
        });
        entry.tool_name = Some(tool.to_string());
        let args = args.clone().map(Value::Object);
        let request_bytes = args
            .as_ref()
            .map_or(0, |a| serde_json::to_vec(a).map_or(0, |v| v.len()));
        entry.input_args = args.as_ref().map(|a| audit.redact(a));
        entry = entry
            .extra("client_id", caller.auth.as_deref())
            .extra("authenticated", caller.auth.is_some())
            .extra("backend", backend)
            .extra(
                "transport",
                if caller.job_id.is_some() {
                    "job"
                } else {
                    "http"
                },
            )
            .extra("method", "tools/call")
            .extra("request_bytes", request_bytes);
        if let Some(job) = &caller.job_id {
            entry = entry.extra("job_id", job.as_str());
        }
        Some(Self {
            entry,
            started: std::time::Instant::now(),
        })
    }

    /// Records the outcome; `label` is the metrics outcome of the call.
    pub fn finish(
        self,
        audit: &Audit,
        label: &str,
        result: &Result<rmcp::model::CallToolResult, crate::jobs::InvokeError>,
    ) {
        use crate::jobs::InvokeError;
        let mut entry = self.entry;
        entry.duration_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        let status = match (label, result) {
            ("ok", _) => "success",
            ("timeout", _) => "timeout",
            (_, Err(InvokeError::Cancelled)) => "cancelled",
            _ => "error",
        };
        entry.status = Some(status.into());
        if status != "success" {
            entry.level = "warning".into();
        }
        match result {
            Ok(r) => {
                let output = serde_json::to_value(r).unwrap_or(Value::Null);
                if status == "error" {
                    entry.error_message = Some(text_of(&output, 2000));
                }
                entry.output_summary = Some(text_of(&output, audit.summary_chars()));
                entry = entry.extra(
                    "response_bytes",
                    serde_json::to_vec(&output).map_or(0, |v| v.len()),
                );
            }
            Err(e) => entry.error_message = Some(e.to_string()),
        }
        audit.record(entry);
    }
}

/// The text of a result (every `text` field, in order), cut to `max` characters.
fn text_of(value: &Value, max: usize) -> String {
    fn walk(v: &Value, out: &mut String, max: usize) {
        if out.chars().count() > max {
            return;
        }
        match v {
            Value::Object(map) => {
                if let Some(Value::String(t)) = map.get("text") {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(t);
                }
                for (k, inner) in map {
                    if k != "text" {
                        walk(inner, out, max);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out, max)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(value, &mut out, max);
    crate::audit::entry::cut(&out, max)
}
