//! The site owner's reports (`Authorization: Bearer <token>`, or `?token=` for links opened in a
//! browser): the site's `report_token` sees callers masked, its `admin_token` or the server's
//! admin token in full. And the operator's list of calls no site owns.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Admin, Owner};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use crate::app::App;
use crate::reports::page::{self, Advice};
use crate::reports::{self, CallList, CallbackList, Period, Summary, UnassignedCall};

#[derive(Deserialize, IntoParams)]
pub struct ReportQuery {
    /// First day (the site's local date, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today.
    to: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// The token, for a link opened in a browser: answered at once with a redirect (303) to the
    /// same URL without it and a cookie that carries it (`HttpOnly; Secure; SameSite=Strict`,
    /// scoped to the site's reports, 8 hours). Programs send the Authorization header.
    #[allow(dead_code)]
    token: Option<String>,
    /// On the page: `1` simulates the site's last 28 days of recorded traffic with other pool
    /// sizes (takes a few seconds) and shows the advice.
    #[param(minimum = 0, maximum = 1)]
    advice: Option<u8>,
}

impl ReportQuery {
    fn period(&self, app: &App, tz: chrono_tz::Tz) -> Result<Period, ApiError> {
        Ok(Period::new(tz, self.from.as_deref(), self.to.as_deref(), app.clock.now())?)
    }
}

fn csv(body: String, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

/// A site's calls of a period, oldest first (JSON, or CSV with `format=csv`).
#[utoipa::path(get, path = "/v1/reports/{site}/calls", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), ReportQuery),
    responses(
        (status = 200, description = "JSON; with format=csv a CSV file with the same columns",
            content((CallList = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad date or period", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn calls(
    State(app): State<Arc<App>>,
    owner: Owner,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let site = owner.site(&app);
    let list = reports::calls(&app, site, &q.period(&app, site.timezone)?, owner.access).await?;
    Ok(if q.format.as_deref() == Some("csv") {
        csv(reports::calls_csv(&list), &list.csv_name())
    } else {
        Json(list).into_response()
    })
}

/// Fetches recordings from the PBXs: connecting and each read are bounded, a long stream is not.
static RECORDINGS: std::sync::LazyLock<Option<reqwest::Client>> = std::sync::LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(30))
        .build()
        .ok()
});

/// A call's recording, fetched from its PBX with the PBX's credentials and streamed through (a
/// `Range` is passed on), so that neither a PBX secret nor the vendor's link reaches the browser.
#[utoipa::path(get, path = "/v1/reports/{site}/recordings/{call}", security(("report_token" = [])),
    params(
        ("site" = String, Path, description = "Site id"),
        ("call" = String, Path, description = "The call's key, `<pbx>:<call id>` (the calls report's `recording` link)"),
    ),
    responses(
        (status = 200, description = "The recording, as the PBX serves it (audio/mpeg, audio/wav, ...)", body = String, content_type = "audio/mpeg"),
        (status = 206, description = "The part a `Range` asked for", body = String, content_type = "audio/mpeg"),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "No such call of this site, no recording, or the PBX no longer has it (`recording_gone`)", body = ErrorBody),
        (status = 502, description = "The PBX refused callpool's credentials or did not answer", body = ErrorBody),
    ))]
pub async fn recording(
    State(app): State<Arc<App>>,
    owner: Owner,
    Path(path): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use axum::http::StatusCode;
    let call = path.1;
    let site = owner.site(&app);
    let none = || ApiError::not_found("this site has no call with a recording under that key");
    let key = call.split_once(':').and_then(|(pbx, id)| crate::calls::CallKey::new(pbx, id).ok()).ok_or_else(none)?;
    let found = app.store.call(&key).await?.filter(|c| c.matched.site.as_ref() == Some(&site.id));
    let (Some(found), Some(http)) = (found, RECORDINGS.as_ref()) else { return Err(none()) };
    let adapter = app.config.pbx(key.pbx()).and_then(crate::pbx::adapter);
    let request = found.recording_url.as_deref().zip(adapter).and_then(|(rec, a)| a.recording(http, rec));
    let Some(mut request) = request else { return Err(none()) };
    if let Some(range) = headers.get(header::RANGE) {
        request = request.header(header::RANGE, range.clone());
    }
    let bad_gateway = |m: &str| ApiError::new(StatusCode::BAD_GATEWAY, "recording_unavailable", m);
    let answer = request.send().await.map_err(|e| {
        tracing::warn!(pbx = key.pbx(), error = %e, "A recording could not be fetched from the PBX.");
        bad_gateway("the PBX did not answer for the recording; try again")
    })?;
    let status = answer.status();
    match status.as_u16() {
        200 | 206 => {}
        404 | 410 => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "recording_gone", "the PBX no longer has this recording"))
        }
        416 => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_range",
                "the range is outside the recording",
            ))
        }
        401 | 403 => return Err(bad_gateway("the PBX refused callpool's credentials for the recording")),
        other => {
            tracing::warn!(pbx = key.pbx(), status = other, "The PBX answered a recording request with an error.");
            return Err(bad_gateway("the PBX did not give the recording; try again"));
        }
    }
    let mut out = Response::builder().status(status.as_u16());
    for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::CONTENT_RANGE, header::ACCEPT_RANGES] {
        if let Some(v) = answer.headers().get(&name) {
            out = out.header(name, v.clone());
        }
    }
    let body = axum::body::Body::from_stream(answer.bytes_stream());
    out.body(body).map_err(|e| ApiError::internal(e.to_string()))
}

