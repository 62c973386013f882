//! What an operator's monitoring asks: liveness, readiness, and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::App;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process is alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// `embedded` or `redis`.
    store: &'static str,
    /// `in_process` (one node), or for RabbitMQ `connected` / `unavailable`.
    broker: &'static str,
}

/// Readiness: the store answers and, in a cluster, the node is connected to RabbitMQ.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready to serve", body = Ready),
    (status = 503, description = "The store does not answer, or RabbitMQ is not connected", body = Ready),
))]
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Ready>) {
    let store = app.pool.kind();
    let broker = match app.config().bus {
        crate::config::BusConfig::InProcess => "in_process",
        crate::config::BusConfig::RabbitMq { .. } if app.metrics.bus.connected.get() == 1 => "connected",
        crate::config::BusConfig::RabbitMq { .. } => "unavailable",
    };
    let store_ok = match app.pool.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "Not ready: the store does not answer.");
            false
        }
    };
    if store_ok && broker != "unavailable" {
        (StatusCode::OK, Json(Ready { status: "ready", store, broker }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Ready { status: "unavailable", store, broker }))
    }
}

/// How long the gauges read from the store are reused: scrapes in between (several Prometheus
/// servers, or a client hammering) are answered from memory, and one refresh runs at a time.
const FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus metrics in the text format. Pool and outbox gauges are read from the store at
/// most every two seconds. With `[server] metrics_token`, the request needs it as a bearer token.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
    (status = 401, description = "`[server] metrics_token` is set and the request does not carry it", body = super::error::ErrorBody),
))]
pub async fn metrics(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &app.config().server.metrics_token {
        if !super::auth::same(super::auth::bearer(&headers).unwrap_or(""), Some(token)) {
            return super::error::ApiError::unauthorized().into_response();
        }
    }
    {
        let mut refreshed = app.metrics.store_gauges_at.lock().await;
        if refreshed.is_none_or(|at| at.elapsed() >= FRESH) {
            refresh_gauges(&app).await;
            *refreshed = Some(std::time::Instant::now());
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.encode()).into_response()
}

async fn refresh_gauges(app: &App) {
    refresh(app).await;
    // A reload meanwhile may have removed a site or PBX whose series the refresh set again.
    app.metrics.prune(&app.config());
}

async fn refresh(app: &App) {
    let now = app.clock.now();
    app.metrics.set_hours(&app.config(), now);
    let store_ok = app.pool.ping().await.is_ok();
    app.metrics.store_up.set(i64::from(store_ok));
    app.metrics.ready.set(i64::from(store_ok && app.metrics.bus.connected.get() == 1));
    if !store_ok {
        // Each read would wait for its timeout: the store's gauges keep their last values.
        return;
    }
    for site in &app.config().sites {
        match app.pool.status(&site.id, now).await {
            Ok(Some(st)) => {
                let g = &app.metrics.pool_numbers;
                for (state, v) in [
                    ("working", st.working),
                    ("leased", st.leased),
                    ("free", st.free),
                    ("cooling", st.cooling),
                    ("max", st.max_numbers),
                ] {
                    g.with_label_values(&[site.id.as_str(), state]).set(i64::from(v));
                }
                let exhausted = i64::try_from(st.exhausted_total).unwrap_or(i64::MAX);
                app.metrics.pool_exhausted.with_label_values(&[site.id.as_str()]).set(exhausted);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, site = %site.id, "Pool gauges not refreshed."),
        }
    }
    for (kind, _) in crate::jobs::registry::kinds() {
        match app.store.job_depth(kind).await {
            Ok((queued, dead)) => {
                let g = &app.metrics.outbox_jobs;
                g.with_label_values(&[kind, "queued"]).set(i64::try_from(queued).unwrap_or(i64::MAX));
                g.with_label_values(&[kind, "dead"]).set(i64::try_from(dead).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "Outbox gauges not refreshed."),
        }
    }
}
