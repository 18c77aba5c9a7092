//! `elasticsearch`: the bulk API into daily indices `{prefix}-YYYY.MM.DD`,
//! with an index template (`{prefix}-*`: keyword ids, a date timestamp) put
//! before the first batch. Hosts are tried in order; an `"errors": true`
//! bulk answer is a failed write.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::dest::Destination;
use super::{AuditError, LogEntry};

const KIND: &str = "elasticsearch";

pub struct Elasticsearch {
    client: reqwest::Client,
    hosts: Vec<String>,
    prefix: String,
    api_key: Option<String>,
    /// Whether the index template is in place (put once per pipeline).
    template_put: AtomicBool,
}

impl Elasticsearch {
    pub fn new(
        client: reqwest::Client,
        hosts: Vec<String>,
        prefix: String,
        api_key: Option<String>,
    ) -> Self {
        Self {
            client,
            hosts: hosts
                .into_iter()
                .map(|h| h.trim_end_matches('/').to_string())
                .collect(),
            prefix,
            api_key,
            template_put: AtomicBool::new(false),
        }
    }

    fn template(&self) -> Value {
        let keyword = json!({"type": "keyword"});
        json!({
            "index_patterns": [format!("{}-*", self.prefix)],
            "template": {"mappings": {"properties": {
                "timestamp": {"type": "date"},
                "correlation_id": keyword, "level": keyword, "log_type": keyword,
                "tool_name": keyword, "status": keyword, "module": keyword,
                "function": keyword, "thread_name": keyword,
                "duration_ms": {"type": "double"},
                "message": {"type": "text"}, "output_summary": {"type": "text"},
                "error_message": {"type": "text"},
                "input_args": {"type": "object", "enabled": false},
            }}}
        })
    }

    /// Sends one request to the first host that answers; the body as JSON.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Value, AuditError> {
        let mut last = String::from("no hosts");
        for host in &self.hosts {
            let mut req = self
                .client
                .request(method.clone(), format!("{host}{path}"))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
            if let Some(key) = &self.api_key {
                req = req.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}"));
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status();
                    let bytes = r.bytes().await.map_err(|e| AuditError::write(KIND, e))?;
                    if !status.is_success() {
                        let text = String::from_utf8_lossy(&bytes);
                        return Err(AuditError::write(
                            KIND,
                            format!(
                                "{host}{path} answered {status}: {}",
                                super::entry::cut(&text, 300)
                            ),
                        ));
                    }
                    return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                }
                Err(e) => last = format!("{host}: {e}"),
            }
        }
        Err(AuditError::write(KIND, last))
    }

    async fn bulk(&self, batch: &[Arc<LogEntry>]) -> Result<(), AuditError> {
        if !self.template_put.load(Ordering::Relaxed) {
            let body =
                serde_json::to_vec(&self.template()).map_err(|e| AuditError::write(KIND, e))?;
            let path = format!("/_index_template/{}", self.prefix);
            self.send(reqwest::Method::PUT, &path, "application/json", body)
                .await?;
            self.template_put.store(true, Ordering::Relaxed);
        }
        let mut body = Vec::new();
        for e in batch {
            // `2026-11-29T…` → `{prefix}-2026.11.29`
            let day = e
                .timestamp
                .get(..10)
                .unwrap_or("1970-01-01")
                .replace('-', ".");
            let action = json!({"index": {"_index": format!("{}-{day}", self.prefix)}});
            serde_json::to_writer(&mut body, &action).map_err(|e| AuditError::write(KIND, e))?;
            body.push(b'\n');
            serde_json::to_writer(&mut body, &**e).map_err(|e| AuditError::write(KIND, e))?;
            body.push(b'\n');
        }
        let answer = self
            .send(
                reqwest::Method::POST,
                "/_bulk",
                "application/x-ndjson",
                body,
            )
            .await?;
        if answer.get("errors").and_then(Value::as_bool) == Some(true) {
            let first = answer["items"]
                .as_array()
                .and_then(|items| items.iter().find_map(|i| i["index"].get("error").cloned()))
                .unwrap_or(Value::Null);
            return Err(AuditError::write(
                KIND,
                format!("bulk item failed: {first}"),
            ));
        }
        Ok(())
    }
}

impl Destination for Elasticsearch {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write<'a>(&'a self, batch: &'a [Arc<LogEntry>]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(self.bulk(batch))
    }
}
