//! callpool, the service: configuration, the HTTP surface, the reaper, metrics.
//! `main.rs` only parses the command line and wires these together; tests start [`run`]
//! in-process on port 0.
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod http;
pub mod metrics;
pub mod reaper;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;

/// Serves `app` on `listener` until `shutdown` is cancelled: stops accepting, lets requests in
/// flight finish, stops the reaper, then returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    tasks.spawn(reaper::run(app.clone(), shutdown.clone()));
    let stop = shutdown.clone();
    let served =
        axum::serve(listener, http::router(app)).with_graceful_shutdown(async move { stop.cancelled().await }).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    served
}
