//! Reports for a site's owner: the calls of a period (JSON or CSV), per-day counts by match kind
//! with the share tracked (the accuracy figure), Metrica's CSV, and a small server-rendered page
//! with a chart. Days are the site's local days (its `timezone`).
//!
//! Access: `Authorization: Bearer <token>` (or `?token=` for links opened in a browser). The
//! site's `report_token` sees callers masked; its `admin_token`, or the server's admin token,
//! sees them in full.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use callpool_pool::Ts;
use chrono::{Days, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use crate::analytics::{csv_field, yandex_row, YANDEX_CSV_HEADER};
use crate::app::App;
use crate::calls::{Call, MatchKind};
use crate::config::SiteConfig;
use crate::http::Failure;
use crate::store::jobs::JobState;

/// The most calls one report reads.
const MAX_CALLS: usize = 50_000;
/// The longest period one report covers.
const MAX_DAYS: u64 = 366;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/reports/{site}/calls", get(calls))
        .route("/v1/reports/{site}/summary", get(summary))
        .route("/v1/reports/{site}/yandex.csv", get(yandex_csv))
        .route("/v1/reports/{site}/callbacks", get(callbacks))
        .route("/v1/reports/{site}", get(page))
        .route("/v1/admin/calls/unassigned", get(unassigned))
}

#[derive(Deserialize, IntoParams)]
pub struct Window {
    /// First day (UTC, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today (UTC).
    to: Option<String>,
}

/// A call to a number no configured site owns.
#[derive(Serialize, ToSchema)]
pub struct UnassignedCall {
    call_id: String,
    started_at: String,
    called: String,
    caller: Option<String>,
    status: String,
}

/// Calls to numbers that belong to no site (a shared number never leased, or one the PBX should
/// not send): for the operator to fix the routing or the configuration.
#[utoipa::path(get, path = "/v1/admin/calls/unassigned", security(("admin_token" = [])),
    params(Window),
    responses(
        (status = 200, body = [UnassignedCall]),
        (status = 400, description = "A bad date", body = crate::http::ApiError),
        (status = 401, description = "Missing or wrong admin token", body = crate::http::ApiError),
    ))]
pub async fn unassigned(
    State(app): State<Arc<App>>,
    Query(w): Query<Window>,
    headers: HeaderMap,
) -> Result<Json<Vec<UnassignedCall>>, Failure> {
    crate::http::authorize(&app, &headers)?;
    let today = app.clock.now().to_chrono().map_or(NaiveDate::MIN, |t| t.date_naive());
    let last = day("to", &w.to)?.unwrap_or(today);
    let first = day("from", &w.from)?.unwrap_or_else(|| last.checked_sub_days(Days::new(29)).unwrap_or(last));
    let ms = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_millis());
    let (from, to) = (Ts::from_millis(ms(first)), Ts::from_millis(ms(last + Days::new(1)) - 1));
    let calls = app.store.calls(None, from, to, MAX_CALLS).await?;
    Ok(Json(
        calls
            .into_iter()
            .map(|s| UnassignedCall {
                call_id: s.key.call_id().to_owned(),
                started_at: s.started_at.to_chrono().map(|t| t.to_rfc3339()).unwrap_or_default(),
                called: s.called.to_string(),
                caller: s.caller.map(|c| c.as_str().to_owned()),
                status: s.status.as_str().to_owned(),
            })
            .collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
pub struct Period {
    /// First day (the site's local date, YYYY-MM-DD); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, included; default: today.
    to: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// The token, for links opened in a browser (prefer the Authorization header).
    token: Option<String>,
    /// On the page: `1` simulates the site's last 28 days of recorded traffic with other pool
    /// sizes (takes a few seconds) and shows the advice.
    advice: Option<u8>,
}

/// How much of a report a token may see.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Callers in full.
    Full,
    /// Callers masked.
    Masked,
}

fn access(app: &App, site: &SiteConfig, headers: &HeaderMap, query_token: Option<&str>) -> Result<Access, Failure> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or(query_token)
        .unwrap_or("");
    let is = |t: Option<&String>| t.is_some_and(|t| bool::from(given.as_bytes().ct_eq(t.as_bytes())));
    if is(app.config.server.admin_token.as_ref()) || is(site.admin_token.as_ref()) {
        Ok(Access::Full)
    } else if is(site.report_token.as_ref()) {
        Ok(Access::Masked)
    } else {
        Err(Failure::Unauthorized)
    }
}

