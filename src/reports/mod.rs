//! Reports for a site's owner: the calls of a period (JSON rows or CSV), per-day counts by match
//! kind with the share tracked (the accuracy figure) and the pool's use, the callback requests,
//! Metrica's CSV, the calls no site owns (for the operator), and the pool-size advice. Days are
//! the site's local days (its `timezone`). [`page`] renders the owner's page from a template;
//! `web/reports.rs` serves all of it.

pub mod advice;
pub mod callbacks;
pub mod digest;
pub mod dims;
pub mod i18n;
pub mod overview;
pub mod page;
pub mod sources;
pub mod table;

use std::collections::BTreeMap;

use callpool_pool::Ts;
use chrono::{Days, NaiveDate, TimeZone};
use serde::Serialize;
use utoipa::ToSchema;

use crate::analytics::{yandex_row, YANDEX_CSV_HEADER};
use crate::app::App;
use crate::callback::CallbackStatus;
use crate::calls::{Call, Caller, MatchKind};
use crate::config::SiteConfig;
use crate::store::jobs::JobState;
use crate::store::StoreError;

/// The most records one report reads.
pub const MAX_ROWS: usize = 50_000;
/// The longest period one report covers.
pub const MAX_DAYS: u64 = 366;

/// How much of a report its reader may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Callers in full: the server's admin token or the site's `admin_token`.
    Full,
    /// Callers masked (`+7********67`): the site's `report_token`.
    Masked,
}

impl Access {
    fn show(self, c: &Caller) -> String {
        match self {
            Access::Full => c.as_str().to_owned(),
            Access::Masked => c.masked(),
        }
    }

    /// A free text (a PBX's error message) as the reader may see it: any run of six or more
    /// digits in it (a phone number, in whatever format the PBX wrote it) masked like a caller's.
    fn text(self, t: &str) -> String {
        if self == Access::Full {
            return t.to_owned();
        }
        let mut out = String::with_capacity(t.len());
        let mut run = String::new();
        let flush = |run: &mut String, out: &mut String| {
            // What follows the run's last digit (a space before the next word) is not the number's.
            let end = run.rfind(|c: char| c.is_ascii_digit()).map_or(0, |i| i + 1);
            let (number, tail) = run.split_at(end);
            let digits = number.chars().filter(char::is_ascii_digit).count();
            match Caller::parse(number).filter(|_| digits >= 6) {
                Some(n) => out.push_str(&n.masked()),
                None => out.push_str(number),
            }
            out.push_str(tail);
            run.clear();
        };
        for c in t.chars() {
            // A number's own punctuation stays in the run: +7 (916) 123-45-67.
            let in_number = c.is_ascii_digit() || (!run.is_empty() && matches!(c, ' ' | '-' | '(' | ')' | '.'));
            if c.is_ascii_digit() || c == '+' && run.is_empty() || in_number {
                run.push(c);
            } else {
                flush(&mut run, &mut out);
                out.push(c);
            }
        }
        flush(&mut run, &mut out);
        out
    }

    /// The number a call went to, as the reader may see it: on a callback's call the PBX called
    /// the visitor, so a number that is not one of callpool's own (`ours`) is the visitor's and
    /// is shown as a caller is; any other call went to one of the site's numbers.
    fn called(self, c: &Call, ours: &crate::calls::matcher::Directory) -> String {
        match Caller::parse(c.called.as_str()) {
            Some(n) if c.matched.kind == MatchKind::Callback && !ours.is_ours(&c.called) => self.show(&n),
            _ => c.called.to_string(),
        }
    }
}

/// A report's period: local days from `first` to `last` (included), and the instants they span.
#[derive(Clone, Copy, Debug)]
pub struct Period {
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub from: Ts,
    pub to: Ts,
}

/// Why a period was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{field}: {value:?} is not a date such as 2026-11-22")]
    NotADate { field: &'static str, value: String },
    #[error("from: after to")]
    Reversed,
    #[error("the period is longer than {MAX_DAYS} days")]
    TooLong,
}

