//! The audit log: a local HTTP receiver that records what the HTTP (and
//! Elasticsearch) destination posts, and the gateway's audit counters.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::http::get_json;

/// Each request's `Authorization` header and body as JSON.
type Posts = Arc<Mutex<Vec<(Option<String>, Value)>>>;
/// Each request as "METHOD /path" and its raw body.
type Lines = Arc<Mutex<Vec<(String, String)>>>;

/// What the receiver was sent: each request's `Authorization` header and JSON body.
#[derive(Clone, Default)]
pub struct Received(pub Posts, pub Lines);

impl Received {
    /// Every log entry received so far, across batches.
    pub fn entries(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, body)| body["logs"].as_array().cloned().unwrap_or_default())
            .collect()
    }
    /// Every request as "METHOD /path" and its raw body.
    pub fn raw(&self) -> Vec<(String, String)> {
        self.1.lock().unwrap().clone()
    }
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }
}

/// Serves a receiver on `listener` until the runtime ends.
pub fn receiver(listener: tokio::net::TcpListener) -> Received {
    let received = Received::default();
    let rec = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let rec = rec.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let rec = rec.clone();
                    async move {
                        let line = format!("{} {}", req.method(), req.uri().path());
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(String::from);
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        rec.1
                            .lock()
                            .unwrap()
                            .push((line.clone(), String::from_utf8_lossy(&body).into_owned()));
                        rec.0.lock().unwrap().push((auth, json));
                        // What Elasticsearch answers a bulk request that went through.
                        let answer: &'static [u8] = if line.ends_with("/_bulk") {
                            b"{\"errors\":false,\"items\":[]}"
                        } else {
                            b"{}"
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    received
}

/// A loopback port that was free a moment ago (nothing listens on it now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One destination's counters from `/status`.
pub async fn counters(url: &str, destination: &str, token: Option<&str>) -> Value {
    let (_, status) = get_json(url, "/status", token).await;
    status["audit"]["destinations"][destination].clone()
}

pub fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}
