//! `http`: one JSON POST per batch, `{"logs": [...]}` with camelCase field
//! names and `Authorization: Bearer <api_key>`, as Convex-style ingestion
//! endpoints expect. Any 2xx is success.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::dest::Destination;
use super::{AuditError, LogEntry};

const KIND: &str = "http";

pub struct Http {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
}

impl Http {
    pub fn new(client: reqwest::Client, url: String, api_key: Option<String>) -> Self {
        Self {
            client,
            url,
            api_key,
        }
    }

    async fn post(&self, batch: &[Arc<LogEntry>]) -> Result<(), AuditError> {
        let logs: Vec<Value> = batch.iter().map(|e| e.to_camel_json()).collect();
        let body =
            serde_json::to_vec(&json!({ "logs": logs })).map_err(|e| AuditError::write(KIND, e))?;
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let response = req.send().await.map_err(|e| AuditError::write(KIND, e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AuditError::write(
                KIND,
                format!("{} answered {status}", self.url),
            ))
        }
    }
}

impl Destination for Http {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write<'a>(&'a self, batch: &'a [Arc<LogEntry>]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(self.post(batch))
    }
}