impl Period {
    /// `from`..=`to` (`YYYY-MM-DD`) in `tz`; by default the 30 days up to today.
    pub fn new(tz: chrono_tz::Tz, from: Option<&str>, to: Option<&str>, now: Ts) -> Result<Period, PeriodError> {
        let today = now.to_chrono().map_or(NaiveDate::MIN, |t| t.with_timezone(&tz).date_naive());
        let last = day("to", to)?.unwrap_or(today);
        let first = day("from", from)?.unwrap_or_else(|| last.checked_sub_days(Days::new(29)).unwrap_or(last));
        if first > last {
            return Err(PeriodError::Reversed);
        }
        if (last - first).num_days() as u64 >= MAX_DAYS {
            return Err(PeriodError::TooLong);
        }
        let from = local_midnight(tz, first);
        let to =
            Ts::from_millis(local_midnight(tz, last.checked_add_days(Days::new(1)).unwrap_or(last)).as_millis() - 1);
        Ok(Period { first, last, from, to })
    }
}

/// A `YYYY-MM-DD` parameter.
fn day(field: &'static str, v: Option<&str>) -> Result<Option<NaiveDate>, PeriodError> {
    v.map(|s| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| PeriodError::NotADate { field, value: s.to_owned() })
    })
    .transpose()
}

/// The first instant of `day` in `tz` (after a DST gap, the first that exists).
fn local_midnight(tz: chrono_tz::Tz, day: NaiveDate) -> Ts {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists as a time of day");
    let t = tz
        .from_local_datetime(&midnight)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(midnight + chrono::Duration::hours(1))).earliest())
        .map_or(0, |t| t.timestamp_millis());
    Ts::from_millis(t)
}

fn local_date(site: &SiteConfig, t: Ts) -> NaiveDate {
    t.to_chrono().map_or(NaiveDate::MIN, |t| t.with_timezone(&site.timezone).date_naive())
}

fn rfc3339(t: Ts) -> String {
    t.to_chrono().map(|t| t.to_rfc3339()).unwrap_or_default()
}

async fn load(app: &App, site: &SiteConfig, p: &Period) -> Result<Vec<Call>, StoreError> {
    app.store.calls(Some(&site.id), p.from, p.to, MAX_ROWS).await
}

/// One call in a report.
#[derive(Serialize, ToSchema)]
pub struct CallRow {
    call_id: String,
    /// RFC 3339, UTC.
    started_at: String,
    /// The site's local date.
    date: String,
    /// The number called: one of the site's; on a callback's call (`match` = `callback`) the
    /// visitor's number, masked as `caller` is.
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
    /// The call's recording through callpool (`/v1/reports/<site>/recordings/<pbx>:<call id>`,
    /// with the same token), when its PBX reported one.
    recording: Option<String>,
    /// GA4 delivery: pending, sent, skipped, dead (with the reason), or none.
    ga4: String,
    yandex: String,
    /// On a callback's call: the request it answered.
    callback: Option<CallbackStory>,
}

/// The request a callback's call answered: when it was made, how it went.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallbackStory {
    id: String,
    /// RFC 3339, UTC.
    requested_at: String,
    status: CallbackStatus,
    /// Trigger attempts that failed.
    attempts: u32,
    operators_rung: u32,
    answered_by: Option<String>,
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

impl CallList {
    /// The file name of its CSV or XLSX (`ext`).
    pub fn file_name(&self, ext: &str) -> String {
        format!("calls-{}-{}-{}.{ext}", self.site, self.from, self.to)
    }
}

/// Where a job stands, in a report's words.
fn delivery(d: &Option<JobState>) -> String {
    match d {
        None => "none".into(),
        Some(JobState::Pending) => "pending".into(),
        Some(JobState::Sent { .. }) => "sent".into(),
        Some(JobState::Skipped { reason }) => format!("skipped: {reason}"),
        Some(JobState::Dead { error }) => format!("dead: {error}"),
    }
}

pub use dims::NOT_SET;