/// The site, the access level, and the period as local dates and as `[from, to]` instants.
struct Request<'a> {
    site: &'a SiteConfig,
    access: Access,
    first: NaiveDate,
    last: NaiveDate,
    from: Ts,
    to: Ts,
}

fn request<'a>(app: &'a App, site: &str, headers: &HeaderMap, period: &Period) -> Result<Request<'a>, Failure> {
    let site = app
        .config
        .sites
        .iter()
        .find(|s| s.id.as_str() == site)
        .ok_or_else(|| Failure::NotFound(format!("unknown site {site:?}")))?;
    let access = access(app, site, headers, period.token.as_deref())?;
    let tz = site.timezone;
    let today = app.clock.now().to_chrono().map_or(NaiveDate::MIN, |t| t.with_timezone(&tz).date_naive());
    let last = day("to", &period.to)?.unwrap_or(today);
    let first = day("from", &period.from)?.unwrap_or_else(|| last.checked_sub_days(Days::new(29)).unwrap_or(last));
    if first > last {
        return Err(Failure::BadRequest("from: after to".into()));
    }
    if (last - first).num_days() as u64 >= MAX_DAYS {
        return Err(Failure::BadRequest(format!("the period is longer than {MAX_DAYS} days")));
    }
    let from = local_midnight(site, first);
    let to = Ts::from_millis(local_midnight(site, last.checked_add_days(Days::new(1)).unwrap_or(last)).as_millis() - 1);
    Ok(Request { site, access, first, last, from, to })
}

/// A `YYYY-MM-DD` query parameter.
fn day(field: &str, v: &Option<String>) -> Result<Option<NaiveDate>, Failure> {
    v.as_deref()
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| Failure::BadRequest(format!("{field}: {s:?} is not a date such as 2026-11-22")))
        })
        .transpose()
}

/// The first instant of `day` in the site's time zone (after a DST gap, the first that exists).
fn local_midnight(site: &SiteConfig, day: NaiveDate) -> Ts {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists as a time of day");
    let t = site
        .timezone
        .from_local_datetime(&midnight)
        .earliest()
        .or_else(|| site.timezone.from_local_datetime(&(midnight + chrono::Duration::hours(1))).earliest())
        .map_or(0, |t| t.timestamp_millis());
    Ts::from_millis(t)
}

fn local_date(site: &SiteConfig, t: Ts) -> NaiveDate {
    t.to_chrono().map_or(NaiveDate::MIN, |t| t.with_timezone(&site.timezone).date_naive())
}

async fn load(app: &App, r: &Request<'_>) -> Result<Vec<Call>, Failure> {
    Ok(app.store.calls(Some(&r.site.id), r.from, r.to, MAX_CALLS).await?)
}

/// A call with where its GA4 event and Metrica row stand.
struct StoredCall {
    call: Call,
    ga4: Option<JobState>,
    yandex: Option<JobState>,
}

/// The period's calls with their deliveries.
async fn load_with_deliveries(app: &App, r: &Request<'_>) -> Result<Vec<StoredCall>, Failure> {
    let calls = load(app, r).await?;
    let ids: Vec<String> = calls.iter().map(|c| c.key.to_string()).collect();
    let ga4 = app.store.job_states(crate::jobs::ga4::CALLS, &ids).await?;
    let yandex = app.store.job_states(crate::jobs::metrica::KIND, &ids).await?;
    Ok(calls.into_iter().zip(ga4).zip(yandex).map(|((call, ga4), yandex)| StoredCall { call, ga4, yandex }).collect())
}

