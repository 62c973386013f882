//! Calls by where their visits came from: per source (or medium, campaign, term, landing page)
//! of a period, the visits the visit log holds, the calls attributed to them, the share of visits
//! that called, answered and missed calls, first-time and repeat callers. Calls not attributed to
//! a visit are counted apart. A visit and a call are grouped the same way: the source is the
//! `utm_source`, else the referrer's host, else "direct" (`analytics::visit_source`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{load, Period, MAX_ROWS};
use crate::app::App;
use crate::calls::Call;
use crate::config::SiteConfig;
use crate::store::visits::VisitRecord;

pub use super::dims::Dimension;
use crate::store::StoreError;

/// One row: a source (or medium, ...), `null` for visits and calls without one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct SourceRow {
    pub key: Option<String>,
    /// Tracked visits recorded (a visit is recorded when its last tab closes).
    pub visits: u64,
    /// Calls attributed to a visit from it.
    pub calls: u64,
    /// Visits whose visitor called (a call attributed to them in the period).
    pub visits_that_called: u64,
    /// `visits_that_called` / `visits`; null without visits.
    pub call_rate: Option<f64>,
    pub answered: u64,
    pub missed: u64,
    pub first_time: u64,
    pub repeat: u64,
}

/// The calls no visit is credited with (default, static and unmatched numbers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Unattributed {
    pub calls: u64,
    pub answered: u64,
    pub missed: u64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SourceReport {
    pub site: String,
    pub from: String,
    pub to: String,
    pub by: Dimension,
    /// Most calls first (then most visits), unless sorted otherwise.
    pub rows: Vec<SourceRow>,
    pub visits: u64,
    /// Calls attributed to a visit.
    pub calls: u64,
    pub unattributed: Unattributed,
    /// True when the period held more calls or visits than one report reads (50,000 each).
    pub truncated: bool,
}

/// What a row can be sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortBy {
    Key,
    Visits,
    #[default]
    Calls,
    VisitsThatCalled,
    CallRate,
    Answered,
    Missed,
    FirstTime,
    Repeat,
}

impl SortBy {
    /// In the table's order.
    pub const ALL: [SortBy; 9] = [
        SortBy::Key,
        SortBy::Visits,
        SortBy::Calls,
        SortBy::VisitsThatCalled,
        SortBy::CallRate,
        SortBy::Answered,
        SortBy::Missed,
        SortBy::FirstTime,
        SortBy::Repeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Key => "key",
            SortBy::Visits => "visits",
            SortBy::Calls => "calls",
            SortBy::VisitsThatCalled => "visits_that_called",
            SortBy::CallRate => "call_rate",
            SortBy::Answered => "answered",
            SortBy::Missed => "missed",
            SortBy::FirstTime => "first_time",
            SortBy::Repeat => "repeat",
        }
    }
}

/// Groups a period's visits and calls by `by` (pure: the report and its tests).
pub fn tally(by: Dimension, visits: &[VisitRecord], calls: &[Call]) -> (Vec<SourceRow>, Unattributed) {
    let mut rows: BTreeMap<Option<String>, SourceRow> = BTreeMap::new();
    // Each row's visitors, and who called: a visit "called" when its visitor did.
    let mut visitors: BTreeMap<Option<String>, Vec<&str>> = BTreeMap::new();
    let mut callers: BTreeMap<Option<String>, BTreeSet<String>> = BTreeMap::new();
    // A visit the site's traffic filter did not track was never given a number: it cannot call
    // through one, and does not count.
    for v in visits.iter().filter(|v| v.tracked) {
        let key = by.of_visit(v);
        rows.entry(key.clone()).or_default().visits += 1;
        visitors.entry(key).or_default().push(&v.visitor);
    }
    let mut unattributed = Unattributed::default();
    for c in calls {
        let answered = c.status.answered() || c.answered_at.is_some();
        let missed = !answered && c.status.is_final();
        if !c.matched.kind.is_tracked() {
            unattributed.calls += 1;
            unattributed.answered += u64::from(answered);
            unattributed.missed += u64::from(missed);
            continue;
        }
        let key = by.of_session(&c.matched.attrs);
        if let Some(v) = &c.matched.visitor {
            callers.entry(key.clone()).or_default().insert(v.to_string());
        }
        let row = rows.entry(key).or_default();
        row.calls += 1;
        row.answered += u64::from(answered);
        row.missed += u64::from(missed);
        row.first_time += u64::from(c.first_time_caller);
        row.repeat += u64::from(!c.first_time_caller);
    }
    let rows = rows
        .into_iter()
        .map(|(key, mut row)| {
            let called = callers.get(&key);
            row.visits_that_called = visitors
                .get(&key)
                .map_or(0, |vs| vs.iter().filter(|v| called.is_some_and(|c| c.contains(**v))).count() as u64);
            row.call_rate = (row.visits > 0).then(|| row.visits_that_called as f64 / row.visits as f64);
            row.key = key;
            row
        })
        .collect();
    (sort(rows, SortBy::Calls, true), unattributed)
}

/// `rows` by `by`, largest first when `desc` (ties: most calls, then the key).
pub fn sort(mut rows: Vec<SourceRow>, by: SortBy, desc: bool) -> Vec<SourceRow> {
    let n = |r: &SourceRow| match by {
        SortBy::Key => 0.0,
        SortBy::Visits => r.visits as f64,
        SortBy::Calls => r.calls as f64,
        SortBy::VisitsThatCalled => r.visits_that_called as f64,
        SortBy::CallRate => r.call_rate.unwrap_or(-1.0),
        SortBy::Answered => r.answered as f64,
        SortBy::Missed => r.missed as f64,
        SortBy::FirstTime => r.first_time as f64,
        SortBy::Repeat => r.repeat as f64,
    };
    rows.sort_by(|a, b| {
        let primary = if by == SortBy::Key { a.key.cmp(&b.key) } else { n(a).total_cmp(&n(b)) };
        let primary = if desc { primary.reverse() } else { primary };
        primary.then(b.calls.cmp(&a.calls)).then(b.visits.cmp(&a.visits)).then(a.key.cmp(&b.key))
    });
    rows
}

