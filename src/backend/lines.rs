//! Reading a stdio backend's messages: one JSON-RPC message per line.
//!
//! This replaces the read half of rmcp's line transport for two reasons:
//! - **Calls answer faster.** rmcp reads an answer into `ServerResult`, an
//!   untagged enum in which `CallToolResult` is the sixteenth variant, so
//!   every tool call's answer is first tried, and failed, as fifteen other
//!   results. The transport knows which requests it sent were `tools/call`
//!   ([`CallIds`]), so their answers are read straight into
//!   `CallToolResult`; anything that does not fit takes rmcp's path.
//! - **Lists keep their extra fields**: while a list request waits, each
//!   line is shown to the backend's [`ListTap`] first.
//!
//! Everything else is as rmcp reads a line: a UTF-8 byte order mark and a
//! trailing `\r` are dropped, blank lines and lines that are not JSON are
//! skipped, a line longer than the limit is discarded, a well-formed message
//! of the wrong shape is answered with Invalid Request (unless it is a
//! notification), and reads are cancel-safe (rmcp drops `receive` whenever it
//! has something to send; a partial line stays in the buffer).

use std::sync::{Arc, Mutex};

use rmcp::RoleClient;
use rmcp::model::{
    CallToolResult, ClientJsonRpcMessage, ClientRequest, ErrorData, RequestId,
    ServerJsonRpcMessage, ServerResult,
};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::extras::ListTap;

/// Longest message accepted (rmcp's own limit).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// How much is read at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Ids of calls never answered (cancelled, timed out) are forgotten past this.
const MAX_OPEN_CALLS: usize = 4096;

/// The ids of `tools/call` requests sent and not yet answered (ids the
/// gateway or rmcp chose: the fast hasher is enough).
#[derive(Default)]
pub(super) struct CallIds(Mutex<foldhash::HashSet<RequestId>>);

impl CallIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashSet<RequestId>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a `tools/call` among the messages sent.
    pub(super) fn sent(&self, message: &TxJsonRpcMessage<RoleClient>) {
        if let ClientJsonRpcMessage::Request(r) = message
            && matches!(r.request, ClientRequest::CallToolRequest(_))
        {
            self.sent_call(r.id.clone());
        }
    }

    /// Notes the `tools/call` sent as `id`.
    pub(super) fn sent_call(&self, id: RequestId) {
        let mut ids = self.lock();
        if ids.len() >= MAX_OPEN_CALLS {
            ids.clear(); // their answers just take the general path
        }
        ids.insert(id);
    }

    fn answered(&self, id: &RequestId) -> bool {
        self.lock().remove(id)
    }
}

/// What a line turned out to be.
#[allow(clippy::large_enum_variant)] // moved once per message; boxing would allocate per message
pub(super) enum Read {
    Message(RxJsonRpcMessage<RoleClient>),
    /// A well-formed message of the wrong shape: rmcp answers Invalid Request.
    Invalid,
    /// The end of the stream, or a read error.
    End,
}

/// The read half of a stdio backend's connection.
pub(super) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    /// Where the unread part of `buf` begins: the lines before it have been
    /// handed out. Read lines are dropped from `buf` only before the next
    /// read, so that a read that brought many lines moves the rest once, not
    /// once per line.
    start: usize,
    /// The index in `buf` up to which it is known to hold no newline (at
    /// least `start`).
    scanned: usize,
    /// Discarding the rest of a line that was too long.
    skipping: bool,
    pub(super) calls: Arc<CallIds>,
    tap: Option<Arc<ListTap>>,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub(super) fn new(reader: R, tap: Option<Arc<ListTap>>) -> Self {
        Self {
            reader,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            scanned: 0,
            skipping: false,
            calls: Arc::default(),
            tap,
        }
    }

    /// The next message. Cancel-safe.
    pub(super) async fn next(&mut self) -> Read {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                let end = self.scanned + i;
                let parsed = if self.skipping {
                    self.skipping = false;
                    None
                } else {
                    self.parse(self.start, end)
                };
                self.start = end + 1;
                self.scanned = self.start;
                match parsed {
                    Some(read) => return read,
                    None => continue,
                }
            }
            // Everything read has been handed out but a partial line: drop
            // what was handed out before reading more.
            self.buf.drain(..self.start);
            self.start = 0;
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE {
                tracing::error!(
                    max_line_length = MAX_LINE,
                    "a backend message exceeded the maximum line length; discarding it"
                );
                self.buf.clear();
                self.scanned = 0;
                self.skipping = true;
            }
            self.buf.reserve(READ_CHUNK);
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => return Read::End, // an unterminated last line is incomplete
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "error reading from a stdio backend");
                    return Read::End;
                }
            }
        }
    }

    /// The line `buf[start..end]`; `None` to skip it.
    fn parse(&self, start: usize, end: usize) -> Option<Read> {
        let line = &self.buf[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if let Some(tap) = &self.tap
            && tap.waiting()
        {
            tap.read(line);
        }
        if let Some(message) = self.call_answer(line) {
            return Some(Read::Message(message));
        }
        match serde_json::from_slice::<RxJsonRpcMessage<RoleClient>>(line) {
            Ok(message) => Some(Read::Message(message)),
            Err(e) => match e.classify() {
                serde_json::error::Category::Data if !is_notification(line) => {
                    tracing::debug!(error = %e, "a backend message of the wrong shape");
                    Some(Read::Invalid)
                }
                _ => {
                    // Not JSON (answering it could start an error storm with a peer
                    // that echoes), or a notification rmcp has no use for.
                    tracing::debug!(error = %e, "ignoring an unreadable backend message");
                    None
                }
            },
        }
    }

    /// The answer to a `tools/call`, read straight into its result; `None`
    /// for anything else, left to the general parse.
    fn call_answer(&self, line: &[u8]) -> Option<RxJsonRpcMessage<RoleClient>> {
        let (id, result) = answer_parts(line)?;
        if !self.calls.answered(&id) {
            return None;
        }
        let result = serde_json::from_str::<CallToolResult>(result.get()).ok()?;
        Some(ServerJsonRpcMessage::response(
            ServerResult::CallToolResult(result),
            id,
        ))
    }
}