/// One callback request in a report.
#[derive(Serialize, ToSchema)]
pub struct CallbackRow {
    id: String,
    /// RFC 3339, UTC.
    requested_at: String,
    /// When the PBX was (first) asked: at once, or the next opening.
    due_at: String,
    status: crate::callback::CallbackStatus,
    /// Masked (`+7********67`) unless the token is the site's admin token.
    number: String,
    /// `widget` or `api`.
    origin: String,
    attempts: u32,
    /// Why the last trigger attempt failed.
    error: Option<String>,
    /// The PBX's call id of the callback's call, once reported.
    call_id: Option<String>,
    visitor: Option<String>,
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
    landing_page: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CallbackList {
    site: String,
    from: String,
    to: String,
    callbacks: Vec<CallbackRow>,
    /// True when the period held more requests than one report returns (50,000).
    truncated: bool,
}

/// The site's callback requests in a period, oldest first, with where each stands.
#[utoipa::path(get, path = "/v1/reports/{site}/callbacks", security(("report_token" = [])),
    params(("site" = String, Path, description = "The site's id"), Period),
    responses(
        (status = 200, body = CallbackList),
        (status = 400, description = "A bad date or period", body = crate::http::ApiError),
        (status = 401, description = "Missing or wrong token", body = crate::http::ApiError),
        (status = 404, description = "Unknown site", body = crate::http::ApiError),
    ))]
pub async fn callbacks(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(p): Query<Period>,
    headers: HeaderMap,
) -> Result<Json<CallbackList>, Failure> {
    let r = request(&app, &site, &headers, &p)?;
    let list = app.store.callbacks(&r.site.id, r.from, r.to, MAX_CALLS).await?;
    let rfc = |t: Ts| t.to_chrono().map(|t| t.to_rfc3339()).unwrap_or_default();
    let truncated = list.len() >= MAX_CALLS;
    let callbacks = list
        .into_iter()
        .map(|cb| {
            let number = crate::calls::Caller::parse(cb.number.as_str()).map_or_else(String::new, |c| match r.access {
                Access::Full => c.as_str().to_owned(),
                Access::Masked => c.masked(),
            });
            let a = cb.attrs;
            CallbackRow {
                id: cb.id.to_string(),
                requested_at: rfc(cb.requested_at),
                due_at: rfc(cb.due_at),
                status: cb.status,
                number,
                origin: match cb.origin {
                    crate::callback::Origin::Widget => "widget".into(),
                    crate::callback::Origin::Api => "api".into(),
                },
                attempts: cb.attempts,
                error: cb.error,
                call_id: cb.call.map(|c| c.call_id().to_owned()),
                visitor: cb.visitor.map(|v| v.to_string()),
                source: a.utm_source,
                medium: a.utm_medium,
                campaign: a.utm_campaign,
                landing_page: a.landing_page,
            }
        })
        .collect();
    Ok(Json(CallbackList {
        site: r.site.id.to_string(),
        from: r.first.to_string(),
        to: r.last.to_string(),
        callbacks,
        truncated,
    }))
}

/// One call in a report.
#[derive(Serialize, ToSchema)]
pub struct CallRow {
    call_id: String,
    /// RFC 3339, UTC.
    started_at: String,
    /// The site's local date.
    date: String,
    called: String,
    /// Masked (`+7********67`) unless the token is the site's admin token.
    caller: Option<String>,
    status: String,
    duration: Option<u32>,
    answered: bool,
    #[serde(rename = "match")]
    matched: MatchKind,
    number_kind: String,
    first_time_caller: bool,
    visitor: Option<String>,
    source: Option<String>,
    medium: Option<String>,
    campaign: Option<String>,
    referrer: Option<String>,
    landing_page: Option<String>,
    gclid: Option<String>,
    yclid: Option<String>,
    recording_url: Option<String>,
    /// GA4 delivery: pending, sent, skipped, dead (with the reason), or none.
    ga4: String,
    yandex: String,
}

#[derive(Serialize, ToSchema)]
pub struct CallList {
    site: String,
    from: String,
    to: String,
    calls: Vec<CallRow>,
    /// True when the period held more calls than one report returns (50,000).
    truncated: bool,
}

fn delivery(d: &Option<JobState>) -> String {
    match d {
        None => "none".into(),
        Some(JobState::Pending) => "pending".into(),
        Some(JobState::Sent { .. }) => "sent".into(),
        Some(JobState::Skipped { reason }) => format!("skipped: {reason}"),
        Some(JobState::Dead { error }) => format!("dead: {error}"),
    }
}

