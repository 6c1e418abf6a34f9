//! The listener: accepts clients under a connection limit, spawns a session task per client,
//! and on shutdown stops accepting, lets sessions reach an idle point within the grace period,
//! then closes whatever is left.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::{session, ProxyState};

/// Connections over `max_connections` that are still being refused (they get FATAL 53300 once
/// their startup packet arrives, within the startup timeout). Beyond this many, further
/// connections are closed at once without a word: otherwise a flood of silent connections
/// would hold one task and one descriptor each for the whole startup timeout, without bound,
/// until accept() failed for everyone (EMFILE).
pub const MAX_REFUSING: usize = 64;

/// Serve until `shutdown` completes, then drain.
pub async fn run(
    state: Arc<ProxyState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let limits = state.config.limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSING));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = Arc::clone(&permits).try_acquire_owned().ok();
                let admitted = permit.is_some();
                let refusing = if admitted {
                    None
                } else {
                    match Arc::clone(&refusals).try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            debug!(%peer, "over the connection limit and refusal backlog; closed");
                            drop(tcp);
                            continue;
                        }
                    }
                };
                let state = Arc::clone(&state);
                let stop = stop_rx.clone();
                sessions.spawn(async move {
                    session::run(state, tcp, peer, stop, admitted).await;
                    drop((permit, refusing));
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    info!(
        sessions = sessions.len(),
        "shutting down: no longer accepting; draining sessions"
    );
    let _ = stop_tx.send(true);
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace(), drain)
        .await
        .is_err()
    {
        warn!(
            remaining = sessions.len(),
            "grace period over; closing remaining sessions"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
    info!("shutdown complete");
}
