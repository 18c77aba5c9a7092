//! A POSTed request whose answer is one message gets it as plain JSON.
//!
//! In session mode rmcp answers every POSTed request with an SSE stream: a
//! priming event, then the messages of that request, the last of them its
//! response. Most requests send nothing before their response, and for
//! those the stream costs a chunked body with several writes, a keep-alive
//! timer, and SSE parsing in the client. The protocol lets a server answer
//! either way, so here we read the stream's first events: when the first
//! message is the response, the client gets it as `application/json` with a
//! length; when it is anything else (progress, a log line, a request to the
//! client), or a keep-alive comment comes first (15 s without a message),
//! the client gets the SSE stream unchanged, beginning with what we read.
//! rmcp's own `json_response` option does this in stateless mode only
//! (decision 0013).

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::reject::Body;

/// The stream, or the response's JSON when it came first.
pub async fn json_when_final(response: Response<Body>) -> Response<Body> {
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if !is_sse || !response.status().is_success() {
        return response;
    }
    let (mut parts, mut body) = response.into_parts();
    let mut buf = BytesMut::new();
    // Where the next unread event starts in `buf`.
    let mut next = 0;
    let verdict = 'read: loop {
        while let Some(len) = event_len(&buf[next..]) {
            let event = &buf[next..next + len];
            next += len;
            match classify(event) {
                Event::Priming => continue,
                Event::Final(data) => break 'read Some(data),
                Event::Other => break 'read None,
            }
        }
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => buf.extend_from_slice(&data),
                Err(_) => break None,
            },
            Some(Err(never)) => match never {},
            None => break None,
        }
    };
    if let Some(data) = verdict {
        parts.headers.remove(header::CACHE_CONTROL);
        parts.headers.remove("x-accel-buffering");
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Response::from_parts(parts, Full::new(data).boxed());
    }
    let head = futures::stream::once(async move { Ok(http_body::Frame::data(buf.freeze())) });
    let rest = BodyStream::new(body);
    Response::from_parts(parts, BodyExt::boxed(StreamBody::new(head.chain(rest))))
}

/// The length of the first complete event in `buf` (up to and including the
/// blank line that ends it), if there is one.
fn event_len(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
        let end = at + i + 1;
        // A blank line: "\n\n" or "\n\r\n".
        let rest = &buf[end..];
        if rest.first() == Some(&b'\n') {
            return Some(end + 1);
        }
        if rest.starts_with(b"\r\n") {
            return Some(end + 2);
        }
        at = end;
    }
    None
}

enum Event {
    /// No data but a `retry:` field: the priming event that lets a client
    /// resume; a JSON answer needs none.
    Priming,
    /// A JSON-RPC response or error: the request's answer.
    Final(Bytes),
    /// Anything else: a message before the answer, or a keep-alive comment.
    Other,
}

fn classify(event: &[u8]) -> Event {
    let mut data: Vec<&[u8]> = Vec::new();
    let mut retry = false;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            data.push(value.strip_prefix(b" ").unwrap_or(value));
        } else if line.starts_with(b"retry:") {
            retry = true;
        }
    }
    let data = data.join(&b'\n');
    if data.is_empty() {
        return if retry { Event::Priming } else { Event::Other };
    }
    /// Just enough of a JSON-RPC message to tell a response from the rest.
    #[derive(Deserialize)]
    struct Shape {
        method: Option<IgnoredAny>,
        result: Option<IgnoredAny>,
        error: Option<IgnoredAny>,
    }
    match serde_json::from_slice::<Shape>(&data) {
        Ok(s) if s.method.is_none() && (s.result.is_some() || s.error.is_some()) => {
            Event::Final(Bytes::from(data))
        }
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line() {
        assert_eq!(event_len(b"data: x\n"), None);
        assert_eq!(event_len(b"data: x\n\ndata: y"), Some(9));
        assert_eq!(
            event_len(b"id: 0\r\nretry: 3000\r\ndata:\r\n\r\n"),
            Some(29)
        );
    }

    #[test]
    fn a_response_is_final_and_the_rest_is_not() {
        let response = b"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n";
        assert!(matches!(classify(response), Event::Final(d) if d.starts_with(b"{\"jsonrpc\"")));
        let error =
            b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1,\"message\":\"x\"}}\n";
        assert!(matches!(classify(error), Event::Final(_)));
        let progress =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n";
        assert!(matches!(classify(progress), Event::Other));
        let request = b"data: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}\n";
        assert!(matches!(classify(request), Event::Other));
        assert!(matches!(
            classify(b"id: 0\nretry: 3000\ndata:\n"),
            Event::Priming
        ));
        assert!(matches!(classify(b":\n"), Event::Other));
    }
}