fn row(r: &Request<'_>, s: &StoredCall) -> CallRow {
    let c = &s.call;
    let a = &c.matched.attrs;
    CallRow {
        call_id: c.key.call_id().to_owned(),
        started_at: c.started_at.to_chrono().map(|t| t.to_rfc3339()).unwrap_or_default(),
        date: local_date(r.site, c.started_at).to_string(),
        called: c.called.to_string(),
        caller: c.caller.as_ref().map(|n| if r.access == Access::Full { n.as_str().to_owned() } else { n.masked() }),
        status: c.status.as_str().to_owned(),
        duration: c.duration,
        answered: c.status.answered() || c.answered_at.is_some(),
        matched: c.matched.kind,
        number_kind: c.matched.number_kind.as_str().to_owned(),
        first_time_caller: c.first_time_caller,
        visitor: c.matched.visitor.as_ref().map(ToString::to_string),
        source: a.utm_source.clone(),
        medium: a.utm_medium.clone(),
        campaign: a.utm_campaign.clone(),
        referrer: a.referrer.clone(),
        landing_page: a.landing_page.clone(),
        gclid: a.gclid.clone(),
        yclid: a.yclid.clone(),
        recording_url: c.recording_url.clone(),
        ga4: delivery(&s.ga4),
        yandex: delivery(&s.yandex),
    }
}

/// A site's calls of a period, oldest first (JSON, or CSV with `format=csv`).
#[utoipa::path(get, path = "/v1/reports/{site}/calls", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), Period),
    responses(
        (status = 200, body = CallList, description = "JSON; with format=csv a CSV file with the same columns"),
        (status = 400, description = "A bad date or period", body = crate::http::ApiError),
        (status = 401, description = "Missing or wrong token", body = crate::http::ApiError),
        (status = 404, description = "Unknown site", body = crate::http::ApiError),
    ))]
pub async fn calls(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(period): Query<Period>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let r = request(&app, &site, &headers, &period)?;
    let stored = load_with_deliveries(&app, &r).await?;
    let truncated = stored.len() >= MAX_CALLS;
    let rows: Vec<CallRow> = stored.iter().map(|s| row(&r, s)).collect();
    if period.format.as_deref() == Some("csv") {
        let mut out = String::from("call_id,started_at,date,called,caller,status,duration,answered,match,number_kind,first_time_caller,visitor,source,medium,campaign,referrer,landing_page,gclid,yclid,recording_url,ga4,yandex\n");
        for c in &rows {
            let opt = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&c.call_id),
                c.started_at,
                c.date,
                c.called,
                opt(&c.caller),
                c.status,
                c.duration.map(|d| d.to_string()).unwrap_or_default(),
                u8::from(c.answered),
                c.matched.as_str(),
                c.number_kind,
                u8::from(c.first_time_caller),
                opt(&c.visitor),
                opt(&c.source),
                opt(&c.medium),
                opt(&c.campaign),
                opt(&c.referrer),
                opt(&c.landing_page),
                opt(&c.gclid),
                opt(&c.yclid),
                opt(&c.recording_url),
                csv_field(&c.ga4),
                csv_field(&c.yandex),
            );
        }
        return Ok(csv_response(out, &format!("calls-{}-{}-{}.csv", r.site.id, r.first, r.last)));
    }
    Ok(Json(CallList {
        site: r.site.id.to_string(),
        from: r.first.to_string(),
        to: r.last.to_string(),
        calls: rows,
        truncated,
    })
    .into_response())
}

