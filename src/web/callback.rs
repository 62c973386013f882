//! `POST /v1/callback` for sites that post from their own forms (site key, origin check, CORS)
//! and `GET /v1/callback/{id}` to follow a request. The widget asks over the websocket instead.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use callpool_pool::{SessionAttrs, VisitorId};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::{IntoParams, ToSchema};

use super::auth::{ClientIp, Origin};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use crate::app::App;
use crate::callback::service::{self, Request};
use crate::callback::{status, Callback, CallbackId, CallbackStatus, Channel};
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
    /// For `GET /v1/callback/{id}`; `null` when the number already had an open request of
    /// another visitor's (it is called once; that request is not shown to anyone else).
    #[schema(example = "cb-3f0c9a1b2c3d4e5f60718293")]
    id: Option<String>,
    status: CallbackStatus,
    /// The scheduled time or the next attempt (Unix ms), if any.
    at: Option<i64>,
    /// Ready to show, in the site's language.
    message: String,
}

/// The site with a callback form whose public key is `key`, for a page on one of its origins.
fn site_for(app: &App, key: &str, origin: &Origin) -> Result<SiteConfig, ApiError> {
    let config = app.config();
    let Some(site) = config.sites.iter().find(|s| s.key == key && s.callback.is_some()) else {
        return Err(ApiError::unknown_site("no site with a callback form has this key"));
    };
    origin.check(site)?;
    Ok(site.clone())
}

/// CORS for the routes: the allowed origins of every site with a callback form in the running
/// configuration (each request's own site is checked by the handler), `GET` and `POST` with a
/// JSON body, cached ten minutes.
pub fn cors(app: &Arc<App>) -> CorsLayer {
    let app = app.clone();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            let origin = origin.to_str().ok();
            app.config().sites.iter().any(|s| s.callback.is_some() && s.allowed_origin(origin).is_some())
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([axum::http::header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

fn view(app: &App, cb: &Callback) -> CallbackView {
    let message = status::status_text(app, cb).unwrap_or_default();
    CallbackView {
        id: Some(cb.id.to_string()),
        status: cb.status,
        at: cb.at().map(callpool_pool::Ts::as_millis),
        message,
    }
}

/// Asks for a callback.
#[utoipa::path(
    post,
    path = "/v1/callback",
    request_body(content = CallbackRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Stored: the PBX is asked now (`accepted`) or at the next opening (`scheduled`)", body = CallbackView),
        (status = 400, description = "The number (or the request) was refused; the message is safe to show", body = ErrorBody),
        (status = 403, description = "The Origin is not one of the site's allowed origins", body = ErrorBody),
        (status = 404, description = "No site with a callback form has this key", body = ErrorBody),
        (status = 429, description = "A limit is used up (`code` says which); see Retry-After", body = ErrorBody),
        (status = 503, description = "The store is unavailable; nothing was stored", body = ErrorBody),
    ),
)]
pub async fn create(
    State(app): State<Arc<App>>,
    ClientIp(ip): ClientIp,
    origin: Origin,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CallbackRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a callback request: {e}")))?;
    let site = site_for(&app, &req.site, &origin)?;
    let visitor =
        req.visitor.map(VisitorId::new).transpose().map_err(|e| ApiError::bad_request(format!("visitor: {e}")))?;
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
    let request = Request { number: req.number, visitor, attrs, ip: Some(ip), channel: Channel::Api };
    match service::request(&app, &site, request).await {
        Ok(service::Answer::Mine(cb)) => Ok((StatusCode::ACCEPTED, Json(view(&app, &cb))).into_response()),
        Ok(service::Answer::Joined(receipt)) => {
            Ok((StatusCode::ACCEPTED, Json(CallbackView { id: None, ..view(&app, &receipt) })).into_response())
        }
        Err(r) => Err(r.into()),
    }
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
        (status = 400, description = "A missing or malformed parameter", body = ErrorBody),
        (status = 403, description = "The Origin is not one of the site's allowed origins", body = ErrorBody),
        (status = 404, description = "No such request for this site", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub async fn status(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<SiteKey>,
    origin: Origin,
) -> Result<Json<CallbackView>, ApiError> {
    let site = site_for(&app, &q.site, &origin)?;
    let not_found = || ApiError::not_found("no such callback request");
    let id = CallbackId::parse(&id).ok_or_else(not_found)?;
    match app.store.callback(&id).await {
        Ok(Some(cb)) if cb.site == site.id => Ok(Json(view(&app, &cb))),
        Ok(_) => Err(not_found()),
        Err(e) => {
            tracing::warn!(error = %e, "A callback could not be read.");
            Err(ApiError::unavailable("try again shortly"))
        }
    }
}
