//! The front's one hook into the audit log: a request that reaches a backend
//! or a built-in set (`tools/call`, `prompts/get`, `resources/read`,
//! `completion/complete`) becomes one [`LogEntry`] when it completes.
//!
//! Built only when the audit log is on. The arguments are redacted here,
//! before the entry leaves the request path; the entry is then handed over
//! without waiting, or, with `[audit] durable = true`, the answer waits until
//! it is written ([`Audit::record_request`]). Nothing from `[auth]` is read: the
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

/// The entry recording `result` of the request `req` for `target`; `None`
/// when the audit log is off.
pub(super) fn entry<T: Clone + Into<ServerResult>>(
    audit: &Audit,
    req: &Req,
    target: Target<'_>,
    result: &Result<T, ErrorData>,
    function: &'static str,
) -> Option<LogEntry> {
    if !audit.enabled() {
        return None;
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
        .extra("session_id", &*req.session_name)
        .extra("backend", req.backend())
        .extra("transport", req.transport)
        .extra("method", method)
        .extra("request_bytes", request_bytes);
    Some(entry)
}

/// A tool call the gateway made for a client without its MCP session: a
/// job's call (with its `job_id`) or one over `POST /api/v1/execute`.
pub(super) struct Invoked<'a> {
    pub tool: &'a str,
    /// The backend that serves `tool`, when it routes.
    pub backend: Option<&'a str>,
    pub args: Option<Value>,
    pub caller: &'a crate::jobs::Caller,
    pub started: std::time::Instant,
}

/// Records `result` of the invoked call `call`; with `[audit] durable = true`
/// the returned future ends once the entry is written (the job's result is
/// stored, or the execute call answered, after it).
pub(super) fn record_invoked(
    audit: &Audit,
    call: Invoked<'_>,
    result: &Result<rmcp::model::CallToolResult, crate::jobs::InvokeError>,
) -> impl Future<Output = ()> + Send + 'static + use<> {
    use crate::jobs::InvokeError;
    let (status, error_message, output) = match result {
        Ok(r) => {
            let output = serde_json::to_value(r).unwrap_or(Value::Null);
            if r.is_error == Some(true) {
                ("error", Some(text_of(&output, 2000)), Some(output))
            } else {
                ("success", None, Some(output))
            }
        }
        Err(e) => {
            let status = match e {
                InvokeError::Timeout(_) => "timeout",
                InvokeError::Forbidden(_) => "denied",
                InvokeError::Cancelled => "cancelled",
                _ => "error",
            };
            (status, Some(e.to_string()), None)
        }
    };
    let level = if status == "success" {
        "info"
    } else {
        "warning"
    };
    let mut entry = LogEntry::now(TOOL_EXECUTION, level, format!("tools/call {}", call.tool)).at(
        "manifold::front::invoke",
        "call_admitted",
        line!(),
    );
    entry.correlation_id = uuid::Uuid::new_v4().to_string();
    entry.tool_name = Some(call.tool.to_string());
    entry.duration_ms = Some(call.started.elapsed().as_secs_f64() * 1000.0);
    entry.status = Some(status.into());
    entry.input_args = call.args.as_ref().map(|a| audit.redact(a));
    entry.error_message = error_message;
    if let Some(output) = &output {
        entry.output_summary = Some(text_of(output, audit.summary_chars()));
        entry = entry.extra(
            "response_bytes",
            serde_json::to_vec(output).map_or(0, |v| v.len()),
        );
    }
    let via = if call.caller.job.is_some() {
        "job"
    } else {
        "execute"
    };
    entry = entry
        .extra("client_id", call.caller.auth.clone())
        .extra("authenticated", call.caller.auth.is_some())
        .extra("backend", call.backend)
        .extra("method", "tools/call")
        .extra("via", via);
    if let Some(job) = &call.caller.job {
        entry = entry.extra("job_id", job.clone());
    }
    audit.record_request(entry)
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

impl super::session::FrontSession {
    /// audit: the name and arguments of a request, or nothing when the
    /// audit log is off, so an off log costs no clone.
    pub(super) fn audit_target(
        &self,
        name: &str,
        args: impl FnOnce() -> Option<serde_json::Value>,
    ) -> Option<(String, Option<serde_json::Value>)> {
        self.gateway
            .audit
            .enabled()
            .then(|| (name.to_string(), args()))
    }

    /// audit: one entry for a completed request (the front's only audit
    /// hook). With `[audit] durable = true` it returns once the entry is
    /// written, and the request is answered after that.
    pub(super) async fn audit<T: Clone + Into<ServerResult>>(
        &self,
        req: &Req,
        target: Option<(String, Option<serde_json::Value>)>,
        result: &Result<T, ErrorData>,
        function: &'static str,
    ) {
        let Some((name, args)) = target else { return };
        let client_name = self.session.get().map(|s| s.client_name.clone());
        let entry = entry(
            &self.gateway.audit,
            req,
            Target {
                name: &name,
                args,
                client_name: client_name.as_deref(),
            },
            result,
            function,
        );
        if let Some(entry) = entry {
            self.gateway.audit.record_request(entry).await;
        }
    }
}