fn csv_response(body: String, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

/// Calls of one day (or the whole period) by match kind.
#[derive(Serialize, ToSchema, Default, Clone)]
pub struct DayCounts {
    /// The site's local date (empty for the period's total).
    date: String,
    total: u64,
    active: u64,
    recent: u64,
    repeat_caller: u64,
    /// active + recent + repeat_caller: attributed to a visitor session.
    tracked: u64,
    default_before: u64,
    default_after: u64,
    #[serde(rename = "static")]
    static_: u64,
    unmatched: u64,
    /// Calls the PBX placed for callback requests (outbound: not counted in the share tracked).
    callback: u64,
    /// tracked ÷ (total − static − callback): the accuracy figure. Calls to the static number come from
    /// traffic the site chose not to track, so they do not count against it. `null` without calls.
    share_tracked: Option<f64>,
    /// The most numbers leased at once that day (sampled every 30 s); `null` without samples.
    peak_leased: Option<u32>,
    /// Lease requests that found the pool exhausted that day; `null` without samples.
    exhausted: Option<u64>,
}

impl DayCounts {
    fn add(&mut self, kind: MatchKind) {
        self.total += 1;
        match kind {
            MatchKind::Active => self.active += 1,
            MatchKind::Recent => self.recent += 1,
            MatchKind::RepeatCaller => self.repeat_caller += 1,
            MatchKind::DefaultBefore => self.default_before += 1,
            MatchKind::DefaultAfter => self.default_after += 1,
            MatchKind::Static => self.static_ += 1,
            MatchKind::Unmatched => self.unmatched += 1,
            MatchKind::Callback => self.callback += 1,
        }
        if kind.is_tracked() && kind != MatchKind::Callback {
            self.tracked += 1;
        }
        let base = self.total - self.static_ - self.callback;
        self.share_tracked = (base > 0).then(|| self.tracked as f64 / base as f64);
    }
}

/// A site's pool now.
#[derive(Serialize, ToSchema)]
pub struct PoolUse {
    max_numbers: u32,
    working: u32,
    leased_now: u32,
    /// Lease requests that found nothing free, since the pool was created.
    exhausted_total: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    site: String,
    from: String,
    to: String,
    days: Vec<DayCounts>,
    total: DayCounts,
    /// One line on the untracked calls: shorten the delay, or lengthen the hold.
    hint: String,
    pool: Option<PoolUse>,
}

fn hint(site: &SiteConfig, t: &DayCounts) -> String {
    let (before, after) = (t.default_before, t.default_after);
    let delay = humantime::format_duration(site.delay_to_show);
    let idle = humantime::format_duration(site.rules.reclaim_after_idle);
    if before + after == 0 {
        "No untracked calls in this period.".into()
    } else if before > after * 3 / 2 {
        format!("More untracked calls on default_before ({before}) than default_after ({after}): visitors call before the tracking number appears; shorten delay_to_show (now {delay}).")
    } else if after > before * 3 / 2 {
        format!("More untracked calls on default_after ({after}) than default_before ({before}): numbers are taken back while visitors still need them; lengthen reclaim_after_idle (now {idle}) or max_hold.")
    } else {
        format!("Untracked calls are balanced between default_before ({before}) and default_after ({after}).")
    }
}

async fn build_summary(app: &App, r: &Request<'_>) -> Result<Summary, Failure> {
    let stored = load(app, r).await?;
    let mut days: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
    let mut d = r.first;
    while d <= r.last {
        days.insert(d, DayCounts { date: d.to_string(), ..Default::default() });
        d = d.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX);
    }
    // Pool use: the day before the period gives the first day's baseline of the exhausted counter.
    let before = r.first.checked_sub_days(Days::new(1)).unwrap_or(r.first);
    let names: Vec<String> = std::iter::once(before).chain(days.keys().copied()).map(|d| d.to_string()).collect();
    let usage = app.store.usage(&r.site.id, &names).await?;
    let mut baseline = usage.first().copied().flatten().map(|u| u.exhausted_last);
    for (day, u) in days.values_mut().zip(usage.iter().skip(1)) {
        if let Some(u) = u {
            day.peak_leased = Some(u.peak_leased);
            day.exhausted = Some(u.exhausted_last.saturating_sub(baseline.unwrap_or(u.exhausted_first)));
            baseline = Some(u.exhausted_last);
        }
    }
    let mut total = DayCounts::default();
    for s in &stored {
        let kind = s.matched.kind;
        if let Some(day) = days.get_mut(&local_date(r.site, s.started_at)) {
            day.add(kind);
        }
        total.add(kind);
    }
    let pool = app.pool.status(&r.site.id, app.clock.now()).await?.map(|st| PoolUse {
        max_numbers: st.max_numbers,
        working: st.working,
        leased_now: st.leased,
        exhausted_total: st.exhausted_total,
    });
    let total = DayCounts {
        peak_leased: days.values().filter_map(|d| d.peak_leased).max(),
        exhausted: days.values().filter_map(|d| d.exhausted).reduce(|a, b| a + b),
        ..total
    };
    Ok(Summary {
        site: r.site.id.to_string(),
        from: r.first.to_string(),
        to: r.last.to_string(),
        hint: hint(r.site, &total),
        days: days.into_values().collect(),
        total,
        pool,
    })
}