/// The site's sources of a period.
pub async fn sources(app: &App, site: &SiteConfig, p: &Period, by: Dimension) -> Result<SourceReport, StoreError> {
    let calls = load(app, site, p).await?;
    let visits = app.store.visits(&site.id, p.from, p.to, MAX_ROWS).await?;
    let truncated = calls.len() >= MAX_ROWS || visits.len() >= MAX_ROWS;
    let (rows, unattributed) = tally(by, &visits, &calls);
    Ok(SourceReport {
        site: site.id.to_string(),
        from: p.first.to_string(),
        to: p.last.to_string(),
        by,
        visits: rows.iter().map(|r| r.visits).sum(),
        calls: rows.iter().map(|r| r.calls).sum(),
        rows,
        unattributed,
        truncated,
    })
}

impl SourceReport {
    /// The file name of its CSV or XLSX (`ext`).
    pub fn file_name(&self, ext: &str) -> String {
        format!("{}-{}-{}-{}.{ext}", self.by.as_str(), self.site, self.from, self.to)
    }

    /// The rows as a table (CSV, XLSX), with the JSON rows' columns (`call_rate` a fraction).
    pub fn table(&self) -> super::table::Table {
        use super::table::Cell;
        let header = vec![
            self.by.as_str(),
            "visits",
            "calls",
            "visits_that_called",
            "call_rate",
            "answered",
            "missed",
            "first_time",
            "repeat",
        ];
        let rows = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    Cell::from(r.key.as_deref()),
                    r.visits.into(),
                    r.calls.into(),
                    r.visits_that_called.into(),
                    r.call_rate.map_or(Cell::Empty, Cell::Num),
                    r.answered.into(),
                    r.missed.into(),
                    r.first_time.into(),
                    r.repeat.into(),
                ]
            })
            .collect();
        super::table::Table { sheet: "sources", header, rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpool_pool::{SessionAttrs, Ts, VisitorId};

    fn visit(visitor: &str, source: &str, campaign: Option<&str>) -> VisitRecord {
        VisitRecord {
            visitor: visitor.into(),
            source: source.into(),
            campaign: campaign.map(Into::into),
            tracked: true,
            ..Default::default()
        }
    }

    fn call(id: &str, visitor: Option<&str>, source: Option<&str>, answered: bool, first: bool) -> Call {
        let mut c = Call::example(Ts::from_millis(1_767_225_600_000));
        c.key = crate::calls::CallKey::new("pbx", id).unwrap();
        c.matched.visitor = visitor.map(|v| VisitorId::new(v).unwrap());
        c.matched.attrs = SessionAttrs { utm_source: source.map(Into::into), ..Default::default() };
        if visitor.is_none() {
            c.matched.kind = crate::calls::MatchKind::DefaultBefore;
        }
        if !answered {
            c.status = crate::calls::CallStatus::Missed;
            c.answered_at = None;
        }
        c.first_time_caller = first;
        c
    }

    #[test]
    fn rows_count_visits_calls_and_the_visits_that_called() {
        let visits = [
            visit("v1", "google", Some("winter")),
            visit("v2", "google", None),
            visit("v3", "google", Some("winter")),
            visit("v4", "direct", None),
        ];
        let calls = [
            call("c1", Some("v1"), Some("google"), true, true),
            call("c2", Some("v1"), Some("google"), false, false),
            call("c3", Some("v9"), Some("yandex"), true, true),
            call("c4", None, None, false, true),
        ];
        let (rows, un) = tally(Dimension::Source, &visits, &calls);
        let google = rows.iter().find(|r| r.key.as_deref() == Some("google")).unwrap();
        assert_eq!((google.visits, google.calls, google.visits_that_called), (3, 2, 1));
        assert_eq!((google.answered, google.missed, google.first_time, google.repeat), (1, 1, 1, 1));
        assert!((google.call_rate.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        // A source with calls and no recorded visits (the visit has not ended yet) has no rate.
        let yandex = rows.iter().find(|r| r.key.as_deref() == Some("yandex")).unwrap();
        assert_eq!((yandex.visits, yandex.calls, yandex.call_rate), (0, 1, None));
        assert_eq!(un, Unattributed { calls: 1, answered: 0, missed: 1 });
        assert_eq!(rows[0].key.as_deref(), Some("google"), "most calls first");

        let (rows, _) = tally(Dimension::Campaign, &visits, &calls);
        let none = rows.iter().find(|r| r.key.is_none()).unwrap();
        assert_eq!((none.visits, none.calls), (2, 3), "the calls' sessions have no campaign");
        let sorted = sort(rows, SortBy::Calls, false);
        assert_eq!(sorted[0].key.as_deref(), Some("winter"));
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_made_text() {
        let report = SourceReport {
            site: "shop".into(),
            from: "2026-12-01".into(),
            to: "2026-12-07".into(),
            by: Dimension::Campaign,
            rows: vec![SourceRow { key: Some("=HYPERLINK(\"x\")".into()), visits: 1, ..Default::default() }],
            visits: 1,
            calls: 0,
            unattributed: Unattributed::default(),
            truncated: false,
        };
        let csv = report.table().csv();
        assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\",1,0"), "{csv}");
    }
}