/// Per-day counts by match kind, the share tracked, a hint on the untracked calls, and the pool.
#[utoipa::path(get, path = "/v1/reports/{site}/summary", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), ReportQuery),
    responses(
        (status = 200, body = Summary),
        (status = 400, description = "A bad date or period", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn summary(
    State(app): State<Arc<App>>,
    owner: Owner,
    Query(q): Query<ReportQuery>,
) -> Result<Json<Summary>, ApiError> {
    let site = owner.site(&app);
    Ok(Json(reports::summary(&app, site, &q.period(&app, site.timezone)?).await?))
}

/// The site's callback requests in a period, oldest first, with where each stands.
#[utoipa::path(get, path = "/v1/reports/{site}/callbacks", security(("report_token" = [])),
    params(("site" = String, Path, description = "The site's id"), ReportQuery),
    responses(
        (status = 200, body = CallbackList),
        (status = 400, description = "A bad date or period", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn callbacks(
    State(app): State<Arc<App>>,
    owner: Owner,
    Query(q): Query<ReportQuery>,
) -> Result<Json<CallbackList>, ApiError> {
    let site = owner.site(&app);
    Ok(Json(reports::callbacks(&app, site, &q.period(&app, site.timezone)?, owner.access).await?))
}

/// The period's attributed calls in Yandex Metrica's offline-calls CSV (for a manual upload).
#[utoipa::path(get, path = "/v1/reports/{site}/yandex.csv", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), ReportQuery),
    responses(
        (status = 200, description = "CSV with Metrica's header line", body = String, content_type = "text/csv"),
        (status = 400, description = "A bad date, period or parameter", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn yandex_csv(
    State(app): State<Arc<App>>,
    owner: Owner,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let site = owner.site(&app);
    let p = q.period(&app, site.timezone)?;
    let body = reports::yandex_csv(&app, site, &p).await?;
    Ok(csv(body, &format!("metrica-calls-{}-{}-{}.csv", site.id, p.first, p.last)))
}

/// The report page: calls over time by match kind, the untracked split with its hint, pool use.
#[utoipa::path(get, path = "/v1/reports/{site}", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), ReportQuery),
    responses(
        (status = 200, description = "HTML page", body = String, content_type = "text/html"),
        (status = 400, description = "A bad date, period or parameter", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn page(
    State(app): State<Arc<App>>,
    owner: Owner,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let site = owner.site(&app);
    let period = q.period(&app, site.timezone)?;
    let summary = reports::summary(&app, site, &period).await?;
    let calls = reports::calls(&app, site, &period, owner.access).await?;
    let advice = if q.advice == Some(1) {
        // Seconds of CPU and up to millions of visits in memory: one simulation at a time per
        // node; a second request meanwhile is told to come back rather than queued.
        static SIMULATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        Advice::Text(match SIMULATING.try_acquire() {
            Ok(_running) => reports::advice(&app, site).await,
            Err(_) => "Another pool-size simulation is running on this server; reload this page in a minute.".into(),
        })
    } else {
        let mut link = form_urlencoded::Serializer::new(String::from("?"));
        link.append_pair("from", &summary.from).append_pair("to", &summary.to).append_pair("advice", "1");
        Advice::Link(link.finish())
    };
    let html = page::render(site.id.as_str(), &summary, &calls, site.rules.max_numbers, advice);
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

#[derive(Deserialize, IntoParams)]
pub struct UtcDays {
    /// First day (UTC, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today (UTC).
    to: Option<String>,
}

/// Calls to numbers that belong to no site (a shared number never leased, or one the PBX should
/// not send): for the operator to fix the routing or the configuration.
#[utoipa::path(get, path = "/v1/admin/calls/unassigned", security(("admin_token" = [])),
    params(UtcDays),
    responses(
        (status = 200, body = [UnassignedCall]),
        (status = 400, description = "A bad date", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    ))]
pub async fn unassigned(
    _: Admin,
    State(app): State<Arc<App>>,
    Query(q): Query<UtcDays>,
) -> Result<Json<Vec<UnassignedCall>>, ApiError> {
    let p = Period::new(chrono_tz::UTC, q.from.as_deref(), q.to.as_deref(), app.clock.now())?;
    Ok(Json(reports::unassigned(&app, &p).await?))
}
