//! The streamable-HTTP client of a backend, with the list answers tapped.
//!
//! rmcp's reqwest client parses a JSON answer into typed messages before a
//! transport wrapper could see its bytes. So a list request (rare: on
//! connect and on `list_changed`) is POSTed here, and its answer's raw
//! bytes are shown to the backend's [`ListTap`] before rmcp gets the
//! message, whether it comes as JSON or in an SSE stream. Any other
//! answer (an error status, an expired session, an auth challenge) is left
//! to rmcp's client, which POSTs the list request again and handles it as
//! usual: a list request has no effect to repeat. Every other message goes
//! straight to rmcp's client.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderName, HeaderValue, header};
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Sse, SseStream};

use super::extras::ListTap;

/// Largest list answer read here (rmcp's limit for a JSON answer is lower;
/// a larger one falls back to rmcp's client and its limits).
const MAX_LIST_ANSWER: usize = 64 * 1024 * 1024;

const SESSION_ID: &str = "mcp-session-id";

#[derive(Clone)]
pub(super) struct TappedHttp {
    pub http: reqwest::Client,
    pub tap: Option<Arc<ListTap>>,
    /// The connection's direct calls, told where and how rmcp's client sends.
    pub post: Option<Arc<super::post::Post>>,
}

impl TappedHttp {
    /// POSTs a list request and shows the answer to the tap; `None` when
    /// the answer is not a successful JSON or SSE one.
    async fn post_list(
        &self,
        tap: &Arc<ListTap>,
        uri: &str,
        message: &ClientJsonRpcMessage,
        session_id: Option<&str>,
        auth: Option<&str>,
        custom: &HashMap<HeaderName, HeaderValue>,
    ) -> Option<StreamableHttpPostResponse> {
        let body = serde_json::to_vec(message).ok()?;
        let mut request = self
            .http
            .post(uri)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        for (name, value) in custom {
            request = request.header(name, value);
        }
        if let Some(id) = session_id {
            request = request.header(SESSION_ID, id);
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let session = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let kind = content_type(&response);
        if kind.starts_with(b"application/json") {
            let body = read_capped(response, MAX_LIST_ANSWER).await.ok()?;
            tap.read(&body);
            let message = serde_json::from_slice::<ServerJsonRpcMessage>(&body).ok()?;
            return Some(StreamableHttpPostResponse::Json(message, session));
        }
        if kind.starts_with(b"text/event-stream") {
            let tap = tap.clone();
            let mut read = 0usize;
            let bytes = response.bytes_stream().map(move |chunk| {
                let chunk = chunk.map_err(std::io::Error::other)?;
                read += chunk.len();
                if read > MAX_LIST_ANSWER {
                    return Err(std::io::Error::other("list answer too large"));
                }
                Ok(chunk)
            });
            let events: BoxStream<'static, Result<Sse, SseError>> =
                SseStream::from_bytes_stream(bytes)
                    .inspect_ok(move |event| {
                        if let Some(data) = &event.data
                            && tap.waiting()
                        {
                            tap.read(data.as_bytes());
                        }
                    })
                    .boxed();
            return Some(StreamableHttpPostResponse::Sse(events, session));
        }
        None
    }
}

/// An answer's content type, lowercased (empty when it has none).
pub(super) fn content_type(response: &reqwest::Response) -> Vec<u8> {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The body, or why not: over `limit` bytes, or a read error.
pub(super) async fn read_capped(
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > limit {
            return Err("over the size limit".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

impl TappedHttp {
    /// Tells the connection's direct calls where and how rmcp's client sends.
    fn note(
        &self,
        message: &ClientJsonRpcMessage,
        uri: &Arc<str>,
        session: &Option<Arc<str>>,
        auth: &Option<String>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) {
        if let Some(post) = &self.post {
            post.note(message, uri, session.as_ref(), auth.as_ref(), headers);
        }
    }
}

impl StreamableHttpClient for TappedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.note(&message, &uri, &session_id, &auth_header, &custom_headers);
        if let Some(tap) = &self.tap
            && ListTap::is_list_request(&message)
            && let Some(answer) = self
                .post_list(
                    tap,
                    &uri,
                    &message,
                    session_id.as_deref(),
                    auth_header.as_deref(),
                    &custom_headers,
                )
                .await
        {
            return Ok(answer);
        }
        self.http
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        if ListTap::is_list_request(&message) {
            return self
                .post_message(uri, message, session_id, auth_header, custom_headers)
                .await;
        }
        self.note(&message, &uri, &session_id, &auth_header, &custom_headers);
        self.http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
