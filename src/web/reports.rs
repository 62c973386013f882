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

use super::auth::{Admin, Operator, Owner};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use crate::app::App;
use crate::reports::callbacks::CallbackList;
use crate::reports::page::{self, Advice};
use crate::reports::{self, CallList, Period, Summary, UnassignedCall};

#[derive(Deserialize, IntoParams)]
pub struct ReportQuery {
    /// First day (the site's local date, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today.
    to: Option<String>,
    /// `json` (default) or `csv`; for the calls, `xlsx` and `html` (the page) too.
    format: Option<String>,
    /// The token, for a link opened in a browser: answered at once with a redirect (303) to the
    /// same URL without it and a cookie that carries it (`HttpOnly; Secure; SameSite=Strict`,
    /// scoped to the site's reports, 8 hours). Programs send the Authorization header.
    #[allow(dead_code)]
    token: Option<String>,
    /// The page's language (`ru` or `en`); default: the browser's, else the site's `language`.
    lang: Option<String>,
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

/// A page's language.
#[derive(Deserialize, IntoParams)]
pub struct PageLang {
    /// With `format=html`: `ru` or `en`; default: the browser's (`Accept-Language`), else the
    /// site's `language`.
    lang: Option<String>,
}

/// Which calls to list (all by default; an empty value, as a form sends, is no filter).
#[derive(Deserialize, IntoParams)]
pub struct CallsFilter {
    /// Only calls attributed to a visit from this source (`utm_source`, else the referrer's host,
    /// else `direct`, as the sources report groups them); `(not set)`: visits without one.
    source: Option<String>,
    /// The same by utm_medium.
    medium: Option<String>,
    /// The same by utm_campaign.
    campaign: Option<String>,
    /// The same by utm_term.
    term: Option<String>,
    /// The same by landing page (its address without the query).
    landing_page: Option<String>,
    /// Only calls of this match kind (`active`, `recent`, `repeat_caller`, `callback`,
    /// `default_before`, `default_after`, `static`, `unmatched`).
    #[serde(rename = "match")]
    #[param(rename = "match")]
    matched: Option<String>,
    /// Only answered (`true`) or unanswered (`false`) calls.
    answered: Option<String>,
    /// Only first-time (`true`) or repeat (`false`) callers.
    first_time: Option<String>,
}

impl CallsFilter {
    fn into_filter(self) -> Result<reports::CallFilter, ApiError> {
        use reports::sources::Dimension as D;
        let given = |v: Option<String>| v.filter(|v| !v.is_empty());
        let yes_no = |field: &str, v: Option<String>| match given(v).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!("{field}: {other:?} is neither true nor false"))),
        };
        let matched = match given(self.matched) {
            None => None,
            Some(m) => Some(
                crate::calls::MatchKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == m)
                    .ok_or_else(|| ApiError::bad_request(format!("match: {m:?} is not a match kind")))?,
            ),
        };
        let dims = [
            (D::Source, self.source),
            (D::Medium, self.medium),
            (D::Campaign, self.campaign),
            (D::Term, self.term),
            (D::LandingPage, self.landing_page),
        ];
        Ok(reports::CallFilter {
            dims: dims.into_iter().filter_map(|(d, v)| given(v).map(|v| (d, v))).collect(),
            matched,
            answered: yes_no("answered", self.answered)?,
            first_time: yes_no("first_time", self.first_time)?,
        })
    }
}

