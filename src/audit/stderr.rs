//! `stderr`: one JSON line per entry, as the gateway's logs already are.

use std::io::Write;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::dest::Destination;
use super::{AuditError, LogEntry};

pub struct Stderr;

impl Destination for Stderr {
    fn kind(&self) -> &'static str {
        "stderr"
    }

    fn write<'a>(&'a self, batch: &'a [Arc<LogEntry>]) -> BoxFuture<'a, Result<(), AuditError>> {
        let mut out = Vec::new();
        for e in batch {
            if serde_json::to_writer(&mut out, &**e).is_ok() {
                out.push(b'\n');
            }
        }
        // One write per batch, so lines from other writers do not interleave mid-line.
        let result = std::io::stderr()
            .lock()
            .write_all(&out)
            .map_err(|e| AuditError::write("stderr", e));
        Box::pin(async move { result })
    }
}
