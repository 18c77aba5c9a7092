//! The console's page and scripts, compiled into the binary with
//! `include_str!` (no build step, no CDN: the page works offline and is
//! always the version of the gateway serving it).

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::front::reject::{Body, text};

/// Path under `/ui/`, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "panels.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/panels.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/charts.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

/// The asset at `path` (`/ui`, `/ui/` and `/ui/index.html` are the page).
pub fn serve(path: &str) -> Response<Body> {
    let name = match path.strip_prefix("/ui").unwrap_or(path) {
        "" | "/" => "index.html",
        p => p.trim_start_matches('/'),
    };
    let Some((_, content_type, content)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    Response::builder()
        .header(header::CONTENT_TYPE, *content_type)
        // Revalidated each time: a new binary may serve new assets.
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(content.as_bytes())).boxed())
        .unwrap_or_default()
}