/// Per-day counts by match kind, the share tracked, a hint on the untracked calls, and the pool.
#[utoipa::path(get, path = "/v1/reports/{site}/summary", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), Period),
    responses(
        (status = 200, body = Summary),
        (status = 400, description = "A bad date or period", body = crate::http::ApiError),
        (status = 401, description = "Missing or wrong token", body = crate::http::ApiError),
        (status = 404, description = "Unknown site", body = crate::http::ApiError),
    ))]
pub async fn summary(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(period): Query<Period>,
    headers: HeaderMap,
) -> Result<Json<Summary>, Failure> {
    let r = request(&app, &site, &headers, &period)?;
    Ok(Json(build_summary(&app, &r).await?))
}

/// The period's attributed calls in Yandex Metrica's offline-calls CSV (for a manual upload).
#[utoipa::path(get, path = "/v1/reports/{site}/yandex.csv", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), Period),
    responses(
        (status = 200, description = "CSV with Metrica's header line", body = String, content_type = "text/csv"),
        (status = 401, description = "Missing or wrong token", body = crate::http::ApiError),
        (status = 404, description = "Unknown site", body = crate::http::ApiError),
    ))]
pub async fn yandex_csv(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(period): Query<Period>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let r = request(&app, &site, &headers, &period)?;
    let mut out = format!("{YANDEX_CSV_HEADER}\n");
    for s in load(&app, &r).await?.iter().filter(|s| s.matched.kind.is_tracked()) {
        if let Some(row) = yandex_row(s) {
            out.push_str(&row);
            out.push('\n');
        }
    }
    Ok(csv_response(out, &format!("metrica-calls-{}-{}-{}.csv", r.site.id, r.first, r.last)))
}

/// "With 14 numbers instead of 9 you would attribute 96% instead of 81%", from the site's own
/// recorded traffic of the last 28 days (docs/SIMULATION.md).
async fn advice_line(app: &App, site: &SiteConfig) -> String {
    let now = app.clock.now();
    let from = now.minus(std::time::Duration::from_secs(28 * 86_400));
    let fitted = match crate::sim::fit::recorded(&app.store, site, from, now).await {
        Ok((fit, _)) => fit,
        Err(why) => return format!("No advice yet: {why}."),
    };
    let settings = crate::sim::fit::site_settings(site, &fitted);
    let model = fitted.model.clone();
    let run = tokio::task::spawn_blocking(move || crate::sim::fit::advice(&model, &settings, 0.95, 0.01)).await;
    let Ok((current, best)) = run else { return "The simulation failed; see the logs.".into() };
    format!(
        "{} Simulated on {} recorded visits and {} calls.",
        crate::sim::advice_text(&current, &best),
        fitted.visits,
        fitted.calls
    )
}

/// A chart series: name, colour, and the day's value.
type Series = (&'static str, &'static str, fn(&DayCounts) -> u64);

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report page: calls over time by match kind, the untracked split with its hint, pool use.
#[utoipa::path(get, path = "/v1/reports/{site}", security(("report_token" = [])),
    params(("site" = String, Path, description = "Site id"), Period),
    responses(
        (status = 200, description = "HTML page", body = String, content_type = "text/html"),
        (status = 401, description = "Missing or wrong token", body = crate::http::ApiError),
        (status = 404, description = "Unknown site", body = crate::http::ApiError),
    ))]
