//! `POST /v1/callback` for sites that post from their own forms (site key, origin check, CORS)
//! and `GET /v1/callback/{id}` to follow a request. The widget asks over the websocket instead.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callpool_pool::{SessionAttrs, VisitorId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::service::{self, Refusal, Request};
use super::{Callback, CallbackId, CallbackStatus, Origin};
use crate::app::App;
use crate::config::SiteConfig;

/// The largest request body read.
pub const MAX_BODY: usize = 4096;

/// A callback request from the site's own form.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// The site's public key (the snippet's `data-site`).
    #[schema(example = "demo-key-123")]
    site: String,
    /// The number as the visitor typed it; read with the site's region.
    #[schema(example = "8 (916) 123-45-67")]
    number: String,
    /// The snippet's visitor id (`window.callpool.visitor`), to link the request to the visit.
    visitor: Option<String>,
    /// The `_ga` client id and GA4 session id, so the GA4 events join the visitor's session.
    ga_client_id: Option<String>,
    ga_session_id: Option<String>,
    /// Metrica's `_ym_uid`.
    ym_uid: Option<String>,
    /// The page the form is on (utm_* and click ids are read from its query).
    page: Option<String>,
    referrer: Option<String>,
}

/// A callback request as the visitor may see it.
#[derive(Serialize, ToSchema)]
pub struct CallbackView {
    #[schema(example = "cb-3f0c9a1b2c3d4e5f60718293")]
    id: String,
    status: CallbackStatus,
    /// The scheduled time or the next attempt (Unix ms), if any.
    at: Option<i64>,
    /// Ready to show, in the site's language.
    message: String,
}

/// A refusal: `{"error": {"code", "message", "retry_after"}}`.
#[derive(Serialize, ToSchema)]
pub struct CallbackRefusal {
    error: RefusalBody,
}

#[derive(Serialize, ToSchema)]
pub struct RefusalBody {
    /// `invalid`, `not_callable`, `blocked`, `too_soon`, `closed` (400); `ip`, `visitor`,
    /// `number`, `banned`, `site` (429, a limit); `bad_request`, `origin_not_allowed`,
    /// `unknown_site`, `not_found`, `unavailable`.
    code: String,
    /// Safe to show to the visitor, in the site's language.
    message: String,
    /// Seconds until the limit lets the number ask again (429 only).
    retry_after: Option<u64>,
}

fn refusal(status: StatusCode, code: &str, message: String, retry_after: Option<u64>) -> Response {
    let mut resp =
        (status, Json(CallbackRefusal { error: RefusalBody { code: code.to_owned(), message, retry_after } }))
            .into_response();
    if let Some(s) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, s);
    }
    resp
}