/// Which of a period's calls a report lists: all by default. A source (medium, campaign, term,
/// landing page) keeps the calls attributed to a visit with it, grouped as the sources report
/// groups them; [`NOT_SET`] keeps those whose visit had none.
#[derive(Clone, Debug, Default)]
pub struct CallFilter {
    pub dims: Vec<(dims::Dimension, String)>,
    pub matched: Option<MatchKind>,
    pub answered: Option<bool>,
    pub first_time: Option<bool>,
}

impl CallFilter {
    pub fn keeps(&self, c: &Call) -> bool {
        let answered = c.status.answered() || c.answered_at.is_some();
        self.matched.is_none_or(|m| m == c.matched.kind)
            && self.answered.is_none_or(|a| a == answered)
            && self.first_time.is_none_or(|f| f == c.first_time_caller)
            && self.dims.iter().all(|(dim, want)| {
                c.matched.kind.is_tracked() && dim.of_session(&c.matched.attrs).as_deref().unwrap_or(NOT_SET) == want
            })
    }
}

/// The site's calls of a period, oldest first, with where their GA4 event and Metrica row stand.
pub async fn calls(app: &App, site: &SiteConfig, p: &Period, access: Access) -> Result<CallList, StoreError> {
    calls_where(app, site, p, access, &CallFilter::default()).await
}

/// The same, only the calls `filter` keeps.
pub async fn calls_where(
    app: &App,
    site: &SiteConfig,
    p: &Period,
    access: Access,
    filter: &CallFilter,
) -> Result<CallList, StoreError> {
    let mut calls = load(app, site, p).await?;
    let truncated = calls.len() >= MAX_ROWS;
    calls.retain(|c| filter.keeps(c));
    let ids: Vec<String> = calls.iter().map(|c| c.key.to_string()).collect();
    let ga4 = app.store.job_states(crate::jobs::ga4::CALLS, &ids).await?;
    let yandex = app.store.job_states(crate::jobs::metrica::KIND, &ids).await?;
    let mut stories = BTreeMap::new();
    for c in calls.iter().filter(|c| c.matched.kind == MatchKind::Callback) {
        if let Some(cb) = app.store.callback_for_call(&c.key).await? {
            let story = CallbackStory {
                id: cb.id.to_string(),
                requested_at: rfc3339(cb.requested_at),
                status: cb.status,
                attempts: cb.attempts,
                operators_rung: cb.operators_rung(),
                answered_by: cb.answered_by.clone(),
            };
            stories.insert(c.key.to_string(), story);
        }
    }
    let config = app.config();
    let rows = calls
        .iter()
        .zip(ga4.iter().zip(&yandex))
        .map(|(c, (ga4, yandex))| {
            let a = &c.matched.attrs;
            CallRow {
                call_id: c.key.call_id().to_owned(),
                started_at: rfc3339(c.started_at),
                date: local_date(site, c.started_at).to_string(),
                called: access.called(c, &config.directory),
                caller: c.caller.as_ref().map(|n| access.show(n)),
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
                recording: c.recording_url.as_ref().map(|_| recording_path(&site.id, &c.key)),
                ga4: delivery(ga4),
                yandex: delivery(yandex),
                callback: stories.remove(&c.key.to_string()),
            }
        })
        .collect();
    Ok(CallList {
        site: site.id.to_string(),
        from: p.first.to_string(),
        to: p.last.to_string(),
        calls: rows,
        truncated,
    })
}

/// Where a call's recording is served (the key's characters outside `[A-Za-z0-9._~:-]` escaped).
pub fn recording_path(site: &callpool_pool::SiteId, key: &crate::calls::CallKey) -> String {
    let escaped: String = key
        .as_str()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'~' | b':' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/v1/reports/{site}/recordings/{escaped}")
}

