//! The accept loop: HTTP/1.1 (and websocket upgrades) over hyper, with what `axum::serve`
//! leaves out. A connection must send a whole request head within `[server] header_timeout`
//! of opening or of its last answer (half-sent requests and idle keep-alives are closed); at
//! most `max_connections` are served at once, websockets included (past that, new ones wait in
//! the kernel's backlog instead of taking file descriptors the node needs); and a stop is
//! bounded: the listener closes, open connections finish their request in hand, and whatever is
//! still open after `[server] shutdown_grace` is dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// File descriptors kept for the store, the broker, outgoing requests and logs when the
/// connection cap is derived from the open-file limit.
const RESERVE: u64 = 1024;

/// A connection's place under the cap: every request carries it (as an extension), so a
/// websocket keeps its place for as long as it lives after the HTTP connection handed it over.
#[derive(Clone)]
pub struct Slot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// The connection cap: `configured`, or what the open-file limit allows less [`RESERVE`]
/// (after raising the soft limit to the hard one, as servers do).
pub fn connection_cap(configured: Option<usize>) -> usize {
    if let Some(n) = configured {
        return n;
    }
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    let files = limit.current.unwrap_or(1 << 20);
    usize::try_from(files.saturating_sub(RESERVE).max(64)).unwrap_or(usize::MAX)
}

/// Serves `router` on `listener` until `shutdown`, within `cap` connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cap: usize,
    (header_timeout, grace): (Duration, Duration),
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let places = Arc::new(Semaphore::new(cap));
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        let place = tokio::select! {
            p = places.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before it was taken: the
                    // listener stays; wait a moment rather than spin.
                    tracing::warn!(error = %e, "A connection could not be accepted.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let slot = Slot(Arc::new(place));
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            let mut router = router.clone();
            async move {
                let answer = tower_service::Service::call(&mut router, req.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(answer.unwrap_or_else(|never| match never {}))
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(open = connections.len(), "Connections still open after the grace period; closing them.");
    }
    Ok(())
}
