//! What a job is: its states, the row a store keeps, and the JSON users see.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Where a job is in its life. Every transition is stored before it is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Added, not started.
    Pending,
    /// Started, waiting for a worker slot.
    Queued,
    Running,
    Completed,
    /// The tool answered an error (`isError`), timed out, or its backend was down.
    Failed,
    Stopped,
    /// The instance running it died.
    Interrupted,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Queued,
        State::Running,
        State::Completed,
        State::Failed,
        State::Stopped,
        State::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job is over (it may be started again).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Stopped | Self::Interrupted
        )
    }
}

/// The last progress the backend reported for a job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub progress: f64,
    pub total: Option<f64>,
    pub message: Option<String>,
}

/// A job as stored. Times are microseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// The owner's namespace: its authenticated client id, or "" without auth.
    pub ns: String,
    pub id: String,
    pub tool: String,
    /// The tool's arguments as JSON text (an object), if any.
    pub arguments: Option<String>,
    /// The job's own time limit, if it set one.
    pub timeout_ms: Option<i64>,
    pub state: State,
    pub created_at: i64,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub progress: Option<Progress>,
    /// The tool's `CallToolResult` as JSON text (possibly cut, with a marker).
    pub result: Option<String>,
    pub error: Option<String>,
    /// The instance that runs (or ran) it.
    pub worker: Option<String>,
    pub attempts: i64,
    /// The instance and session that added it, to tell that session when it ends.
    pub origin_instance: Option<String>,
    pub origin_session: Option<i64>,
}

/// What `add_job` stores.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub ns: String,
    pub id: String,
    pub tool: String,
    pub arguments: Option<String>,
    pub timeout_ms: Option<i64>,
    /// `Pending`, or `Queued` for `start: true`.
    pub state: State,
    pub now: i64,
    pub origin_instance: String,
    pub origin_session: Option<i64>,
}

/// How a run ended, as the runner stores it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub state: State,
    pub result: Option<String>,
    pub error: Option<String>,
    pub progress: Option<Progress>,
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

fn time_json(micros: Option<i64>) -> Value {
    match micros {
        Some(us) if us >= 0 => {
            let t = UNIX_EPOCH + Duration::from_micros(us as u64);
            Value::String(humantime::format_rfc3339_micros(t).to_string())
        }
        _ => Value::Null,
    }
}

impl Job {
    /// The job's time limit: its own, else the configured default.
    pub fn timeout(&self, default: Duration) -> Duration {
        self.timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(default, Duration::from_millis)
    }

    /// The full view `get_status` answers.
    pub fn to_json(&self) -> Value {
        let mut v = self.summary_json();
        let parse = |s: &Option<String>| {
            s.as_deref()
                .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())))
                .unwrap_or(Value::Null)
        };
        v["arguments"] = parse(&self.arguments);
        v["result"] = parse(&self.result);
        v["timeout_ms"] = json!(self.timeout_ms);
        v["attempts"] = json!(self.attempts);
        v
    }

    /// The short view `list_jobs` answers.
    pub fn summary_json(&self) -> Value {
        let progress = self
            .progress
            .as_ref()
            .map(|p| json!({"progress": p.progress, "total": p.total, "message": p.message}));
        json!({
            "id": self.id,
            "tool": self.tool,
            "state": self.state.as_str(),
            "created_at": time_json(Some(self.created_at)),
            "queued_at": time_json(self.queued_at),
            "started_at": time_json(self.started_at),
            "finished_at": time_json(self.finished_at),
            "progress": progress,
            "error": self.error,
            "instance": self.worker,
        })
    }
}

/// A result's JSON text, cut to `max` bytes with a marker saying so.
pub fn capped_result(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({
        "truncated": true,
        "note": format!("the result was {} bytes, over max_result_bytes = {max}; `text` holds its first {cut} bytes", text.len()),
        "original_bytes": text.len(),
        "text": &text[..cut],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_finished_ones_are_known() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert!(State::Interrupted.is_finished() && !State::Queued.is_finished());
        assert_eq!(State::parse("done"), None);
    }

    #[test]
    fn long_results_are_cut_with_a_marker() {
        let short = capped_result("{\"a\":1}".into(), 100);
        assert_eq!(short, "{\"a\":1}");
        let long = capped_result("é".repeat(100), 51);
        let v: Value = serde_json::from_str(&long).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["original_bytes"], 200);
        assert_eq!(v["text"].as_str().unwrap().len(), 50);
    }
}