/// The calls as a table (CSV, XLSX), with the JSON rows' columns.
pub fn calls_table(list: &CallList) -> table::Table {
    use table::Cell;
    let header = vec![
        "call_id",
        "started_at",
        "date",
        "called",
        "caller",
        "status",
        "duration",
        "answered",
        "match",
        "number_kind",
        "first_time_caller",
        "visitor",
        "source",
        "medium",
        "campaign",
        "referrer",
        "landing_page",
        "gclid",
        "yclid",
        "recording",
        "ga4",
        "yandex",
        "callback_id",
    ];
    let rows = list
        .calls
        .iter()
        .map(|c| {
            let opt = |v: &Option<String>| Cell::from(v.as_deref());
            vec![
                Cell::from(c.call_id.as_str()),
                Cell::from(c.started_at.as_str()),
                Cell::from(c.date.as_str()),
                Cell::from(c.called.as_str()),
                opt(&c.caller),
                Cell::from(c.status.as_str()),
                c.duration.map_or(Cell::Empty, |d| Cell::Int(u64::from(d))),
                c.answered.into(),
                Cell::from(c.matched.as_str()),
                Cell::from(c.number_kind.as_str()),
                c.first_time_caller.into(),
                opt(&c.visitor),
                opt(&c.source),
                opt(&c.medium),
                opt(&c.campaign),
                opt(&c.referrer),
                opt(&c.landing_page),
                opt(&c.gclid),
                opt(&c.yclid),
                opt(&c.recording),
                Cell::from(c.ga4.as_str()),
                Cell::from(c.yandex.as_str()),
                Cell::from(c.callback.as_ref().map(|s| s.id.as_str())),
            ]
        })
        .collect();
    table::Table { sheet: "calls", header, rows }
}