/// A site's calls of a period, oldest first (JSON, CSV with `format=csv`), or the calls page
/// (`format=html`: newest first, a filter form, a player per recording).
#[utoipa::path(get, path = "/v1/reports/{site}/calls", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), ReportQuery, CallsFilter, PageLang),
    responses(
        (status = 200, description = "JSON; with format=csv or xlsx a file with the same columns; with format=html the page",
            content((CallList = "application/json"), (String = "text/csv"),
                (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (String = "text/html"))),
        (status = 400, description = "A bad date or period", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn calls(
    State(app): State<Arc<App>>,
    owner: Owner,
    headers: axum::http::HeaderMap,
    Query(q): Query<ReportQuery>,
    Query(f): Query<CallsFilter>,
    Query(f_lang): Query<PageLang>,
) -> Result<Response, ApiError> {
    let site = owner.site();
    let period = q.period(&app, site.timezone)?;
    let filter = f.into_filter()?;
    let list = reports::calls_where(&app, site, &period, owner.access, &filter).await?;
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => Json(list).into_response(),
        "csv" => csv(reports::calls_table(&list).csv(), &list.file_name("csv")),
        "xlsx" => xlsx(&reports::calls_table(&list), &list.file_name("xlsx"))?,
        "html" => html(&headers, f_lang.lang.as_deref(), site.language, |lang| {
            page::render_calls(&page::CallsView { list: &list, lang, tz: site.timezone, filter: &filter })
        }),
        other => return Err(ApiError::bad_request(format!("format: {other:?} is not json, csv, xlsx or html"))),
    })
}

/// A page in the reader's language: `?lang=`, else the browser's `Accept-Language`, else `default`.
fn html(
    headers: &axum::http::HeaderMap,
    lang: Option<&str>,
    default: reports::i18n::Lang,
    render: impl FnOnce(reports::i18n::Lang) -> String,
) -> Response {
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let body = render(reports::i18n::choose(lang, accept, default));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// A table as an XLSX download.
fn xlsx(table: &reports::table::Table, filename: &str) -> Result<Response, ApiError> {
    let body = table.xlsx().map_err(|e| ApiError::internal(format!("the XLSX file could not be made: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response())
}

/// Resolves a recording's host to addresses a recording may come from: the internet and the
/// private ranges (a PBX on the office network), not loopback, link-local (a cloud's metadata
/// address), unspecified or multicast addresses, unless the PBX's `recordings_from` lists them.
struct RecordingHosts(Arc<Vec<ipnet::IpNet>>);

/// Whether a recording may be fetched from `ip`.
fn recording_address_ok(ip: std::net::IpAddr, extra: &[ipnet::IpNet]) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    let local = match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    !local || extra.iter().any(|net| net.contains(&ip))
}

impl reqwest::dns::Resolve for RecordingHosts {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let extra = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<std::net::SocketAddr> =
                found.into_iter().filter(|a| recording_address_ok(a.ip(), &extra)).collect();
            if ok.is_empty() {
                return Err(format!("{host} has no address a recording may come from").into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether a URL's host, when it is an address, is one a recording may come from.
fn literal_host_ok(url: &reqwest::Url, extra: &[ipnet::IpNet]) -> bool {
    let Some(host) = url.host_str() else { return false };
    match host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        Ok(ip) => recording_address_ok(ip, extra),
        Err(_) => true,
    }
}

/// A client for one PBX's recordings: connecting and each read bounded (a long stream is not),
/// at most 5 redirects, none and no host to an address a recording may not come from.
fn recordings_client(extra: &[ipnet::IpNet]) -> Option<reqwest::Client> {
    let extra = Arc::new(extra.to_vec());
    let for_redirects = extra.clone();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(30))
        .dns_resolver(Arc::new(RecordingHosts(extra)))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.stop()
            } else if literal_host_ok(attempt.url(), &for_redirects) {
                attempt.follow()
            } else {
                attempt.error("a redirect to an address a recording may not come from")
            }
        }))
        .build()
        .ok()
}

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
    let config = app.config();
    use axum::http::StatusCode;
    let call = path.1;
    let site = owner.site();
    let none = || ApiError::not_found("this site has no call with a recording under that key");
    let key = call.split_once(':').and_then(|(pbx, id)| crate::calls::CallKey::new(pbx, id).ok()).ok_or_else(none)?;
    let found = app.store.call(&key).await?.filter(|c| c.matched.site.as_ref() == Some(&site.id));
    let pbx = config.pbx(key.pbx());
    let http = pbx.and_then(|p| recordings_client(&p.recordings_from));
    let (Some(found), Some(pbx), Some(http)) = (found, pbx, http) else { return Err(none()) };
    let adapter = crate::pbx::adapter(pbx);
    let (Some(rec), Some(adapter)) = (found.recording_url.as_deref(), adapter) else { return Err(none()) };
    let bad_gateway = |m: &str| ApiError::new(StatusCode::BAD_GATEWAY, "recording_unavailable", m);
    let gone = || ApiError::new(StatusCode::NOT_FOUND, "recording_gone", "the PBX no longer has this recording");
    let mut request = match adapter.recording(&http, rec).await {
        Ok(r) => r,
        Err(crate::pbx::RecordingError::NotFetchable) => return Err(none()),
        Err(crate::pbx::RecordingError::Gone) => return Err(gone()),
        Err(crate::pbx::RecordingError::Failed(why)) => {
            tracing::warn!(pbx = key.pbx(), error = %why, "The PBX's API gave no link to a recording.");
            return Err(bad_gateway("the PBX did not give the recording; try again"));
        }
    };
    if let Some(url) = request.try_clone().and_then(|r| r.build().ok()).map(|r| r.url().clone()) {
        if !literal_host_ok(&url, &pbx.recordings_from) {
            tracing::warn!(pbx = key.pbx(), "A recording link names an address recordings may not come from; refused.");
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "recording_unavailable",
                "the recording's link points at an address callpool does not fetch from (the PBX's recordings_from)",
            ));
        }
    }
    if let Some(range) = headers.get(header::RANGE) {
        request = request.header(header::RANGE, range.clone());
    }
    let answer = request.send().await.map_err(|e| {
        tracing::warn!(pbx = key.pbx(), error = %e, "A recording could not be fetched from the PBX.");
        bad_gateway("the PBX did not answer for the recording; try again")
    })?;
    let status = answer.status();
    match status.as_u16() {
        200 | 206 => {}
        404 | 410 => return Err(gone()),
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
    // Some APIs (Mango's) answer an error with 200 and a JSON body: that is no recording.
    let kind = answer.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ["application/json", "text/html"].iter().any(|t| kind.starts_with(t)) {
        tracing::warn!(
            pbx = key.pbx(),
            content_type = kind,
            "The PBX answered a recording request with a document, not audio."
        );
        return Err(bad_gateway("the PBX answered with an error instead of the recording; try again"));
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
    let site = owner.site();
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
    let site = owner.site();
    Ok(Json(reports::callbacks::callbacks(&app, site, &q.period(&app, site.timezone)?, owner.access).await?))
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
    let site = owner.site();
    let p = q.period(&app, site.timezone)?;
    let body = reports::yandex_csv(&app, site, &p, owner.access).await?;
    Ok(csv(body, &format!("metrica-calls-{}-{}-{}.csv", site.id, p.first, p.last)))
}

#[derive(Deserialize, IntoParams)]
pub struct SourcesQuery {
    /// First day (the site's local date, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today.
    to: Option<String>,
    /// `json` (default), `csv`, `xlsx`, or `html` (the page).
    format: Option<String>,
    /// What rows group by.
    by: Option<reports::sources::Dimension>,
    /// The column rows are sorted by (default: calls).
    sort: Option<reports::sources::SortBy>,
    /// `desc` (default; alphabetical `asc` for `key`) or `asc`.
    order: Option<String>,
    /// The page's language (`ru` or `en`); default: the browser's, else the site's.
    lang: Option<String>,
    /// As for every report: moved to a cookie by a redirect.
    #[allow(dead_code)]
    token: Option<String>,
}

/// Calls by where their visits came from (source, medium, campaign, term or landing page), with
/// the visits from each, the share of visits that called, answered and missed, first-time and
/// repeat callers; JSON, CSV (`format=csv`) or the page (`format=html`).
#[utoipa::path(get, path = "/v1/reports/{site}/sources", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), SourcesQuery),
    responses(
        (status = 200, description = "JSON; with format=csv or xlsx a file with the same columns; with format=html the page",
            content((reports::sources::SourceReport = "application/json"), (String = "text/csv"),
                (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (String = "text/html"))),
        (status = 400, description = "A bad date, period or parameter", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong token, or an unknown site", body = ErrorBody),
        (status = 404, description = "Unknown site (to the server's admin token)", body = ErrorBody),
    ))]
pub async fn sources(
    State(app): State<Arc<App>>,
    owner: Owner,
    headers: axum::http::HeaderMap,
    Query(q): Query<SourcesQuery>,
) -> Result<Response, ApiError> {
    let site = owner.site();
    let period = Period::new(site.timezone, q.from.as_deref(), q.to.as_deref(), app.clock.now())?;
    let sort = q.sort.unwrap_or_default();
    let desc = match q.order.as_deref() {
        None => sort != reports::sources::SortBy::Key,
        Some("desc") => true,
        Some("asc") => false,
        Some(other) => return Err(ApiError::bad_request(format!("order: {other:?} is neither \"asc\" nor \"desc\""))),
    };
    let mut report = reports::sources::sources(&app, site, &period, q.by.unwrap_or_default()).await?;
    report.rows = reports::sources::sort(std::mem::take(&mut report.rows), sort, desc);
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(report).into_response()),
        "csv" => Ok(csv(report.table().csv(), &report.file_name("csv"))),
        "xlsx" => xlsx(&report.table(), &report.file_name("xlsx")),
        "html" => Ok(html(&headers, q.lang.as_deref(), site.language, |lang| {
            page::render_sources(&page::SourcesView { report: &report, lang, sort, desc })
        })),
        other => Err(ApiError::bad_request(format!("format: {other:?} is not json, csv, xlsx or html"))),
    }
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
    headers: axum::http::HeaderMap,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let site = owner.site();
    let period = q.period(&app, site.timezone)?;
    let summary = reports::summary(&app, site, &period).await?;
    let calls = reports::calls(&app, site, &period, owner.access).await?;
    let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let lang = reports::i18n::choose(q.lang.as_deref(), accept, site.language);
    let advice = if q.advice == Some(1) {
        // Seconds of CPU and up to millions of visits in memory: one simulation at a time per
        // node; a second request meanwhile is told to come back rather than queued.
        static SIMULATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
        match SIMULATING.try_acquire() {
            Ok(_running) => Advice::Simulated(reports::advice::advice(&app, site).await),
            Err(_) => Advice::Busy,
        }
    } else {
        let mut link = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
        link.append_pair("from", &summary.from).append_pair("to", &summary.to).append_pair("advice", "1");
        link.append_pair("lang", reports::i18n::words(lang).lang);
        Advice::Link(link.finish())
    };
    let callbacks = match site.callback {
        Some(_) => Some(reports::callbacks::callbacks(&app, site, &period, owner.access).await?),
        None => None,
    };
    let view = page::SiteView {
        id: site.id.as_str(),
        lang,
        tz: site.timezone,
        max_numbers: site.rules.max_numbers,
        delay_to_show: site.delay_to_show,
        reclaim_after_idle: site.rules.reclaim_after_idle,
        number_price: site.number_price.as_ref(),
    };
    let html = page::render(&view, &summary, (&calls, callbacks.as_ref()), advice);
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

