//! The HTTP edge: the service's one route table ([`router`]), the one error every handler
//! returns ([`error`]), who may call what ([`auth`]), the OpenAPI document ([`openapi`]), and the
//! handlers, one file per kind of caller: operators ([`health`], [`admin`]), browsers
//! ([`assets`], [`callback`], and the websocket of `live::ws`), PBXs ([`pbx`]) and site owners
//! ([`reports`]). The common HTTP concerns are `tower-http` layers: request timeouts, body
//! limits, gzip for the scripts and reports, CORS for the callback API, and a span per request.
//! Handlers turn requests into calls of the domain (`calls`, `callback`, `jobs`, `reports`) and
//! its answers into responses; they hold no rules of their own.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod callback;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod pbx;
pub mod reports;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::live::ws::WsState;

/// What the handlers share: the app, the websocket endpoint's state, the PBXs' rate limiters.
#[derive(Clone)]
pub struct WebState {
    pub app: Arc<App>,
    pub ws: WsState,
    pub pbx: pbx::Limiters,
}

impl FromRef<WebState> for Arc<App> {
    fn from_ref(s: &WebState) -> Arc<App> {
        s.app.clone()
    }
}

impl FromRef<WebState> for WsState {
    fn from_ref(s: &WebState) -> WsState {
        s.ws.clone()
    }
}

impl FromRef<WebState> for pbx::Limiters {
    fn from_ref(s: &WebState) -> pbx::Limiters {
        s.pbx.clone()
    }
}

/// Longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the report page may take: with `advice=1` it simulates the site's traffic (about
/// fifteen seconds for a site of 100,000 visitors a day on this project's 2-core machine); and
/// setting a site's analytics up.
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest body of a request that is not a webhook or a callback request.
const MAX_BODY: usize = 64 * 1024;

/// Every route of the service.
pub fn router(state: WebState) -> Router {
    let browser_scripts = Router::new()
        .route("/snippet.js", get(assets::snippet))
        .route("/callback.js", get(assets::callback_widget))
        .route("/", get(assets::demo_page));
    let callback_api = Router::new()
        .route("/v1/callback", post(callback::create))
        .route("/v1/callback/{id}", get(callback::status))
        .layer(callback::cors(&state.app))
        .layer(RequestBodyLimitLayer::new(callback::MAX_BODY));
    let webhooks = Router::new()
        .route("/v1/pbx/calls", post(pbx::receive).get(pbx::check_url))
        .route("/v1/pbx/calls/{pbx}", post(pbx::receive_named).get(pbx::check_named_url))
        .route("/v1/pbx/calls/{pbx}/{*event}", post(pbx::receive_event))
        .layer(RequestBodyLimitLayer::new(pbx::MAX_BODY));
    let page = Router::new()
        .route("/v1/reports", get(reports::overview))
        .route("/v1/reports/{site}", get(reports::page))
        .layer(axum::middleware::from_fn(auth::private))
        .layer(CompressionLayer::new().gzip(true))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, PAGE_TIMEOUT));
    let owners = Router::new()
        .route("/v1/reports/{site}/calls", get(reports::calls))
        .route("/v1/reports/{site}/sources", get(reports::sources))
        .route("/v1/reports/{site}/summary", get(reports::summary))
        .route("/v1/reports/{site}/yandex.csv", get(reports::yandex_csv))
        .route("/v1/reports/{site}/callbacks", get(reports::callbacks))
        .route("/v1/reports/{site}/recordings/{call}", get(reports::recording))
        .layer(axum::middleware::from_fn(auth::private));
    let operators = monitoring().route("/openapi.json", get(openapi::document));
    let admin = Router::new()
        .route("/v1/admin/pool", get(admin::pool_all))
        .route("/v1/admin/pool/{site}", get(admin::pool_site))
        .route("/v1/admin/calls/unassigned", get(reports::unassigned))
        .route("/v1/admin/dead-letters", get(admin::dead_letters))
        .route("/v1/admin/dead-letters/requeue", post(admin::requeue))
        .route("/v1/admin/pbx", get(pbx::activity))
        .route("/v1/admin/status", get(admin::status))
        .route("/v1/admin/config", get(admin::config))
        .route("/v1/admin/reload", post(admin::reload))
        .layer(axum::middleware::from_fn(auth::private));
    // Setting a site's analytics up asks Google a score of questions one after another.
    let analytics = Router::new()
        .route("/v1/admin/analytics/{site}/setup", post(admin::analytics_setup))
        .route("/v1/admin/analytics/{site}/check", post(admin::analytics_check))
        .route("/v1/admin/webhooks/{site}/test", post(admin::webhook_test))
        .layer(axum::middleware::from_fn(auth::private))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, PAGE_TIMEOUT));
    let timed = Router::new()
        .merge(browser_scripts.merge(owners).layer(CompressionLayer::new().gzip(true)))
        .merge(callback_api)
        .merge(webhooks)
        .merge(operators.merge(admin).layer(RequestBodyLimitLayer::new(MAX_BODY)))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT));
    let app = state.app.clone();
    timed
        .merge(page)
        .merge(analytics)
        .route("/v1/ws", get(crate::live::ws::upgrade))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(app, observe))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The route, never the URL: a report link carries its token in the query.
            let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            tracing::debug_span!("request", method = %req.method(), route)
        }))
        .with_state(state)
}

/// What monitoring asks: liveness, readiness, metrics.
fn monitoring() -> Router<WebState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
}

/// The routes of `[server] ops_listen`: monitoring only, on connections of its own.
pub fn ops_router(state: WebState) -> Router {
    monitoring()
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}

/// Times every request into `callpool_http_request_duration_seconds{route, status}`.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let class = match resp.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    app.metrics.http_seconds.with_label_values(&[route.as_str(), class]).observe(started.elapsed().as_secs_f64());
    resp
}