/// The id and the unread result of a JSON-RPC answer; `None` for any other
/// message (left to the general parse).
pub(super) fn answer_parts(line: &[u8]) -> Option<(RequestId, &RawValue)> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        jsonrpc: &'a str,
        id: RequestId,
        #[serde(borrow)]
        result: &'a RawValue,
    }
    memchr::memmem::find(line, b"\"result\"")?;
    let answer = serde_json::from_slice::<Answer>(line).ok()?;
    (answer.jsonrpc == "2.0").then_some((answer.id, answer.result))
}

/// A JSON object with a `method` and no `id`.
fn is_notification(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Shape {
        method: Option<serde::de::IgnoredAny>,
        id: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Shape>(line).is_ok_and(|s| s.method.is_some() && s.id.is_none())
}

/// The error rmcp answers a message of the wrong shape with.
pub(super) fn invalid_request() -> TxJsonRpcMessage<RoleClient> {
    ClientJsonRpcMessage::error(ErrorData::invalid_request("Invalid request", None), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{CallToolRequest, CallToolRequestParams, NumberOrString};

    async fn all(input: &[u8], calls: &[i64]) -> Vec<String> {
        let mut lines = Lines::new(input, None);
        for id in calls {
            lines.calls.sent(&ClientJsonRpcMessage::request(
                ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new(
                    "t",
                ))),
                NumberOrString::Number(*id),
            ));
        }
        let mut out = Vec::new();
        loop {
            match lines.next().await {
                Read::Message(m) => out.push(serde_json::to_string(&m).unwrap()),
                Read::Invalid => out.push("invalid".into()),
                Read::End => return out,
            }
        }
    }

    #[tokio::test]
    async fn reads_lines_as_rmcp_does_and_call_answers_directly() {
        let input = concat!(
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}\r\n",
            "\n",
            "not json\n",
            "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n",
            "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n",
            "{\"jsonrpc\":\"2.0\",\"id\":3,\"bogus\":true}\n",
            "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[]}}\n",
            "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}"
        );
        let out = all(input.as_bytes(), &[1, 4]).await;
        assert_eq!(out.len(), 5, "{out:#?}");
        assert!(out[0].contains("\"text\":\"hi\""), "{}", out[0]);
        assert!(out[1].contains("notifications/progress"));
        assert_eq!(out[2], r#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
        assert_eq!(out[3], "invalid");
        assert!(out[4].contains("\"content\":[]"), "{}", out[4]);
    }

    #[tokio::test]
    async fn a_call_answer_that_is_no_tool_result_takes_the_general_path() {
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"task\":{\"taskId\":\"t\",\"status\":\"working\",\"createdAt\":\"x\",\"lastUpdatedAt\":\"x\"}}}\n";
        let out = all(input, &[1]).await;
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("taskId"), "{}", out[0]);
    }

    /// Gives its bytes `step` at a time, as a pipe may.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self
                .step
                .min(self.data.len() - self.at)
                .min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lines_split_across_reads_and_many_in_one_read_come_out_whole_and_in_order() {
        let mut input = Vec::new();
        for id in 0..200 {
            input.extend_from_slice(
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}}}}\n").as_bytes(),
            );
        }
        // Pieces that split lines anywhere, pieces holding many lines, and all at once.
        for step in [1, 7, 100, 4096, input.len()] {
            let reader = Trickle {
                data: input.clone(),
                at: 0,
                step,
            };
            let mut lines = Lines::new(reader, None);
            let mut ids = Vec::new();
            while let Read::Message(m) = lines.next().await {
                match m {
                    ServerJsonRpcMessage::Response(r) => ids.push(r.id.to_string()),
                    other => panic!("not a response: {other:?}"),
                }
            }
            let want: Vec<String> = (0..200).map(|i| i.to_string()).collect();
            assert_eq!(ids, want, "pieces of {step} bytes");
        }
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_discarded_and_the_next_read() {
        let mut input = vec![b'x'; MAX_LINE + READ_CHUNK * 2];
        input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
        let out = all(&input, &[]).await;
        assert_eq!(out, [r#"{"jsonrpc":"2.0","id":2,"result":{}}"#]);
    }
}
