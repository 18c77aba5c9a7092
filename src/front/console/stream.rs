//! `GET /ui/api/events`: the console's push stream, in the Server-Sent
//! Events format (`event: NAME` / `data: JSON` / blank line).
//!
//! One task per open stream (`run`) sends:
//!
//! - `hello` once: who the caller is;
//! - `state` at most once a second, when it changed: `/status` as the caller
//!   may see it, per-backend history, the caller's jobs (`data::state`);
//! - `audit` for each audit entry as it is recorded, when the caller may
//!   read it (its own entries, or every entry for an admin);
//! - `bus` for each bus message the caller may see (the last
//!   `BUS_BACKLOG` first), and `lagged` when the stream fell behind either.
//!
//! The task ends when the client goes away (the response body, and with it
//! the channel's receiver, is dropped), when the client stops reading for
//! `SEND_TIMEOUT`, or at server shutdown. Its body holds one of the
//! console's `MAX_STREAMS` permits until then.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};

use super::{Viewer, data};
use crate::audit::LogEntry;
use crate::front::Front;
use crate::front::reject::{Body, json_response};
use crate::store::{BusMessage, Event};

/// How often the state is rebuilt (and sent when it changed).
const TICK: Duration = Duration::from_secs(1);
/// A client that accepts no event for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bus messages from the history sent when the stream opens.
const BUS_BACKLOG: usize = 50;
/// Events waiting for the client; beyond it the task waits (up to `SEND_TIMEOUT`).
const CHANNEL: usize = 64;

/// Opens a stream for `viewer`, or answers 503 when `MAX_STREAMS` are open.
pub fn open(front: &Front, viewer: Viewer, streams: &Arc<Semaphore>) -> Response<Body> {
    let Ok(permit) = streams.clone().try_acquire_owned() else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": format!("too many console streams open (at most {})", super::MAX_STREAMS)}),
        );
    };
    let (tx, rx) = mpsc::channel(CHANNEL);
    // Ends with the client, a stalled client, or shutdown (module docs).
    tokio::spawn(run(front.clone(), viewer, tx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        // Proxies that buffer (nginx) would hold events back.
        .header("x-accel-buffering", "no")
        .body(
            EventBody {
                rx,
                _permit: permit,
            }
            .boxed(),
        )
        .unwrap_or_default()
}

/// One SSE event, framed.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Sends an event; false when the client is gone or too slow.
async fn send(tx: &mpsc::Sender<Bytes>, frame: Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(frame)).await,
        Ok(Ok(()))
    )
}

/// Receives from an optional feed; never resolves without one.
async fn next<T: Clone>(
    rx: &mut Option<broadcast::Receiver<T>>,
) -> Result<T, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn run(front: Front, viewer: Viewer, tx: mpsc::Sender<Bytes>) {
    let hello = json!({"client": viewer.id(), "admin": viewer.admin(), "version": env!("CARGO_PKG_VERSION")});
    if !send(&tx, event("hello", &hello)).await {
        return;
    }
    let mut audit = Some(front.gateway.audit.follow());
    let store = front.reloader.bus_store();
    let mut bus = store.as_ref().map(|s| s.events());
    if let Some(store) = &store
        && let Ok(history) = store.bus_history().await
    {
        let visible: Vec<&BusMessage> = history.iter().filter(|m| sees_bus(&viewer, m)).collect();
        let skip = visible.len().saturating_sub(BUS_BACKLOG);
        for m in &visible[skip..] {
            if !send(&tx, event("bus", &crate::builtin::bus::to_json(m))).await {
                return;
            }
        }
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_state = String::new();
    loop {
        let frame = tokio::select! {
            _ = front.shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = tick.tick() => {
                let state = data::state(&front, &viewer).await.to_string();
                if state == last_state {
                    continue;
                }
                let frame = Bytes::from(format!("event: state\ndata: {state}\n\n"));
                last_state = state;
                frame
            }
            entry = next(&mut audit) => match entry {
                Ok(e) if sees_entry(&viewer, &e) => event("audit", &json!(e)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => event("lagged", &json!({"feed": "audit", "missed": n})),
                Err(broadcast::error::RecvError::Closed) => { audit = None; continue }
            },
            message = next(&mut bus) => match message {
                Ok(Event::Bus(m)) if sees_bus(&viewer, &m) => event("bus", &crate::builtin::bus::to_json(&m)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => event("lagged", &json!({"feed": "bus", "missed": n})),
                Err(broadcast::error::RecvError::Closed) => { bus = None; continue }
            },
        };
        if !send(&tx, frame).await {
            return;
        }
    }
}

/// An admin (or everybody without auth) reads every entry; a client its own,
/// as `GET /api/v1/logs` scopes them.
fn sees_entry(viewer: &Viewer, entry: &LogEntry) -> bool {
    viewer.admin() || entry.extra_data.get("client_id").and_then(Value::as_str) == viewer.id()
}

/// An admin sees every message; a client the ones `get_queue_messages`
/// would show it: unrouted, or routed to its client id.
fn sees_bus(viewer: &Viewer, m: &BusMessage) -> bool {
    viewer.admin() || crate::builtin::bus::routed_to(m, None, viewer.id())
}

/// The response body: whatever the task sends, until it ends.
struct EventBody {
    rx: mpsc::Receiver<Bytes>,
    /// One of the console's stream permits, given back when the body drops.
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