#[derive(Deserialize, IntoParams)]
pub struct OverviewQuery {
    /// First day (each site's local date, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today.
    to: Option<String>,
    /// `json` (default) or `html` (the page).
    format: Option<String>,
    /// The page's language (`ru` or `en`); default: the browser's, else Russian.
    lang: Option<String>,
    /// The admin token, for a link opened in a browser: moved to a cookie for every report by a
    /// redirect (303).
    #[allow(dead_code)]
    token: Option<String>,
}

/// Every site in one view (the server's admin token): calls and the share attributed, the pool's
/// pressure, the last call, deliveries given up, and what needs attention; JSON or the page
/// (`format=html`), each site linking to its report.
#[utoipa::path(get, path = "/v1/reports", security(("admin_token" = [])),
    params(OverviewQuery),
    responses(
        (status = 200, description = "JSON; with format=html the page",
            content((reports::overview::Overview = "application/json"), (String = "text/html"))),
        (status = 400, description = "A bad date, period or parameter", body = ErrorBody),
        (status = 303, description = "A `token` in the query: the same URL without it, and a cookie that carries it"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn overview(
    _: Operator,
    State(app): State<Arc<App>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Result<Response, ApiError> {
    let o = reports::overview::overview(&app, q.from.as_deref(), q.to.as_deref(), crate::jobs::registry::all_kinds())
        .await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(o).into_response()),
        "html" => Ok(html(&headers, q.lang.as_deref(), reports::i18n::Lang::Ru, |lang| {
            reports::overview::render_overview(&o, lang)
        })),
        other => Err(ApiError::bad_request(format!("format: {other:?} is neither json nor html"))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_come_from_the_internet_and_private_networks_only() {
        let ok = |ip: &str, extra: &[&str]| {
            let extra: Vec<ipnet::IpNet> = extra.iter().map(|n| n.parse().unwrap()).collect();
            recording_address_ok(ip.parse().unwrap(), &extra)
        };
        assert!(ok("203.0.113.7", &[]) && ok("10.0.0.5", &[]) && ok("2001:db8::5", &[]) && ok("fd00::5", &[]));
        for local in ["127.0.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1", "::ffff:127.0.0.1", "224.0.0.1"] {
            assert!(!ok(local, &[]), "{local}");
        }
        assert!(ok("127.0.0.1", &["127.0.0.0/8"]), "listed in recordings_from");
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(!literal_host_ok(&url("http://[::1]:8080/r.mp3"), &[]));
        assert!(!literal_host_ok(&url("http://169.254.169.254/latest/meta-data/"), &[]));
        assert!(literal_host_ok(&url("https://pbx.example/r.mp3"), &[]), "names are checked when resolved");
    }
}
