//! Client transport for backends that still speak the legacy MCP HTTP+SSE transport
//! (protocol 2024-11-05), which rmcp 3.x no longer ships.
//!
//! The wire protocol: `GET <url>` opens a long-lived `text/event-stream`. Its first `endpoint`
//! event names the URL to POST client messages to; every later `message` event carries one
//! JSON-RPC message from the server. [`connect`] performs that handshake and returns a
//! [`SseClientTransport`], which implements [`Transport<RoleClient>`] so it can be handed to
//! `handler.serve(transport)` like any rmcp transport.
//!
//! What this module must not do:
//! - reconnect: a dropped stream ends the transport (`receive` returns `None`), so the
//!   backend supervisor sees the backend as gone and decides what to do;
//! - panic or end the stream on one malformed event: bad data is logged and skipped;
//! - send the configured headers (often credentials) anywhere but the SSE URL's origin: an
//!   `endpoint` event pointing at another origin is refused;
//! - print header values or URL query strings (which may hold tokens) in errors or logs;
//! - set timeouts on the event stream itself: only the handshake is bounded. Give it a
//!   `reqwest::Client` without a total request timeout, or the stream is cut when it fires.

use std::{borrow::Cow, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use reqwest::{
    StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::Transport,
};
use sse_stream::{Sse, SseStream};
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};
use url::Url;

/// How much of a failed POST's response body goes into the error.
const BODY_SNIPPET_LIMIT: usize = 512;

/// Messages parsed ahead of rmcp's receive loop. Small, so a slow consumer slows the read
/// of the event stream (TCP backpressure) instead of growing memory.
const INBOUND_BUFFER: usize = 32;

/// Where and how to reach one legacy SSE backend.
#[derive(Debug, Clone)]
pub struct SseClientConfig {
    /// The SSE URL to GET, e.g. `http://localhost:8080/sse`.
    pub url: String,
    /// Extra headers sent on the GET and on every POST (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Upper bound for the handshake: response headers plus the `endpoint` event.
    pub connect_timeout: Duration,
    /// Sees the raw answers to list requests (see `extras`).
    pub tap: Option<Arc<super::extras::ListTap>>,
}

/// Why connecting to, or sending to, a legacy SSE backend failed.
///
/// URLs are shown without user info or query string, because both may
/// carry credentials or session ids.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    #[error("SSE endpoint {url:?} is not a valid URL: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("SSE endpoint {url}: header {name:?} is not a valid HTTP header")]
    InvalidHeader { url: String, name: String },
    #[error("SSE endpoint {url}: request failed: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("SSE endpoint {url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error(
        "SSE endpoint {url} answered with content type {content_type:?}, not text/event-stream"
    )]
    NotEventStream { url: String, content_type: String },
    #[error("SSE endpoint {url}: no endpoint event within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("SSE endpoint {url}: stream ended before the endpoint event")]
    ClosedBeforeEndpoint { url: String },
    #[error("SSE endpoint {url}: stream failed before the endpoint event: {source}")]
    Stream {
        url: String,
        #[source]
        source: sse_stream::Error,
    },
    #[error("SSE endpoint {url}: endpoint event {data:?} is not a valid URL: {source}")]
    InvalidEndpoint {
        url: String,
        data: String,
        #[source]
        source: url::ParseError,
    },
    #[error("SSE endpoint {url}: endpoint event points at another origin ({endpoint}); refused")]
    CrossOriginEndpoint { url: String, endpoint: String },
    #[error("POST {url}: could not encode the message: {source}")]
    Encode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("POST {url} failed: {source}")]
    Post {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("POST {url} answered {status}: {body}")]
    PostStatus {
        url: String,
        status: StatusCode,
        body: String,
    },
}

/// A connected legacy SSE backend, ready for `handler.serve(transport)`.
///
/// A background task reads the event stream and feeds [`Transport::receive`]; it ends when
/// the stream ends or fails, when [`Transport::close`] is called, or when this value is
/// dropped.
pub struct SseClientTransport {
    post: Arc<PostTarget>,
    /// Parsed server messages from the reader task; yields `None` once that task has ended.
    inbound: mpsc::Receiver<ServerJsonRpcMessage>,
    /// Stops the reader task. Cancelled by `close`, or by `_stop_on_drop` when dropped.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    reader: Option<JoinHandle<()>>,
}

/// Everything a POST needs, shared with the `'static` send futures.
struct PostTarget {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
}

