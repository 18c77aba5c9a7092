//! Serving the gateway to one client over stdin/stdout, for clients that can
//! only spawn a process. stdout carries protocol only: logs go to stderr.

use std::sync::Arc;

use rmcp::ServiceExt;

use super::FrontSession;
use crate::gateway::Gateway;

/// Serves one session on stdio until the client closes stdin.
pub async fn serve(gateway: Arc<Gateway>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let session = FrontSession::new(gateway);
    let running = session.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