/// Calls of one day (or the whole period) by match kind.
#[derive(Serialize, ToSchema, Default, Clone)]
pub struct DayCounts {
    /// The site's local date (empty for the period's total).
    pub date: String,
    pub total: u64,
    pub active: u64,
    pub recent: u64,
    pub repeat_caller: u64,
    /// active + recent + repeat_caller: attributed to a visitor session.
    pub tracked: u64,
    pub default_before: u64,
    pub default_after: u64,
    #[serde(rename = "static")]
    pub static_: u64,
    pub unmatched: u64,
    /// Calls the PBX placed for callback requests (outbound: not counted in the share tracked).
    pub callback: u64,
    /// tracked ÷ (total − static − callback): the accuracy figure. Calls to the static number come from
    /// traffic the site chose not to track, so they do not count against it. `null` without calls.
    pub share_tracked: Option<f64>,
    /// The most numbers leased at once that day (sampled every 30 s); `null` without samples.
    pub peak_leased: Option<u32>,
    /// Lease requests that found the pool exhausted that day; `null` without samples.
    pub exhausted: Option<u64>,
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
    pub max_numbers: u32,
    pub working: u32,
    pub leased_now: u32,
    /// Lease requests that found nothing free, since the pool was created.
    pub exhausted_total: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Summary {
    pub site: String,
    pub from: String,
    pub to: String,
    pub days: Vec<DayCounts>,
    pub total: DayCounts,
    /// One line on the untracked calls: shorten the delay, or lengthen the hold.
    pub hint: String,
    pub pool: Option<PoolUse>,
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

/// Per-day counts by match kind, the share tracked, a hint on the untracked calls, and the pool.
pub async fn summary(app: &App, site: &SiteConfig, p: &Period) -> Result<Summary, StoreError> {
    let calls = load(app, site, p).await?;
    let mut days: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
    let mut d = p.first;
    while d <= p.last {
        days.insert(d, DayCounts { date: d.to_string(), ..Default::default() });
        d = d.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX);
    }
    // Pool use: the day before the period gives the first day's baseline of the exhausted counter.
    let before = p.first.checked_sub_days(Days::new(1)).unwrap_or(p.first);
    let names: Vec<String> = std::iter::once(before).chain(days.keys().copied()).map(|d| d.to_string()).collect();
    let usage = app.store.usage(&site.id, &names).await?;
    let mut baseline = usage.first().copied().flatten().map(|u| u.exhausted_last);
    for (day, u) in days.values_mut().zip(usage.iter().skip(1)) {
        if let Some(u) = u {
            day.peak_leased = Some(u.peak_leased);
            day.exhausted = Some(u.exhausted_last.saturating_sub(baseline.unwrap_or(u.exhausted_first)));
            baseline = Some(u.exhausted_last);
        }
    }
    let mut total = DayCounts::default();
    for c in &calls {
        let kind = c.matched.kind;
        if let Some(day) = days.get_mut(&local_date(site, c.started_at)) {
            day.add(kind);
        }
        total.add(kind);
    }
    let pool = app.pool.status(&site.id, app.clock.now()).await?.map(|st| PoolUse {
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
        site: site.id.to_string(),
        from: p.first.to_string(),
        to: p.last.to_string(),
        hint: hint(site, &total),
        days: days.into_values().collect(),
        total,
        pool,
    })
}

/// The period's attributed calls in Yandex Metrica's offline-calls CSV (for a manual upload).
pub async fn yandex_csv(app: &App, site: &SiteConfig, p: &Period, access: Access) -> Result<String, StoreError> {
    let mut out = format!("{YANDEX_CSV_HEADER}\n");
    let choice = crate::jobs::metrica::counter(site).map(|c| c.phone).unwrap_or_default();
    let config = app.config();
    for c in load(app, site, p).await?.iter().filter(|c| c.matched.kind.is_tracked()) {
        let mut phone = choice.of(c, &config.directory);
        // A client's number (the site sends them to Metrica) is masked for the report token.
        if choice == crate::analytics::MetricaPhone::Client {
            if let Some(n) = Caller::parse(&phone) {
                phone = access.show(&n);
            }
        }
        if let Some(row) = yandex_row(c, &phone) {
            out.push_str(&row);
            out.push('\n');
        }
    }
    Ok(out)
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
/// not send), for the operator to fix the routing or the configuration.
pub async fn unassigned(app: &App, p: &Period) -> Result<Vec<UnassignedCall>, StoreError> {
    let calls = app.store.calls(None, p.from, p.to, MAX_ROWS).await?;
    Ok(calls
        .into_iter()
        .map(|c| UnassignedCall {
            call_id: c.key.call_id().to_owned(),
            started_at: rfc3339(c.started_at),
            called: c.called.to_string(),
            caller: c.caller.map(|c| c.as_str().to_owned()),
            status: c.status.as_str().to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    /// A PBX's message that names the number shows it masked to the report token.
    #[test]
    fn numbers_in_a_pbx_message_are_masked_for_the_report_token() {
        let said = "dial failed: +7 (916) 123-45-67 busy, code 486";
        assert_eq!(super::Access::Masked.text(said), "dial failed: +7********67 busy, code 486");
        assert_eq!(super::Access::Full.text(said), said);
        assert_eq!(super::Access::Masked.text("79161234567 rejected"), "7********67 rejected");
    }

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

    #[test]
    fn periods_are_the_sites_local_days() {
        let now = Ts::from_millis(1_767_225_600_000); // 2026-01-01T00:00:00Z, 03:00 in Moscow
        let p = Period::new(chrono_tz::Europe::Moscow, None, None, now).unwrap();
        assert_eq!((p.first.to_string(), p.last.to_string()), ("2025-12-03".into(), "2026-01-01".into()));
        assert_eq!(p.from.to_string(), "2025-12-02T21:00:00.000Z");
        let p = Period::new(chrono_tz::UTC, Some("2026-01-02"), Some("2026-01-02"), now).unwrap();
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2026-01-02T00:00:00.000Z".into(), "2026-01-02T23:59:59.999Z".into())
        );
        assert_eq!(
            Period::new(chrono_tz::UTC, Some("2026-01-03"), Some("2026-01-02"), now).unwrap_err(),
            PeriodError::Reversed
        );
        assert_eq!(Period::new(chrono_tz::UTC, Some("2024-01-01"), None, now).unwrap_err(), PeriodError::TooLong);
        assert!(matches!(
            Period::new(chrono_tz::UTC, Some("yesterday"), None, now),
            Err(PeriodError::NotADate { field: "from", .. })
        ));
    }
}
