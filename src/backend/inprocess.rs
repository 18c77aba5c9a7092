//! Backends served inside the gateway process (transport `Builtin`): the
//! backend layer defines how such a server is reached, and the layer above
//! (the built-in tool sets) provides them, so this module never names one.

use std::sync::Arc;

use futures::future::BoxFuture;

/// Serves one connection of an in-process server on the given pipe until it closes.
pub type ServeFn = Arc<dyn Fn(tokio::io::DuplexStream) -> BoxFuture<'static, ()> + Send + Sync>;

/// The in-process servers a gateway offers, by set name.
pub trait InProcessSets: Send + Sync {
    fn get(&self, set: &str) -> Option<ServeFn>;
}

/// No in-process servers (a gateway before its first config is applied).
pub struct NoSets;

impl InProcessSets for NoSets {
    fn get(&self, _: &str) -> Option<ServeFn> {
        None
    }
}