/// The site of `key`, if the request's `Origin` is one of its allowed origins.
fn site_for<'a>(app: &'a App, key: &str, headers: &HeaderMap) -> Result<(&'a SiteConfig, HeaderValue), Box<Response>> {
    let Some(site) = app.config.sites.iter().find(|s| s.key == key && s.callback.is_some()) else {
        return Err(Box::new(refusal(
            StatusCode::NOT_FOUND,
            "unknown_site",
            "no site with a callback form has this key".into(),
            None,
        )));
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
    match site.allowed_origins.iter().find(|a| a.eq_ignore_ascii_case(origin)) {
        Some(a) => Ok((site, HeaderValue::from_str(a).unwrap_or(HeaderValue::from_static("null")))),
        None => Err(Box::new(refusal(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "send the request from a page on one of the site's allowed origins (the Origin header)".into(),
            None,
        ))),
    }
}

/// The CORS headers for an allowed origin.
fn cors(mut resp: Response, origin: HeaderValue) -> Response {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

fn view(app: &App, cb: &Callback) -> CallbackView {
    let message = super::status::status_text(app, cb).unwrap_or_default();
    CallbackView { id: cb.id.to_string(), status: cb.status, at: cb.at().map(callpool_pool::Ts::as_millis), message }
}

/// Asks for a callback.
#[utoipa::path(
    post,
    path = "/v1/callback",
    request_body(content = CallbackRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored: the PBX is asked now (`accepted`) or at the next opening (`scheduled`)", body = CallbackView),
        (status = 400, description = "The number (or the request) was refused; the message is safe to show", body = CallbackRefusal),
        (status = 403, description = "The Origin is not one of the site's allowed origins", body = CallbackRefusal),
        (status = 404, description = "No site with a callback form has this key", body = CallbackRefusal),
        (status = 429, description = "A limit is used up (`code` says which); see Retry-After", body = CallbackRefusal),
        (status = 503, description = "The store is unavailable; nothing was stored", body = CallbackRefusal),
    ),
)]
pub async fn create(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: CallbackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not a callback request: {e}"),
                None,
            )
        }
    };
    let (site, origin) = match site_for(&app, &req.site, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let visitor = match req.visitor.map(VisitorId::new).transpose() {
        Ok(v) => v,
        Err(e) => return cors(refusal(StatusCode::BAD_REQUEST, "bad_request", format!("visitor: {e}"), None), origin),
    };
    let hello = crate::live::protocol::Hello {
        v: crate::live::protocol::VERSION,
        visitor: String::new(),
        tab: String::new(),
        ga_client_id: req.ga_client_id,
        ga_session_id: req.ga_session_id,
        ym_uid: req.ym_uid,
        page: req.page.unwrap_or_default(),
        referrer: req.referrer,
    };
    let mut attrs: SessionAttrs = hello.attrs();
    attrs.landing_page = attrs.landing_page.filter(|p| !p.is_empty());
    let ip = crate::http::client_ip(&app.config.server, peer, &headers);
    let request = Request { number: req.number, visitor, attrs, ip: Some(ip), origin: Origin::Api };
    let resp = match service::request(&app, site, request).await {
        Ok(cb) => (StatusCode::ACCEPTED, Json(view(&app, &cb))).into_response(),
        Err(r) => refused(r),
    };
    cors(resp, origin)
}

fn refused(r: Refusal) -> Response {
    let status = match r.reason {
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ if r.is_limit() => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    let retry = r.retry_after.map(|d| d.as_secs().max(1));
    refusal(status, r.reason, r.message, retry)
}

#[derive(Deserialize, IntoParams)]
pub struct SiteKey {
    /// The site's public key.
    site: String,
}

/// How a callback request stands.
#[utoipa::path(
    get,
    path = "/v1/callback/{id}",
    params(("id" = String, Path, description = "The id `POST /v1/callback` answered"), SiteKey),
    responses(
        (status = 200, description = "The request's status", body = CallbackView),
        (status = 403, description = "The Origin is not one of the site's allowed origins", body = CallbackRefusal),
        (status = 404, description = "No such request for this site", body = CallbackRefusal),
        (status = 503, description = "The store is unavailable", body = CallbackRefusal),
    ),
)]
pub async fn status(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<SiteKey>,
    headers: HeaderMap,
) -> Response {
    let (site, origin) = match site_for(&app, &q.site, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let not_found = || refusal(StatusCode::NOT_FOUND, "not_found", "no such callback request".into(), None);
    let Some(id) = CallbackId::parse(&id) else { return cors(not_found(), origin) };
    let resp = match app.store.callback(&id).await {
        Ok(Some(cb)) if cb.site == site.id => Json(view(&app, &cb)).into_response(),
        Ok(_) => not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "A callback could not be read.");
            refusal(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again shortly".into(), None)
        }
    };
    cors(resp, origin)
}

/// CORS preflight for both routes: the allowed origins of any site with a callback form.
pub async fn preflight(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
    let allowed = app
        .config
        .sites
        .iter()
        .filter(|s| s.callback.is_some())
        .flat_map(|s| s.allowed_origins.iter())
        .find(|a| a.eq_ignore_ascii_case(origin));
    let Some(a) = allowed.and_then(|a| HeaderValue::from_str(a).ok()) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let mut resp = cors(StatusCode::NO_CONTENT.into_response(), a);
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}
