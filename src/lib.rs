//! callpool, the service. Its modules in layers, lowest first (ARCHITECTURE.md has the map and
//! `tests/it/architecture.rs` holds every file to it): the vocabulary and pure cores (`calls`,
//! `callback` and their pure parts, `config`, `analytics`, `sim`, `live::protocol`, `clock`,
//! `metrics`); the stores and the bus (`store`, `live::bus`); what the service shares (`app`); the
//! domain's services (`calls::ingest`, `callback::service`, `pbx`, `jobs`, `reports`, `reaper`,
//! `plugins`, `reload`); the edges (`web`, `live`). `main.rs` only parses the command line; tests start
//! [`run`] in-process on port 0.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod app;
pub mod callback;
pub mod calls;
pub mod clock;
pub mod config;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod pbx;
pub mod plugins;
pub mod reaper;
pub mod reload;
pub mod reports;
pub mod sim;
pub mod store;
pub mod web;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;

/// Serves `app` on `listener` until `shutdown` is cancelled: stops accepting, tells every tab to
/// reconnect elsewhere, lets requests in flight finish, stops the reaper, the workers, the hub
/// and the bus, then returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    let (ended_tx, ended_rx) = tokio::sync::mpsc::channel(1024);
    let hub = live::hub::Hub::new(app.clone());
    tasks.spawn(reaper::run(app.clone(), ended_tx, shutdown.clone()));
    tasks.spawn(hub.clone().run(ended_rx, shutdown.clone()));
    tasks.spawn(jobs::runner::run(app.clone(), shutdown.clone()));
    tasks.spawn(reload::run(app.clone(), shutdown.clone()));
    // Reports from PBX connections are recorded as the webhook's are.
    let sink: pbx::adapter::Sink = {
        let app = app.clone();
        Arc::new(move |report| {
            let app = app.clone();
            Box::pin(async move {
                web::pbx::record(&app, &report).await.map_err(|e| e.to_string())?;
                app.metrics.pbx_request(report.key.pbx(), app.clock.now(), "recorded", None);
                Ok(())
            })
        })
    };
    tasks.spawn(pbx::keep_connected(app.clone(), sink, shutdown.clone()));
    let hub_for_limits = hub.clone();
    let ws = live::ws::WsState::new(hub, shutdown.clone());
    let pbx_limiters = web::pbx::Limiters::new(&app);
    let (limiter, pbx_for_limits) = (ws.limiter.clone(), pbx_limiters.clone());
    let app_for_limits = app.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        // The rate limiters forget addresses that have been quiet for a while.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    limiter.retain_recent();
                    pbx_for_limits.retain_recent();
                    app_for_limits.config().callback_limiters.retain_recent();
                    hub_for_limits.retain_recent();
                }
            }
        }
    });
    let state = web::WebState { app: app.clone(), ws, pbx: pbx_limiters };
    let server = &app.config().server;
    let timeouts = (server.header_timeout, server.shutdown_grace);
    if let Some(ops) = server.ops_listen {
        let ops = TcpListener::bind(ops).await?;
        tracing::info!(address = %ops.local_addr()?, "Monitoring is served on its own address too.");
        let (router, stop) = (web::ops_router(state.clone()), shutdown.clone());
        tasks.spawn(web::serve::serve(ops, router, OPS_CONNECTIONS, timeouts, stop));
    }
    let cap = web::serve::connection_cap(server.max_connections);
    tracing::debug!(max_connections = cap, "Connection cap.");
    let served = web::serve::serve(listener, web::router(state), cap, timeouts, shutdown.clone()).await;
    shutdown.cancel();
    tasks.close();
    // The background tasks finish what they hold (a batch of deliveries being recorded) within
    // the same bound as the connections.
    if tokio::time::timeout(server.shutdown_grace, tasks.wait()).await.is_err() {
        tracing::warn!("Background work still running after the grace period; stopping anyway.");
    }
    app.stop.cancel();
    served
}

/// Connections the monitoring address serves at once.
const OPS_CONNECTIONS: usize = 64;
