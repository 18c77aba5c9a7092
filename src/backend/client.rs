//! The gateway's rmcp client handler toward one backend: turns what the
//! backend sends unprompted into cache refreshes and client notifications.

use std::sync::Arc;

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};

use super::BackendRef;
use crate::hub::{Hub, ListKinds};

pub struct BackendClient {
    pub(super) backend: BackendRef,
    pub(super) hub: Arc<Hub>,
}

impl BackendClient {
    /// Refreshes the backend's catalog, then tells the sessions. Runs in the
    /// task rmcp spawned for this notification.
    async fn list_changed(&self, kinds: ListKinds) {
        let Some(backend) = self.backend.upgrade() else {
            return;
        };
        match backend.refresh(kinds).await {
            Ok(()) => self.hub.broadcast_list_changed(kinds),
            Err(e) => tracing::warn!(backend = %backend.name(), error = %e, "list refresh failed"),
        }
    }
}

impl ClientHandler for BackendClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("manifold", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed(ListKinds {
            tools: true,
            ..Default::default()
        })
        .await;
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed(ListKinds {
            prompts: true,
            ..Default::default()
        })
        .await;
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.list_changed(ListKinds {
            resources: true,
            ..Default::default()
        })
        .await;
    }
}