/// Opens the event stream and waits for the `endpoint` event.
///
/// # Errors
///
/// Fails if the URL or a header is invalid, the GET fails or answers non-2xx or not
/// `text/event-stream`, the stream ends or the `connect_timeout` passes before a valid
/// same-origin `endpoint` event arrives.
pub async fn connect(
    client: reqwest::Client,
    config: SseClientConfig,
) -> Result<SseClientTransport, SseError> {
    let sse_url = Url::parse(&config.url).map_err(|source| SseError::InvalidUrl {
        url: config.url.clone(),
        source,
    })?;
    let shown = redact(&sse_url);
    let headers = header_map(&config.headers, &shown)?;

    let handshake = handshake(&client, &sse_url, &headers);
    let (post_url, events) = tokio::time::timeout(config.connect_timeout, handshake)
        .await
        .map_err(|_| SseError::Timeout {
            url: shown.clone(),
            after: config.connect_timeout,
        })??;
    tracing::debug!(url = %shown, post_url = %redact(&post_url), "SSE backend connected");

    let (tx, inbound) = mpsc::channel(INBOUND_BUFFER);
    let stop = CancellationToken::new();
    // Ends when the stream ends or fails, when `stop` is cancelled (close or drop), or when
    // the transport's receiver is gone.
    let reader = tokio::spawn(read_events(events, tx, stop.clone(), shown, config.tap));
    Ok(SseClientTransport {
        post: Arc::new(PostTarget {
            client,
            url: post_url,
            headers,
        }),
        inbound,
        _stop_on_drop: stop.clone().drop_guard(),
        stop,
        reader: Some(reader),
    })
}

type EventStream = BoxStream<'static, Result<Sse, sse_stream::Error>>;

/// GETs the stream and reads it up to the `endpoint` event; returns the POST URL and the
/// rest of the stream.
async fn handshake(
    client: &reqwest::Client,
    sse_url: &Url,
    headers: &HeaderMap,
) -> Result<(Url, EventStream), SseError> {
    let shown = redact(sse_url);
    let response = client
        .get(sse_url.clone())
        .headers(headers.clone())
        .header(ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| SseError::Connect {
            url: shown.clone(),
            source: e.without_url(),
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(SseError::Status { url: shown, status });
    }
    // A missing content type is tolerated; a wrong one usually means a web page or a
    // streamable-HTTP endpoint was configured as SSE, which would otherwise only show up as
    // a timeout.
    if let Some(content_type) = response.headers().get(CONTENT_TYPE) {
        let content_type = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
        if !content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(SseError::NotEventStream {
                url: shown,
                content_type,
            });
        }
    }

    // `without_url`: reqwest puts the full URL (query included) into its error text.
    let bytes = response.bytes_stream().map_err(reqwest::Error::without_url);
    let mut events: EventStream = SseStream::from_bytes_stream(bytes).boxed();
    loop {
        let event = match events.next().await {
            None => return Err(SseError::ClosedBeforeEndpoint { url: shown }),
            Some(Err(source)) => return Err(SseError::Stream { url: shown, source }),
            Some(Ok(event)) => event,
        };
        match (event.event.as_deref(), event.data) {
            (Some("endpoint"), Some(data)) => {
                let post_url = endpoint_url(sse_url, &data)?;
                return Ok((post_url, events));
            }
            // Nothing may be sent before initialize, so a message here is a server bug;
            // skipping it beats guessing where to reply.
            (kind, _) => {
                let event = kind.unwrap_or("message");
                tracing::warn!(url = %shown, event, "SSE event before the endpoint event; skipped");
            }
        }
    }
}

/// Resolves the `endpoint` event's data (relative or absolute) against the SSE URL.
fn endpoint_url(sse_url: &Url, data: &str) -> Result<Url, SseError> {
    let shown = redact(sse_url);
    let post_url = sse_url
        .join(data.trim())
        .map_err(|source| SseError::InvalidEndpoint {
            url: shown.clone(),
            data: data.to_owned(),
            source,
        })?;
    // The configured headers often carry credentials; never let a backend redirect them.
    if post_url.origin() != sse_url.origin() {
        return Err(SseError::CrossOriginEndpoint {
            url: shown,
            endpoint: redact(&post_url),
        });
    }
    Ok(post_url)
}

