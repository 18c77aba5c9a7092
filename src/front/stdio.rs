//! Serving the gateway to one client over stdin/stdout, for clients that can
//! only spawn a process. stdout carries protocol only: logs go to stderr.

use rmcp::ServiceExt;

use super::Front;

/// Serves one session on stdio until the client closes stdin.
pub async fn serve(front: Front) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let session = super::FrontService(front.session());
    let running = session.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}
