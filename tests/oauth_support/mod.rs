//! What the OAuth tests need besides the common harness: an issuer made of
//! signing keys minted here (aws-lc-rs) and a JWKS endpoint on 127.0.0.1
//! whose keys the test can switch, tokens signed with jsonwebtoken, and a
//! recording proxy in front of an HTTP backend that keeps every header the
//! gateway sent it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A private signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// An RSA 2048 key for RS256 (what most identity providers sign with).
    pub fn rsa(kid: &str) -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("generate an RSA key");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
        let key = EncodingKey::from_rsa_der(&pkcs1_of_pkcs8(pkcs8.as_ref()));
        Self::new(kid, Algorithm::RS256, key)
    }

    /// A P-256 key for ES256.
    pub fn ec(kid: &str) -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .expect("generate an EC key");
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(doc.as_ref()),
        )
    }

    fn new(kid: &str, alg: Algorithm, key: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("public JWK");
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Self {
            kid: kid.into(),
            alg,
            key,
            jwk: serde_json::to_value(jwk).expect("jwk json"),
        }
    }

    /// A token with these claims, signed by this key and naming `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signed by this key, but naming another key id.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_string());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }
}

/// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo:
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }.
fn pkcs1_of_pkcs8(der: &[u8]) -> Vec<u8> {
    fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = der[0];
        let (len, head) = match der[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let k = (n & 0x7f) as usize;
                let len = der[2..2 + k]
                    .iter()
                    .fold(0usize, |a, b| (a << 8) | *b as usize);
                (len, 2 + k)
            }
        };
        (tag, &der[head..head + len], &der[head + len..])
    }
    let (_, info, _) = tlv(der);
    let (_, _, rest) = tlv(info); // version
    let (_, _, rest) = tlv(rest); // algorithm
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 private key is an OCTET STRING");
    key.to_vec()
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Serves a JWK Set at `/jwks` on 127.0.0.1; the keys can be switched.
pub struct Jwks {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

impl Jwks {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let jwks = Self {
            addr,
            keys: Arc::new(Mutex::new(Value::Null)),
            hits: Arc::default(),
        };
        jwks.publish(keys);
        let (set, hits) = (jwks.keys.clone(), jwks.hits.clone());
        serve(listener, move |req: Request<Incoming>| {
            let (set, hits) = (set.clone(), hits.clone());
            async move {
                if req.uri().path() != "/jwks" {
                    return full(StatusCode::NOT_FOUND, "not found".into());
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let body = set.lock().expect("keys").to_string();
                full(StatusCode::OK, body)
            }
        });
        jwks
    }

    /// The issuer URL (`iss`) the tests use: the JWKS server's origin.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// From now on the endpoint publishes exactly these keys.
    pub fn publish(&self, keys: &[&SigningKey]) {
        let list: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        *self.keys.lock().expect("keys") = json!({ "keys": list });
    }

    /// How many times the key set was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Forwards every request to `target` and keeps the headers it carried.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<http::HeaderMap>>>,
}

impl RecordingProxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
        let (log, target) = (seen.clone(), target.to_string());
        let http = reqwest::Client::new();
        serve(listener, move |req: Request<Incoming>| {
            let (log, target, http) = (log.clone(), target.clone(), http.clone());
            async move {
                log.lock().expect("log").push(req.headers().clone());
                let method = req.method().clone();
                let mut headers = req.headers().clone();
                headers.remove(http::header::HOST);
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let upstream = http
                    .request(method, &target)
                    .headers(headers)
                    .body(body)
                    .send()
                    .await;
                let Ok(upstream) = upstream else {
                    return full(StatusCode::BAD_GATEWAY, "upstream unreachable".into());
                };
                let mut response = Response::builder().status(upstream.status());
                for (k, v) in upstream.headers() {
                    response = response.header(k, v);
                }
                let stream = upstream
                    .bytes_stream()
                    .map(|chunk| chunk.map(Frame::data).map_err(|e| Box::new(e) as _));
                response
                    .body(BodyExt::boxed(StreamBody::new(stream)))
                    .expect("response")
            }
        });
        Self { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Every request's headers so far.
    pub fn seen(&self) -> Vec<http::HeaderMap> {
        self.seen.lock().expect("log").clone()
    }
}

fn full(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("response")
}

/// Serves HTTP/1.1 on `listener` with `handle` until the test's runtime ends.
fn serve<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
