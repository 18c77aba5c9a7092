//! DNS-rebinding protection for every route, probes included: the `Host`
//! header must name this gateway (`[server] allowed_hosts`), and a browser's
//! `Origin`, when present, must be a loopback origin or one listed in
//! `[server] allowed_origins`.
//!
//! rmcp checks `Host` on the MCP endpoint too; we check it here as well so
//! that `/healthz`, `/readyz`, `/status` and `/metrics` get the same
//! protection. An orchestrator probing the pod's IP needs that IP (or the
//! name it uses) in `allowed_hosts`. Requests without
//! `Origin` do not come from a browser page and pass the origin check.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, FutureExt};
use http::{Request, Response, header};
use tower::{Layer, Service};

use crate::front::reject::{Body, Rejection};

/// A host (lowercase, without IPv6 brackets) and an optional port.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

fn authority(s: &str) -> Option<Authority> {
    let a = http::uri::Authority::try_from(s).ok()?;
    Some(Authority {
        host: a.host().trim_matches(['[', ']']).to_ascii_lowercase(),
        port: a.port_u16(),
    })
}

/// A configured host: `name`, `name:port`, or a bare IPv6 address.
fn allowed_host(s: &str) -> Authority {
    authority(s).unwrap_or_else(|| Authority {
        host: s.trim_matches(['[', ']']).to_ascii_lowercase(),
        port: None,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum OriginPort {
    Any,
    Exact(u16),
}

#[derive(Debug)]
enum AllowedOrigin {
    Any,
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: OriginPort,
    },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `(scheme, host, port)` of an origin, the port defaulted from the scheme.
fn origin_tuple(s: &str) -> Option<(String, String, Option<u16>)> {
    let uri = http::Uri::try_from(s.trim()).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let a = uri.authority()?;
    let port = a.port_u16().or_else(|| default_port(&scheme));
    Some((
        scheme,
        a.host().trim_matches(['[', ']']).to_ascii_lowercase(),
        port,
    ))
}

fn allowed_origin(s: &str) -> Option<AllowedOrigin> {
    let s = s.trim();
    if s == "*" {
        return Some(AllowedOrigin::Any);
    }
    if s.eq_ignore_ascii_case("null") {
        return Some(AllowedOrigin::Null);
    }
    if let Some(base) = s.strip_suffix(":*") {
        let (scheme, host, _) = origin_tuple(base)?;
        return Some(AllowedOrigin::Tuple {
            scheme,
            host,
            port: OriginPort::Any,
        });
    }
    let (scheme, host, port) = origin_tuple(s)?;
    Some(AllowedOrigin::Tuple {
        scheme,
        host,
        port: port.map_or(OriginPort::Any, OriginPort::Exact),
    })
}

/// The parsed `allowed_hosts` and `allowed_origins`.
pub struct OriginPolicy {
    hosts: Vec<Authority>,
    origins: Vec<AllowedOrigin>,
}

impl OriginPolicy {
    pub fn new(allowed_hosts: &[String], allowed_origins: &[String]) -> Self {
        Self {
            hosts: allowed_hosts.iter().map(|h| allowed_host(h)).collect(),
            origins: allowed_origins
                .iter()
                .filter_map(|o| allowed_origin(o))
                .collect(),
        }
    }

    fn check<B>(&self, req: &Request<B>) -> Result<(), Rejection> {
        if !self.hosts.is_empty() {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            let allowed = authority(&host).is_some_and(|h| {
                self.hosts
                    .iter()
                    .any(|a| a.host == h.host && a.port.is_none_or(|p| h.port == Some(p)))
            });
            if !allowed {
                return Err(Rejection::Host(host));
            }
        }
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if self.origin_allowed(&origin) {
            Ok(())
        } else {
            Err(Rejection::Origin(origin))
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if origin.trim().eq_ignore_ascii_case("null") {
            return self
                .origins
                .iter()
                .any(|o| matches!(o, AllowedOrigin::Null | AllowedOrigin::Any));
        }
        let Some((scheme, host, port)) = origin_tuple(origin) else {
            return false;
        };
        // Pages served from this machine may talk to a local gateway.
        if matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1") {
            return true;
        }
        self.origins.iter().any(|o| match o {
            AllowedOrigin::Any => true,
            AllowedOrigin::Null => false,
            AllowedOrigin::Tuple {
                scheme: s,
                host: h,
                port: p,
            } => {
                *s == scheme
                    && *h == host
                    && match p {
                        OriginPort::Any => true,
                        OriginPort::Exact(p) => port == Some(*p),
                    }
            }
        })
    }
}

#[derive(Clone)]
pub struct OriginLayer {
    policy: Arc<OriginPolicy>,
}

impl OriginLayer {
    pub fn new(policy: OriginPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for OriginLayer {
    type Service = Origin<S>;
    fn layer(&self, inner: S) -> Origin<S> {
        Origin {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Origin<S> {
    inner: S,
    policy: Arc<OriginPolicy>,
}

impl<S, B> Service<Request<B>> for Origin<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Every route, the probes included: `/readyz` describes the
        // backends, and a rebinding page must not read it either.
        if let Err(rejection) = self.policy.check(&req) {
            tracing::warn!(error = %rejection, "request refused (possible DNS rebinding or cross-origin request)");
            return futures::future::ready(Ok(rejection.into_response())).boxed();
        }
        self.inner.call(req).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, origin: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/mcp").header("host", host);
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn hosts_and_origins() {
        let p = OriginPolicy::new(
            &[
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                "gw.example.com:443".into(),
            ],
            &[
                "https://app.example.com".into(),
                "http://tools.example.com:*".into(),
            ],
        );
        assert!(p.check(&req("127.0.0.1:8123", None)).is_ok());
        assert!(p.check(&req("[::1]:8123", None)).is_ok());
        assert!(p.check(&req("gw.example.com:443", None)).is_ok());
        assert!(p.check(&req("gw.example.com:8443", None)).is_err());
        assert!(p.check(&req("evil.example.net", None)).is_err());
        assert!(
            p.check(&req("localhost", Some("http://localhost:6274")))
                .is_ok()
        );
        assert!(
            p.check(&req("localhost", Some("https://app.example.com")))
                .is_ok()
        );
        assert!(
            p.check(&req("localhost", Some("https://app.example.com:8443")))
                .is_err()
        );
        assert!(
            p.check(&req("localhost", Some("http://tools.example.com:9000")))
                .is_ok()
        );
        assert!(
            p.check(&req("localhost", Some("http://evil.example.net")))
                .is_err()
        );
        assert!(p.check(&req("localhost", Some("null"))).is_err());
        let open = OriginPolicy::new(&[], &["*".into()]);
        assert!(open.check(&req("anything", Some("https://x.y"))).is_ok());
    }
}
