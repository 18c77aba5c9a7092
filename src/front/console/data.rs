//! The console's plain JSON routes, and the state document its push stream
//! sends: each built from what the caller may see, never more.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::Viewer;
use crate::front::Front;
use crate::front::reject::{Body, json_response};
use crate::front::routes::{redacted, with_view};

/// The tool and its set that `@jobs` mounts.
const QUEUE_TOOL: (&str, &str) = ("@jobs", "queue");
/// Jobs the state lists, newest first.
const LISTED_JOBS: u32 = 50;

/// `GET /ui/api/session`: who the token is and what this gateway has on.
pub fn session(front: &Front, viewer: &Viewer) -> Response<Body> {
    let audit = front.gateway.audit.status_json();
    json_response(
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "auth": viewer.client.is_some(),
            "client": viewer.id(),
            "admin": viewer.admin(),
            "features": {
                "jobs": front.reloader.jobs().is_some() && may_use_queue(viewer),
                "audit": !audit["local"].is_null(),
                "bus": front.reloader.bus_store().is_some(),
                "reload": viewer.admin() && front.reloader.path().is_some(),
            },
        }),
    )
}

/// Whether the viewer may call the job queue (as `POST /api/v1/execute` checks).
fn may_use_queue(viewer: &Viewer) -> bool {
    let (backend, tool) = QUEUE_TOOL;
    viewer
        .client
        .as_ref()
        .is_none_or(|c| c.may_call_tool(backend, tool))
}

/// `GET /ui/api/tools`: every tool the caller may call, with its schema and
/// the backend that serves it, in the order `tools/list` gives them.
pub fn tools(front: &Front, viewer: &Viewer) -> Response<Body> {
    let snapshot = front.gateway.snapshot();
    let tools: Vec<Value> = snapshot
        .tools()
        .into_iter()
        .filter_map(|t| {
            let (backend, _) = snapshot.route_tool(&t.name)?;
            if let Some(c) = &viewer.client
                && !c.may_call_tool(backend.name(), &t.name)
            {
                return None;
            }
            Some(json!({
                "name": t.name,
                "title": t.title,
                "description": t.description,
                "input_schema": t.input_schema,
                "backend": backend.name(),
            }))
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"count": tools.len(), "tools": tools}),
    )
}

/// The `state` event: status and per-backend history as the caller may see
/// them, and the caller's jobs (`null` without a queue it may use).
pub async fn state(front: &Front, viewer: &Viewer) -> Value {
    let gateway = &front.gateway;
    let (status, history) = with_view(viewer.client.as_deref(), |v| {
        (gateway.status_json(v), gateway.history_json(v))
    });
    json!({
        "status": redacted(status),
        "history": history,
        "jobs": jobs(front, viewer).await,
    })
}

/// The caller's jobs, newest first, as `list_jobs` answers them.
async fn jobs(front: &Front, viewer: &Viewer) -> Value {
    let Some(jobs) = front.reloader.jobs() else {
        return Value::Null;
    };
    if !may_use_queue(viewer) {
        return Value::Null;
    }
    let caller = crate::jobs::Caller::new(viewer.id().map(String::from), None);
    let args = json!({"action": "list_jobs", "limit": LISTED_JOBS});
    let args = args.as_object().cloned().unwrap_or_default();
    match crate::jobs::actions::dispatch(&jobs, &caller, &args).await {
        Ok(v) => v.get("jobs").cloned().unwrap_or(Value::Null),
        Err(e) => json!({"error": e.to_string()}),
    }
}
