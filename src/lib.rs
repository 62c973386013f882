//! callpool, the service: configuration, the HTTP surface, the reaper, metrics.
//! `main.rs` only parses the command line and wires these together; tests start [`run`]
//! in-process on port 0.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod app;
pub mod bus;
pub mod callback;
pub mod calls;
pub mod clock;
pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod pbx;
pub mod protocol;
pub mod reaper;
pub mod reports;
pub mod sim;
pub mod ws;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;

/// Serves `app` on `listener` until `shutdown` is cancelled: stops accepting, tells every tab to
/// reconnect elsewhere, lets requests in flight finish, stops the reaper and the hub, then returns.
pub async fn run(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) -> std::io::Result<()> {
    let bus: Arc<dyn bus::Bus> = match &app.config.bus {
        config::BusConfig::InProcess => Arc::new(bus::InProcessBus::new()),
        config::BusConfig::RabbitMq { url } => Arc::new(bus::RabbitBus::start(
            url.clone(),
            app.config.server.node_id.clone(),
            app.metrics.bus.clone(),
            shutdown.clone(),
        )),
    };
    run_with_bus(listener, app, bus, shutdown).await
}

/// [`run`] with a given bus.
pub async fn run_with_bus(
    listener: TcpListener,
    app: Arc<App>,
    bus: Arc<dyn bus::Bus>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tasks = TaskTracker::new();
    let (ended_tx, ended_rx) = tokio::sync::mpsc::channel(1024);
    let hub = hub::Hub::new(app.clone(), bus.clone());
    tasks.spawn(reaper::run(app.clone(), ended_tx, shutdown.clone()));
    tasks.spawn(hub.clone().run(ended_rx, shutdown.clone()));
    tasks.spawn(outbox::run(app.clone(), shutdown.clone()));
    tasks.spawn(callback::worker::run(app.clone(), shutdown.clone()));
    // Callback statuses reach the visitors' tabs on every node through the bus.
    let mut updates = app.callback_updates.subscribe();
    let (to_bus, stop) = (bus.clone(), shutdown.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                update = updates.recv() => match update {
                    Ok(event) => to_bus.publish(event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    let ws_state = ws::WsState::new(hub, shutdown.clone());
    let limiter = ws_state.limiter.clone();
    let app_for_limits = app.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        // The rate limiter forgets addresses that have been quiet for a while.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    limiter.retain_recent();
                    app_for_limits.callback_limiters.retain_recent();
                }
            }
        }
    });
    let router = http::router(app)
        .merge(axum::Router::new().route("/v1/ws", axum::routing::get(ws::upgrade)).with_state(ws_state));
    let stop = shutdown.clone();
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    served
}
