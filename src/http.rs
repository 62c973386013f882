//! The HTTP surface: health, readiness, metrics, the OpenAPI document and the admin API.
//! Errors become HTTP statuses here and nowhere else.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use callpool_pool::{PoolError, SiteId, SiteStatus};
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::{OpenApi, ToSchema};

use crate::app::App;

pub fn router(app: Arc<App>) -> Router {
    let pbx = Router::new()
        .route("/v1/pbx/calls", axum::routing::post(crate::pbx_webhook::receive))
        .layer(axum::extract::DefaultBodyLimit::max(crate::pbx_webhook::MAX_BODY))
        .with_state(crate::pbx_webhook::PbxState::new(app.clone()));
    let callback = Router::new()
        .route(
            "/v1/callback",
            axum::routing::post(crate::callback::api::create).options(crate::callback::api::preflight),
        )
        .route("/v1/callback/{id}", get(crate::callback::api::status).options(crate::callback::api::preflight))
        .layer(axum::extract::DefaultBodyLimit::max(crate::callback::api::MAX_BODY))
        .with_state(app.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/snippet.js", get(snippet))
        .route("/callback.js", get(callback_widget))
        .route("/", get(demo_page))
        .route("/v1/admin/pool", get(pool_status_all))
        .route("/v1/admin/pool/{site}", get(pool_status_site))
        .merge(crate::reports::router())
        .with_state(app.clone())
        .merge(callback)
        .merge(pbx)
        .layer(axum::middleware::from_fn_with_state(app, observe))
}

/// Times every request into `callpool_http_request_duration_seconds{route, status}`.
async fn observe(State(app): State<Arc<App>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
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

/// The OpenAPI 3 document of the HTTP API, generated from the handlers below.
#[derive(OpenApi)]
#[openapi(
    info(title = "callpool", description = "Dynamic call tracking: HTTP API"),
    paths(
        healthz,
        readyz,
        metrics,
        pool_status_all,
        pool_status_site,
        crate::pbx_webhook::receive,
        crate::reports::calls,
        crate::reports::summary,
        crate::reports::yandex_csv,
        crate::reports::page,
        crate::reports::unassigned,
        crate::reports::callbacks,
        crate::callback::api::create,
        crate::callback::api::status,
    ),
    components(schemas(
        ApiError,
        ErrorBody,
        Ready,
        PoolStatus,
        SitePoolStatus,
        crate::pbx::callpool::CallWebhook,
        crate::pbx::CallAccepted,
        crate::calls::CallStatus,
        crate::calls::MatchKind,
        crate::reports::CallRow,
        crate::reports::CallList,
        crate::reports::Summary,
        crate::reports::DayCounts,
        crate::reports::UnassignedCall,
        crate::callback::api::CallbackRequest,
        crate::callback::api::CallbackView,
        crate::callback::api::CallbackRefusal,
        crate::callback::api::RefusalBody,
        crate::callback::CallbackStatus,
        crate::reports::CallbackRow,
        crate::reports::CallbackList,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "report_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The site's report_token (callers masked) or admin_token, or the server's admin token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "pbx_signature",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Callpool-Signature",
                    "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" with the PBX's secret>",
                ),
            )),
        );
    }
}

/// An error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `bad_signature`, `bad_request`, `not_found`,
    /// `rate_limited`, `unavailable`, `internal`.
    code: &'static str,
    /// For people; may change.
    message: String,
}

/// What went wrong in a handler, mapped to a status in one place.
pub enum Failure {
    Unauthorized,
    /// A webhook's signature is missing, wrong or stale (the message says which).
    BadSignature(String),
    /// The request is malformed; the message names the field.
    BadRequest(String),
    RateLimited,
    NotFound(String),
    Unavailable(String),
    Internal(String),
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Failure {
        match e {
            crate::store::StoreError::Pool(p) => p.into(),
            e if e.is_unavailable() => Failure::Unavailable(e.to_string()),
            e => Failure::Internal(e.to_string()),
        }
    }
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Failure {
        match e {
            PoolError::UnknownSite(s) => Failure::NotFound(format!("unknown site {s}")),
            PoolError::Unavailable(_) => Failure::Unavailable(e.to_string()),
            PoolError::Invalid(m) => Failure::NotFound(m),
            PoolError::Storage(_) => Failure::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Failure::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as 'Authorization: Bearer <token>'".to_owned(),
            ),
            Failure::BadSignature(m) => (StatusCode::UNAUTHORIZED, "bad_signature", m),
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            Failure::RateLimited => {
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(ApiError {
                        error: ErrorBody {
                            code: "rate_limited",
                            message: "too many requests; retry in a second".into(),
                        },
                    }),
                )
                    .into_response();
                resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return resp;
            }
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Failure::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            Failure::Internal(m) => {
                tracing::error!(error = %m, "A request failed inside callpool.");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
            }
        };
        let mut resp = (status, Json(ApiError { error: ErrorBody { code, message } })).into_response();
        if code == "unauthorized" {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The client's address: the peer, or behind a trusted proxy the rightmost address of its header.
pub fn client_ip(
    server: &crate::config::ServerConfig,
    peer: std::net::SocketAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    server
        .trusted_proxy_header
        .as_deref()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer.ip())
}

