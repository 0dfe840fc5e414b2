//! The gateway's plain HTTP/1 listeners (admin, broker): an axum router served connection by
//! connection with the `[limits]` a hostile client cannot outlast. A connection that has not
//! sent a whole request head within `http_header_read_timeout` (after it opened, or after its
//! previous answer) is closed; beyond `http_max_connections` open at once, a new connection is
//! closed as soon as it is accepted. So half-sent requests cannot pile up and exhaust the
//! process's file descriptors.

use crate::config::limits::HttpLimits;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long accepting pauses after an error (e.g. out of file descriptors), so that a failing
/// `accept` does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds `addr` and serves `router` on it for the life of the process; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    router: axum::Router,
    limits: HttpLimits,
) -> Result<SocketAddr, Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(accept_loop(listener, router, limits));
    Ok(bound)
}

/// The next connection that has a place among `slots`. A connection over the limit is closed
/// as soon as it is accepted (and `refused` called); after an accept error (e.g. out of file
/// descriptors) accepting pauses. Cancel-safe: nothing is lost when the future is dropped.
pub async fn accept_within(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    what: &str,
    refused: impl Fn(),
) -> (tokio::net::TcpStream, OwnedSemaphorePermit) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "{what} listener cannot accept");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => return (stream, slot),
            Err(_) => {
                tracing::debug!("{what} connection refused: too many open");
                refused();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, router: axum::Router, limits: HttpLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let (stream, slot) = accept_within(&listener, &slots, "HTTP", || {}).await;
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection closed");
            }
            drop(slot);
        });
    }
}
