//! The console: a web page at `/ui` that shows the running gateway live
//! (backends, sessions, tools, jobs, the audit log, the bus) and drives it
//! (try a tool, start and stop jobs, reload the config).
//!
//! - `GET /ui`, `/ui/*.js|css|svg` (`assets.rs`): the page, embedded in the
//!   binary. Public (the auth layer lets `Route::Console` through): it holds
//!   no data, only a login form. Every response carries a strict CSP.
//! - `GET /ui/api/session`, `GET /ui/api/tools` (`data.rs`): who the token is,
//!   what is switched on, and the tools the caller may call.
//! - `GET /ui/api/events` (`stream.rs`): the push stream, Server-Sent Events
//!   read with `fetch()` so the token travels in the `Authorization` header
//!   (an `EventSource` cannot send one; a token in the URL would leak into
//!   logs and history). See docs/console.md for the events.
//!
//! Everything the page changes goes through the routes every other client
//! uses: `POST /api/v1/execute` (try-it, jobs), `GET /api/v1/logs`, `POST
//! /admin/reload`. A non-admin caller sees what `/status` shows it
//! (`routes::with_view`), its own audit entries, its own jobs, and the bus
//! messages routed to it or to everyone.

mod assets;
mod data;
mod stream;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use super::Front;
use super::layers::{Caller, Route};
use super::policy::Client;
use super::reject::{Body, text};

/// At most this many push streams are open at once; more get 503.
pub const MAX_STREAMS: usize = 32;

/// The console's routes, with what they share.
pub struct Console {
    front: Front,
    /// One permit per open push stream, held by its response body.
    streams: Arc<tokio::sync::Semaphore>,
}

impl Console {
    pub fn new(front: Front) -> Self {
        Self {
            front,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Answers a request for `/ui` or `/ui/api/*`.
    pub async fn handle(&self, req: Request<Full<Bytes>>) -> Response<Body> {
        let caller = req.extensions().get::<Caller>().map(|c| c.0.clone());
        let viewer = Viewer { client: caller };
        let path = req.uri().path();
        let response = match (Route::get(&req), req.method(), path) {
            (Route::Console, &Method::GET | &Method::HEAD, _) => assets::serve(path),
            (Route::ConsoleApi, &Method::GET, "/ui/api/session") => {
                data::session(&self.front, &viewer)
            }
            (Route::ConsoleApi, &Method::GET, "/ui/api/tools") => data::tools(&self.front, &viewer),
            (Route::ConsoleApi, &Method::GET, "/ui/api/events") => {
                stream::open(&self.front, viewer, &self.streams)
            }
            (Route::Console, _, _)
            | (Route::ConsoleApi, _, "/ui/api/session")
            | (Route::ConsoleApi, _, "/ui/api/tools" | "/ui/api/events") => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                r.headers_mut()
                    .insert(header::ALLOW, http::HeaderValue::from_static("GET"));
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
        with_security_headers(response)
    }
}

/// Who is looking: the token's client, `None` without `[auth]`.
#[derive(Clone)]
pub struct Viewer {
    client: Option<Arc<Client>>,
}

impl Viewer {
    /// Without auth everybody is; with it, tokens marked `admin = true`.
    fn admin(&self) -> bool {
        self.client.as_ref().is_none_or(|c| c.admin)
    }

    /// The authenticated client id, if auth is on.
    fn id(&self) -> Option<&str> {
        self.client.as_deref().map(|c| &*c.id)
    }
}

/// The page may load only its own scripts and styles, talk only to this
/// origin, and never be framed; nothing it shows can run as script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn with_security_headers(mut response: Response<Body>) -> Response<Body> {
    let h = response.headers_mut();
    let set = |h: &mut http::HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, http::HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}
