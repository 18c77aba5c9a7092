//! The HTTP front: the listener and the accept loop. What happens to a
//! request is the tower stack of [`super::stack`]; the routes and the edge
//! fixes are in [`super::routes`].

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::Front;
use super::conn::{Activity, ConnLimits, TrackedBody, Watched};
use super::layers::RemoteAddr;
use super::routes::Mcp;
use super::sessions::{Sessions, SharedStore};
use crate::config::StoreConfig;
use crate::store::sessions::SharedSessions;

/// How long open connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// rmcp's service and the session table it serves from (the direct path
/// serves from it too).
fn mcp_service(front: &Front, shutdown: &CancellationToken) -> (Mcp, Arc<Sessions>) {
    let mut local = LocalSessionManager::default();
    let server = front.gateway.server();
    local.session_config.keep_alive = Some(server.session_idle_timeout);
    let instance: Arc<str> = server.instance_id.as_str().into();
    let shared = match &front.sessions.store {
        StoreConfig::Memory => None,
        StoreConfig::Redis { url, key_prefix } => Some((
            Arc::new(SharedSessions::new(url.expose(), key_prefix)),
            server.session_idle_timeout,
        )),
    };
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_allowed_hosts(server.allowed_hosts.clone())
        // Our own pre-filter enforces `max_request_bytes`, which a reload may change.
        .with_max_request_body_bytes(usize::MAX);
    if let Some((table, ttl)) = &shared {
        front.policy.sessions.share(table.clone(), *ttl);
        config.session_store = Some(Arc::new(SharedStore {
            table: table.clone(),
            instance: instance.clone(),
            ttl: *ttl,
        }));
    }
    let factory = front.clone();
    let sessions = Arc::new(Sessions::new(local, instance, shared));
    let table = sessions.clone();
    // The session owner table prunes itself against the live sessions, and
    // learns of sessions shared through Redis.
    front.policy.sessions.track(&sessions);
    let owners = front.policy.clone();
    let hub = front.gateway.hub.clone();
    super::sessions::follow_moves(
        sessions.clone(),
        move |id| hub.has_calls_in_flight(id),
        move |id| owners.sessions.forget(id),
        shutdown.clone(),
    );
    share_list_changes(&front.gateway.hub, &sessions, shutdown);
    let mcp = StreamableHttpService::new(
        move || Ok(factory.http_session(&table)),
        sessions.clone(),
        config,
    );
    (mcp, sessions)
}

/// With shared sessions, tells the other instances when this one's lists
/// change, and tells this one's listen streams when another's did (a
/// 2026-07-28 client is served by any instance).
fn share_list_changes(
    hub: &Arc<crate::coordinator::Hub>,
    sessions: &Arc<Sessions>,
    shutdown: &CancellationToken,
) {
    let Some((table, _)) = sessions.shared() else {
        return;
    };
    let (table, me) = (table.clone(), sessions.instance().clone());
    hub.announce_lists_to(Box::new({
        let (table, me) = (table.clone(), me.clone());
        move |hashes| {
            let (table, me) = (table.clone(), me.clone());
            // Fire and forget: a lost hint costs a listener one refresh.
            tokio::spawn(async move {
                if let Err(e) = table.announce_lists(&me, hashes).await {
                    tracing::debug!(error = %e, "cannot announce a list change to other instances");
                }
            });
        }
    }));
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let stop = shutdown.clone();
    // Both end at shutdown.
    tokio::spawn(async move { table.follow_lists(tx, stop).await });
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        while let Some((from, hashes)) = rx.recv().await {
            let Some(hub) = hub.upgrade() else { return };
            if *from != *me {
                let flagged = hub.remote_lists(hashes);
                tracing::debug!(%from, listeners = flagged, "another instance's lists changed");
            }
        }
    });
}

/// Serves until `shutdown` is cancelled, then lets open connections finish
/// for a short grace period.
pub async fn serve(
    mut front: Front,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    front.shutdown = shutdown.child_token();
    let (mcp, sessions) = mcp_service(&front, &shutdown);
    // Read at start only: the listener's limits do not change on reload.
    let limits = {
        let s = front.gateway.server();
        ConnLimits::new(s.header_timeout, s.idle_timeout, s.max_connections)
    };
    let direct = super::direct::Direct::new(sessions, shutdown.child_token());
    let front = super::stack::build(front, mcp, direct);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = limits.admit() else {
            tracing::warn!(%peer, max_connections = limits.max_connections, "connection refused: at the connection limit");
            // Ends within a second.
            tokio::spawn(super::conn::refuse(stream, limits.max_connections));
            continue;
        };
        let front = front.clone();
        let activity = Activity::new();
        let tracked = activity.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(RemoteAddr(peer));
                let in_progress = tracked.begin();
                let call = front.clone().oneshot(req);
                async move {
                    let response = call.await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| TrackedBody::new(body, in_progress)),
                    )
                }
            });
        let io = TokioIo::new(Watched::new(stream, activity.clone()));
        let conn = builder.serve_connection_with_upgrades(io, service);
        let conn = graceful.watch(conn.into_owned());
        let (header_timeout, idle_timeout) = (limits.header_timeout, limits.idle_timeout);
        // Ends when the client closes the connection, graceful shutdown
        // completes it, or it sat without a request past a timeout; the
        // slot is given back then.
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                why = activity.expired(header_timeout, idle_timeout) => {
                    tracing::debug!(%peer, reason = ?why, "closing a connection with no request in progress");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the shutdown grace period");
    }
    Ok(())
}