/// The reader task: turns `message` events into JSON-RPC messages for rmcp.
async fn read_events(
    mut events: EventStream,
    tx: mpsc::Sender<ServerJsonRpcMessage>,
    stop: CancellationToken,
    url: String,
    tap: Option<Arc<super::extras::ListTap>>,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        let event = match event {
            None => {
                tracing::info!(url = %url, "SSE stream ended");
                return;
            }
            Some(Err(error)) => {
                tracing::warn!(url = %url, %error, "SSE stream failed");
                return;
            }
            Some(Ok(event)) => event,
        };
        // Per the SSE spec an event without an `event:` field is of type "message".
        if !matches!(event.event.as_deref(), None | Some("message")) {
            tracing::debug!(url = %url, event = ?event.event, "ignoring SSE event");
            continue;
        }
        let Some(data) = event.data else {
            continue;
        };
        if let Some(tap) = tap.as_ref().filter(|t| t.waiting()) {
            tap.read(data.as_bytes());
        }
        match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
            Ok(message) => {
                let sent = tokio::select! {
                    () = stop.cancelled() => return,
                    sent = tx.send(message) => sent,
                };
                if sent.is_err() {
                    // The transport was dropped without close; nobody is listening.
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(
                    url = %url,
                    %error,
                    "malformed JSON-RPC message in SSE event; skipped"
                );
            }
        }
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseError;

    fn name() -> Cow<'static, str> {
        "legacy-sse".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), SseError>> + Send + 'static {
        let post = Arc::clone(&self.post);
        async move { post.send(&item).await }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        self.inbound.recv().await
    }

    async fn close(&mut self) -> Result<(), SseError> {
        self.stop.cancel();
        if let Some(reader) = self.reader.take()
            && let Err(error) = reader.await
        {
            tracing::warn!(url = %redact(&self.post.url), %error, "SSE reader task failed");
        }
        Ok(())
    }
}

impl PostTarget {
    async fn send(&self, message: &ClientJsonRpcMessage) -> Result<(), SseError> {
        let shown = || redact(&self.url);
        let body = serde_json::to_vec(message).map_err(|source| SseError::Encode {
            url: shown(),
            source,
        })?;
        let mut response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SseError::Post {
                url: shown(),
                source: e.without_url(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Read only a prefix: the body is for a human reading the error.
        let mut snippet = Vec::new();
        while snippet.len() < BODY_SNIPPET_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        snippet.truncate(BODY_SNIPPET_LIMIT);
        Err(SseError::PostStatus {
            url: shown(),
            status,
            body: String::from_utf8_lossy(&snippet).trim().to_owned(),
        })
    }
}

/// Validates the configured headers once, so a typo fails `connect`, not every send.
fn header_map(headers: &[(String, String)], url: &str) -> Result<HeaderMap, SseError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = || SseError::InvalidHeader {
            url: url.to_owned(),
            name: name.clone(),
        };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        header_value.set_sensitive(true);
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// A URL fit for errors and logs: no user info, and the query replaced by `?…`.
fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    // Both setters only fail for URLs that cannot have credentials; nothing to hide then.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    let had_query = shown.query().is_some();
    shown.set_query(None);
    if had_query {
        format!("{shown}?…")
    } else {
        shown.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_resolves_relative_and_absolute_paths() {
        let sse = Url::parse("http://h:1/mcp/sse?token=x").unwrap();
        assert_eq!(
            endpoint_url(&sse, "/messages?session_id=a")
                .unwrap()
                .as_str(),
            "http://h:1/messages?session_id=a"
        );
        assert_eq!(
            endpoint_url(&sse, "messages?session_id=a")
                .unwrap()
                .as_str(),
            "http://h:1/mcp/messages?session_id=a"
        );
        assert_eq!(
            endpoint_url(&sse, "http://h:1/m?s=1").unwrap().as_str(),
            "http://h:1/m?s=1"
        );
    }

    #[test]
    fn endpoint_on_another_origin_is_refused() {
        let sse = Url::parse("http://h:1/sse").unwrap();
        let err = endpoint_url(&sse, "http://evil:1/messages").unwrap_err();
        assert!(matches!(err, SseError::CrossOriginEndpoint { .. }), "{err}");
    }

    #[test]
    fn redact_hides_credentials_and_query() {
        let url = Url::parse("https://u:p@h/sse?token=secret#frag").unwrap();
        assert_eq!(redact(&url), "https://h/sse?…");
        assert_eq!(redact(&Url::parse("http://h/sse").unwrap()), "http://h/sse");
    }

    #[test]
    fn invalid_header_names_the_header_not_the_value() {
        let err = header_map(&[("bad header".into(), "secret".into())], "http://h/sse")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"bad header\""), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
