//! The shape every destination has: write a batch; optionally answer a
//! query; close. Connections are made on first write, never at start, so a
//! destination that is down delays nothing.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{AuditError, LogEntry};

pub trait Destination: Send + Sync + 'static {
    /// `sqlite`, `postgres`, `kafka`, `elasticsearch`, `http` or `stderr`.
    fn kind(&self) -> &'static str;

    fn write<'a>(&'a self, batch: &'a [Arc<LogEntry>]) -> BoxFuture<'a, Result<(), AuditError>>;

    /// Newest first. Only the local stores answer.
    fn query<'a>(&'a self, _q: &'a LogQuery) -> BoxFuture<'a, Result<Vec<LogEntry>, AuditError>> {
        let kind = self.kind();
        Box::pin(async move { Err(AuditError::NotQueryable(kind)) })
    }

    /// Flushes and lets go of connections; called once the lane has drained.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The filters of `query_logs` and `GET /api/v1/logs`; all optional, combined with AND.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Exact exposed tool name.
    pub tool: Option<String>,
    /// The client id (`extra_data.client_id`).
    pub client: Option<String>,
    /// The backend name (`extra_data.backend`).
    pub backend: Option<String>,
    /// success, error, timeout, cancelled or denied.
    pub status: Option<String>,
    /// RFC 3339; entries at or after this time.
    pub since: Option<String>,
    /// RFC 3339; entries before this time.
    pub until: Option<String>,
    pub correlation_id: Option<String>,
    /// Substring of the message, the output summary or the error message.
    pub text: Option<String>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<u32>,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

impl LogQuery {
    /// Checks the values and puts times in the stored form.
    pub fn normalized(mut self) -> Result<Self, AuditError> {
        for t in [&mut self.since, &mut self.until].into_iter().flatten() {
            *t = super::entry::normalize_time(t).map_err(AuditError::BadQuery)?;
        }
        if let Some(s) = &self.status
            && !["success", "error", "timeout", "cancelled", "denied"].contains(&s.as_str())
        {
            return Err(AuditError::BadQuery(format!(
                "unknown status `{s}` (expected success, error, timeout, cancelled or denied)"
            )));
        }
        self.limit = Some(self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT));
        Ok(self)
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT))
    }
}