pub async fn page(
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(period): Query<Period>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let r = request(&app, &site, &headers, &period)?;
    let s = build_summary(&app, &r).await?;
    let series: [Series; 7] = [
        ("active", "#1b7f3b", |d| d.active),
        ("recent", "#4caf50", |d| d.recent),
        ("repeat_caller", "#9ccc65", |d| d.repeat_caller),
        ("default_before", "#f9a825", |d| d.default_before),
        ("default_after", "#ef6c00", |d| d.default_after),
        ("unmatched", "#9e9e9e", |d| d.unmatched + d.static_),
        ("callback", "#5c6bc0", |d| d.callback),
    ];
    let (w, h, pad) = (900.0_f64, 260.0_f64, 30.0_f64);
    let max = s.days.iter().map(|d| d.total).max().unwrap_or(0).max(1) as f64;
    let slot = (w - pad) / s.days.len().max(1) as f64;
    let mut bars = String::new();
    for (i, d) in s.days.iter().enumerate() {
        let mut y = h - pad;
        for (name, color, value) in &series {
            let v = value(d) as f64;
            if v == 0.0 {
                continue;
            }
            let bh = v / max * (h - 2.0 * pad);
            y -= bh;
            let _ = write!(
                bars,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>{} {name}: {}</title></rect>"#,
                pad + i as f64 * slot + 1.0,
                (slot - 2.0).max(1.0),
                d.date,
                value(d)
            );
        }
    }
    let legend: String = series
        .iter()
        .map(|(name, color, _)| format!(r#"<span><i style="background:{color}"></i>{name}</span>"#))
        .collect();
    let t = &s.total;
    let share = t.share_tracked.map_or("—".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let pool = s.pool.as_ref().map_or("unknown".to_owned(), |p| {
        format!(
            "{} of {} numbers in the working set, {} held now; {} requests found the pool exhausted since it was created",
            p.working, p.max_numbers, p.leased_now, p.exhausted_total
        )
    });
    let max_numbers = r.site.rules.max_numbers;
    let advice = if period.advice == Some(1) {
        esc(&advice_line(&app, r.site).await)
    } else {
        let token = period.token.as_deref().map(|t| format!("&token={}", esc(t))).unwrap_or_default();
        format!(
            "<a href=\"?from={}&to={}{token}&advice=1\">Simulate the last 28 days of this site's traffic with other pool sizes</a> (takes a few seconds).",
            s.from, s.to
        )
    };
    let html = format!(
        r##"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>callpool · {site}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:960px;color:#222}}h1{{font-size:1.4rem}}
.legend span{{margin-right:1rem}}.legend i{{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}}
table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}}th:first-child,td:first-child{{text-align:left}}</style></head>
<body><h1>Calls of {site}, {from} to {to}</h1>
<p><b>{total}</b> calls, <b>{tracked}</b> attributed to a visitor session: <b>{share}</b> tracked.</p>
<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="Calls per day by match kind">
<line x1="{pad}" y1="{base}" x2="{w}" y2="{base}" stroke="#999"/><text x="0" y="{top}" font-size="11">{max}</text>{bars}</svg>
<p class="legend">{legend}</p>
<h2>Untracked calls</h2><p>default_before: {before}, default_after: {after}. {hint}</p>
<h2>Pool</h2><p>{pool}.</p>
<h2>Pool size advice</h2><p>{advice}</p>
<h2>By day</h2><table><tr><th>date</th><th>total</th><th>active</th><th>recent</th><th>repeat</th><th>default_before</th><th>default_after</th><th>static</th><th>unmatched</th><th>callback</th><th>tracked</th><th>peak leased</th><th>exhausted</th></tr>{rows}</table>
</body></html>"##,
        site = esc(r.site.id.as_str()),
        from = s.from,
        to = s.to,
        total = t.total,
        tracked = t.tracked,
        base = h - pad,
        top = pad,
        max = max as u64,
        before = t.default_before,
        after = t.default_after,
        hint = esc(&s.hint),
        pool = esc(&pool),
        rows = s
            .days
            .iter()
            .map(|d| format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                d.date,
                d.total,
                d.active,
                d.recent,
                d.repeat_caller,
                d.default_before,
                d.default_after,
                d.static_,
                d.unmatched,
                d.callback,
                d.share_tracked.map_or("—".to_owned(), |v| format!("{:.0}%", v * 100.0)),
                d.peak_leased.map_or("—".to_owned(), |v| format!("{v} / {max_numbers}")),
                d.exhausted.map_or("—".to_owned(), |v| v.to_string()),
            ))
            .collect::<String>(),
    );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_tracked_leaves_static_calls_out() {
        let mut d = DayCounts::default();
        for k in
            [MatchKind::Active, MatchKind::Recent, MatchKind::DefaultBefore, MatchKind::Static, MatchKind::Unmatched]
        {
            d.add(k);
        }
        assert_eq!((d.total, d.tracked), (5, 2));
        assert_eq!(d.share_tracked, Some(0.5));
        assert_eq!(DayCounts::default().share_tracked, None);
    }
}