/// Checks `Authorization: Bearer <admin token>` in constant time.
pub(crate) fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Failure> {
    let Some(expected) = app.config.server.admin_token.as_deref() else { return Err(Failure::Unauthorized) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(Failure::Unauthorized)
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process is alive", body = String)))]
async fn healthz() -> &'static str {
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
async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Ready>) {
    let store = app.pool.kind();
    let broker = match app.config.bus {
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

/// Prometheus metrics in the text format. Pool gauges are read from the store at scrape time.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let now = app.clock.now();
    for site in &app.config.sites {
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.encode()).into_response()
}

/// The browser script, served with caching headers (it changes only with callpool's version).
async fn snippet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../snippet/snippet.js"),
    )
        .into_response()
}

/// The callback widget the snippet loads for a site with a callback form.
async fn callback_widget() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../snippet/callback.js"),
    )
        .into_response()
}

/// The demo page of `[server] demo_site` (404 without one).
async fn demo_page(State(app): State<Arc<App>>) -> Response {
    let Some(site) = app.config.server.demo_site.as_ref().and_then(|id| app.config.site(id)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let page = include_str!("../snippet/demo.html")
        .replace("{{SITE_KEY}}", &site.key)
        .replace("{{DELAY}}", &humantime::format_duration(site.delay_to_show).to_string())
        .replace("{{IDLE}}", &humantime::format_duration(site.rules.reclaim_after_idle).to_string());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A site's working set now.
#[derive(Serialize, ToSchema)]
pub struct SitePoolStatus {
    site: String,
    /// The most numbers the site may hold (dedicated ones included).
    max_numbers: u32,
    /// Numbers in the site's working set now.
    working: u32,
    /// Of those, dedicated to the site.
    dedicated: u32,
    /// Held by a visitor now.
    leased: u32,
    /// In the working set, not held.
    free: u32,
    /// Given back by this site and still in cooldown (no other site may take them yet).
    cooling: u32,
    /// Lease requests that found nothing free, since the pool was created.
    exhausted_total: u64,
}

impl SitePoolStatus {
    fn new(site: &SiteId, st: SiteStatus) -> SitePoolStatus {
        SitePoolStatus {
            site: site.to_string(),
            max_numbers: st.max_numbers,
            working: st.working,
            dedicated: st.dedicated,
            leased: st.leased,
            free: st.free,
            cooling: st.cooling,
            exhausted_total: st.exhausted_total,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PoolStatus {
    sites: Vec<SitePoolStatus>,
}

/// The pool of every configured site.
#[utoipa::path(get, path = "/v1/admin/pool", security(("admin_token" = [])), responses(
    (status = 200, body = PoolStatus),
    (status = 401, description = "Missing or wrong admin token", body = ApiError),
    (status = 503, description = "The store does not answer", body = ApiError),
))]
async fn pool_status_all(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<PoolStatus>, Failure> {
    authorize(&app, &headers)?;
    let now = app.clock.now();
    let mut sites = Vec::with_capacity(app.config.sites.len());
    for site in &app.config.sites {
        if let Some(st) = app.pool.status(&site.id, now).await? {
            sites.push(SitePoolStatus::new(&site.id, st));
        }
    }
    Ok(Json(PoolStatus { sites }))
}

/// One site's pool.
#[utoipa::path(get, path = "/v1/admin/pool/{site}", security(("admin_token" = [])),
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = 200, body = SitePoolStatus),
        (status = 401, description = "Missing or wrong admin token", body = ApiError),
        (status = 404, description = "Unknown site", body = ApiError),
        (status = 503, description = "The store does not answer", body = ApiError),
    ))]
async fn pool_status_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(site): Path<String>,
) -> Result<Json<SitePoolStatus>, Failure> {
    authorize(&app, &headers)?;
    let id = SiteId::new(site.clone()).map_err(|_| Failure::NotFound(format!("unknown site {site:?}")))?;
    if app.config.site(&id).is_none() {
        return Err(Failure::NotFound(format!("unknown site {site:?}")));
    }
    match app.pool.status(&id, app.clock.now()).await? {
        Some(st) => Ok(Json(SitePoolStatus::new(&id, st))),
        None => Err(Failure::NotFound(format!("unknown site {site:?}"))),
    }
}
