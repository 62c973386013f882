//! The owner's page: calls over time by match kind (an SVG chart), the untracked calls with
//! their hint, the pool's use, the pool-size advice, and the days in a table. Rendered from
//! `templates/report.html`, whose values are escaped by the template engine.

use askama::Template;

use super::{CallList, CallRow, DayCounts, Summary};

/// A series of the chart: a match kind (or a few together), its colour, and the day's value.
struct Series {
    name: &'static str,
    color: &'static str,
    value: fn(&DayCounts) -> u64,
}

const SERIES: [Series; 7] = [
    Series { name: "active", color: "#1b7f3b", value: |d| d.active },
    Series { name: "recent", color: "#4caf50", value: |d| d.recent },
    Series { name: "repeat_caller", color: "#9ccc65", value: |d| d.repeat_caller },
    Series { name: "default_before", color: "#f9a825", value: |d| d.default_before },
    Series { name: "default_after", color: "#ef6c00", value: |d| d.default_after },
    Series { name: "unmatched", color: "#9e9e9e", value: |d| d.unmatched + d.static_ },
    Series { name: "callback", color: "#5c6bc0", value: |d| d.callback },
];

/// The pool-size advice: simulated, busy (another simulation runs on the node), or a link that
/// asks for it.
pub enum Advice {
    Simulated(super::advice::PoolAdvice),
    Busy,
    Link(String),
}

struct Bar {
    x: String,
    y: String,
    width: String,
    height: String,
    color: &'static str,
    title: String,
}

struct Chart {
    width: f64,
    height: f64,
    pad: f64,
    base: f64,
    max: u64,
    bars: Vec<Bar>,
}

struct Day<'a> {
    date: &'a str,
    counts: &'a DayCounts,
    share: String,
    peak: String,
    exhausted: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    w: &'static super::i18n::Words,
    site: &'a str,
    summary: &'a Summary,
    total_line: String,
    chart: Chart,
    series: Vec<(&'static str, &'static str)>,
    hint: String,
    pool: String,
    advice: Option<String>,
    advice_link: String,
    days: Vec<Day<'a>>,
    /// The period's latest calls, newest first.
    calls: Vec<CallLine>,
    /// The period's latest callback requests, newest first (`None`: the site has no form).
    callbacks: Option<Vec<CallbackLine>>,
    sources_href: String,
    calls_href: String,
    other_lang_href: String,
}

struct CallbackLine {
    requested: String,
    number: String,
    source: String,
    status: &'static str,
    operators_rung: u32,
    answered_by: String,
}

/// The site as its page shows it.
pub struct SiteView<'a> {
    pub id: &'a str,
    pub lang: super::i18n::Lang,
    pub tz: chrono_tz::Tz,
    pub max_numbers: u32,
    pub delay_to_show: std::time::Duration,
    pub reclaim_after_idle: std::time::Duration,
    pub number_price: Option<&'a crate::config::Price>,
}

/// The advice in the reader's words, with the numbers' cost when the site has a price.
fn advice_text(w: &super::i18n::Words, site: &SiteView<'_>, advice: &super::advice::PoolAdvice) -> String {
    use super::i18n::{fill, int, money, percent};
    let lang = site.lang;
    let sized = |s: &super::advice::Sized| {
        let cost = site.number_price.map_or(String::new(), |p| {
            fill(
                w.per_month,
                &[("amount", money(lang, p.amount * f64::from(s.numbers))), ("currency", p.currency.clone())],
            )
        });
        fill(
            w.sized,
            &[
                ("numbers", int(lang, u64::from(s.numbers))),
                ("cost", cost),
                ("accuracy", percent(lang, s.accuracy)),
                ("wrong", percent(lang, s.wrong)),
            ],
        )
    };
    match advice {
        super::advice::PoolAdvice::Simulated { current, best, visits, calls } => {
            let first = if best.numbers == current.numbers {
                fill(w.advice_texts[0], &[("now", sized(current))])
            } else {
                fill(w.advice_texts[1], &[("best", sized(best)), ("now", sized(current))])
            };
            let on =
                fill(w.advice_texts[2], &[("visits", int(lang, *visits as u64)), ("calls", int(lang, *calls as u64))]);
            format!("{first} {on}")
        }
        super::advice::PoolAdvice::NotYet(why) => fill(w.advice_texts[3], &[("why", why.clone())]),
        super::advice::PoolAdvice::Failed => w.advice_texts[4].to_owned(),
    }
}

/// How many of the period's calls the page lists.
const LATEST: usize = 50;

/// The bars of every day, stacked by series.
fn chart(days: &[DayCounts]) -> Chart {
    let (width, height, pad) = (900.0_f64, 260.0_f64, 30.0_f64);
    let max = days.iter().map(|d| d.total).max().unwrap_or(0).max(1);
    let slot = (width - pad) / days.len().max(1) as f64;
    let mut bars = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let mut y = height - pad;
        for s in &SERIES {
            let v = (s.value)(d);
            if v == 0 {
                continue;
            }
            let h = v as f64 / max as f64 * (height - 2.0 * pad);
            y -= h;
            bars.push(Bar {
                x: format!("{:.1}", pad + i as f64 * slot + 1.0),
                y: format!("{y:.1}"),
                width: format!("{:.1}", (slot - 2.0).max(1.0)),
                height: format!("{h:.1}"),
                color: s.color,
                title: format!("{} {}: {v}", d.date, s.name),
            });
        }
    }
    Chart { width, height, pad, base: height - pad, max, bars }
}

/// A time in the site's zone, to the minute.
fn local(rfc: &str, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc.to_owned())
}

/// A callback request's status in the reader's words.
fn callback_status(w: &super::i18n::Words, s: crate::callback::CallbackStatus) -> &'static str {
    let all = ["scheduled", "accepted", "retrying", "calling", "connected", "completed", "missed", "failed"];
    all.iter().position(|x| *x == s.as_str()).map_or(w.nothing, |i| w.callback_statuses[i])
}

/// A call's line in the reader's words.
fn call_line(w: &super::i18n::Words, lang: super::i18n::Lang, tz: chrono_tz::Tz, c: &CallRow) -> CallLine {
    use super::i18n::{fill, int, match_kind, status};
    let parts: Vec<&str> = [&c.source, &c.medium, &c.campaign].into_iter().filter_map(|p| p.as_deref()).collect();
    let story = c.callback.as_ref().map_or(String::new(), |s| {
        fill(
            w.callback_story,
            &[
                ("requested", local(&s.requested_at, tz)),
                ("status", callback_status(w, s.status).to_owned()),
                ("rung", int(lang, u64::from(s.operators_rung))),
                ("answered", s.answered_by.clone().unwrap_or_else(|| w.nothing.to_owned())),
            ],
        )
    });
    CallLine {
        story,
        started: local(&c.started_at, tz),
        called: c.called.clone(),
        caller: c.caller.clone().unwrap_or_else(|| w.hidden.to_owned()),
        matched: match_kind(w, c.matched),
        source: if parts.is_empty() { "—".into() } else { parts.join(" / ") },
        status: status(w, &c.status),
        duration: c.duration.map_or("—".into(), |d| int(lang, u64::from(d))),
        recording: c.recording.clone().unwrap_or_default(),
    }
}

/// The hint on the untracked calls `t` counts, in `lang`: shorten the delay (`delay_to_show`),
/// or lengthen the hold (`idle`, `reclaim_after_idle`).
pub fn untracked_hint(
    lang: super::i18n::Lang,
    t: &super::DayCounts,
    delay: std::time::Duration,
    idle: std::time::Duration,
) -> String {
    use super::i18n::{fill, int, words};
    let w = words(lang);
    let (before, after) = (t.default_before, t.default_after);
    let hint = match () {
        _ if before + after == 0 => w.hints[0],
        _ if before > after * 3 / 2 => w.hints[1],
        _ if after > before * 3 / 2 => w.hints[2],
        _ => w.hints[3],
    };
    fill(
        hint,
        &[
            ("before", int(lang, before)),
            ("after", int(lang, after)),
            ("delay", humantime::format_duration(delay).to_string()),
            ("idle", humantime::format_duration(idle).to_string()),
        ],
    )
}

/// The site's page: its calls of the period over time by match kind, the untracked calls with
/// their hint, the pool's use and the advice, the latest calls and callback requests, the days.
pub fn render(
    site: &SiteView<'_>,
    summary: &Summary,
    (calls, callbacks): (&CallList, Option<&super::callbacks::CallbackList>),
    advice: Advice,
) -> String {
    use super::i18n::{fill, int, match_kind, percent, words};
    let (lang, w) = (site.lang, words(site.lang));
    let pct = |v: Option<f64>| v.map_or(w.nothing.to_owned(), |v| percent(lang, v));
    let pool = summary.pool.as_ref().map_or(w.unknown.to_owned(), |p| {
        fill(
            w.pool_line,
            &[
                ("working", int(lang, u64::from(p.working))),
                ("max", int(lang, u64::from(p.max_numbers))),
                ("leased", int(lang, u64::from(p.leased_now))),
                ("exhausted", int(lang, p.exhausted_total)),
            ],
        )
    });
    let hint = untracked_hint(lang, &summary.total, site.delay_to_show, site.reclaim_after_idle);
    let days = summary
        .days
        .iter()
        .map(|d| Day {
            date: &d.date,
            counts: d,
            share: pct(d.share_tracked),
            peak: d.peak_leased.map_or(w.nothing.to_owned(), |v| format!("{v} / {}", site.max_numbers)),
            exhausted: d.exhausted.map_or(w.nothing.to_owned(), |v| int(lang, v)),
        })
        .collect();
    let series = SERIES
        .iter()
        .map(|s| {
            let kind = crate::calls::MatchKind::ALL.into_iter().find(|k| k.as_str() == s.name);
            (kind.map_or(s.name, |k| match_kind(w, k)), s.color)
        })
        .collect();
    let around = |path: String, start: usize, lang: &str| {
        let mut q = form_urlencoded::Serializer::for_suffix(path, start);
        q.append_pair("from", &summary.from).append_pair("to", &summary.to).append_pair("lang", lang);
        q.finish()
    };
    let page = ReportPage {
        w,
        site: site.id,
        summary,
        total_line: fill(
            w.total_line,
            &[
                ("total", int(lang, summary.total.total)),
                ("tracked", int(lang, summary.total.tracked)),
                ("share", pct(summary.total.share_tracked)),
            ],
        ),
        chart: chart(&summary.days),
        series,
        hint,
        pool,
        advice: match &advice {
            Advice::Simulated(a) => Some(advice_text(w, site, a)),
            Advice::Busy => Some(w.advice_busy.to_owned()),
            Advice::Link(_) => None,
        },
        advice_link: match advice {
            Advice::Link(href) => href,
            _ => String::new(),
        },
        days,
        calls: calls.calls.iter().rev().take(LATEST).map(|c| call_line(w, lang, site.tz, c)).collect(),
        callbacks: callbacks.map(|list| {
            list.callbacks
                .iter()
                .rev()
                .take(LATEST)
                .map(|c| CallbackLine {
                    requested: local(&c.requested_at, site.tz),
                    number: c.number.clone(),
                    source: c.source.clone().unwrap_or_else(|| w.nothing.to_owned()),
                    status: callback_status(w, c.status),
                    operators_rung: c.operators_rung,
                    answered_by: c.answered_by.clone().unwrap_or_else(|| w.nothing.to_owned()),
                })
                .collect()
        }),
        sources_href: around(format!("{}/sources?format=html", site.id), site.id.len() + 9, w.lang),
        calls_href: around(format!("{}/calls?format=html", site.id), site.id.len() + 7, w.lang),
        other_lang_href: around(String::from("?"), 1, w.other_lang),
    };
    page.render().expect("the report page renders (its values are plain text)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let summary = Summary {
            site: "shop".into(),
            from: "2026-01-01".into(),
            to: "2026-01-01".into(),
            days: vec![DayCounts { date: "2026-01-01".into(), total: 1, active: 1, ..Default::default() }],
            total: DayCounts::default(),
            hint: "<script>alert(1)</script>".into(),
            pool: None,
        };
        let calls =
            CallList { site: "shop".into(), from: String::new(), to: String::new(), calls: vec![], truncated: false };
        let site = SiteView {
            id: "<b>shop</b>",
            lang: super::super::i18n::Lang::En,
            tz: chrono_tz::UTC,
            max_numbers: 3,
            delay_to_show: std::time::Duration::from_secs(5),
            reclaim_after_idle: std::time::Duration::from_secs(120),
            number_price: None,
        };
        let html = render(&site, &summary, (&calls, None), Advice::Link("?a=1&token=x\"y".into()));
        assert!(!html.contains("<script>"), "{html}");
        let why = crate::reports::advice::PoolAdvice::NotYet("<script>alert(1)</script>".into());
        let text = render(&site, &summary, (&calls, None), Advice::Simulated(why));
        assert!(!text.contains("<script>") && text.contains("alert(1)"), "{text}");
        // With a price: the cost beside the accuracy, in the reader's words.
        let price = crate::config::Price::parse("4.70 USD").unwrap();
        let site = SiteView { number_price: Some(&price), lang: super::super::i18n::Lang::En, ..site };
        let sized = |numbers, accuracy| crate::reports::advice::Sized { numbers, accuracy, wrong: 0.004 };
        let advice = crate::reports::advice::PoolAdvice::Simulated {
            current: sized(10, 0.9),
            best: sized(14, 0.96),
            visits: 5000,
            calls: 120,
        };
        let w = super::super::i18n::words(site.lang);
        assert_eq!(
            advice_text(w, &site, &advice),
            "14 numbers, 65.80 USD a month, 96.0% of calls attributed (0.4% to the wrong visitor) instead of \
             10 numbers, 47 USD a month, 90.0% of calls attributed (0.4% to the wrong visitor) now. Simulated on 5,000 \
             recorded visits and 120 calls of the last 28 days."
        );
        assert!(!html.contains("<b>shop") && html.contains("shop"));
        assert!(!html.contains("token=x\"y"));
        assert!(html.contains("<rect x=\"31.0\""), "a bar for the day's call");
    }
}

/// The sources page's view of a request: what it shows and how its links keep the rest.
pub struct SourcesView<'a> {
    pub report: &'a super::sources::SourceReport,
    pub lang: super::i18n::Lang,
    pub sort: super::sources::SortBy,
    pub desc: bool,
}

struct DimLink {
    label: &'static str,
    href: String,
    current: bool,
}

struct Header {
    label: &'static str,
    href: String,
    arrow: &'static str,
}

struct SourceLine {
    key: String,
    none: bool,
    visits: String,
    calls: String,
    visits_that_called: String,
    rate: String,
    answered: String,
    missed: String,
    first_time: String,
    repeat: String,
    calls_href: String,
}

struct HBar {
    label: String,
    value: String,
    y: u32,
    width: u32,
}

#[derive(Template)]
#[template(path = "sources.html")]
struct SourcesPage<'a> {
    w: &'static super::i18n::Words,
    site: &'a str,
    from: &'a str,
    to: &'a str,
    by_label: &'static str,
    dims: Vec<DimLink>,
    headers: Vec<Header>,
    rows: Vec<SourceLine>,
    bars: Vec<HBar>,
    chart_height: u32,
    total_visits: String,
    total_calls: String,
    unattributed: String,
    truncated: bool,
    csv_href: String,
    xlsx_href: String,
    other_lang_href: String,
    overview_href: String,
}

/// The sources page: a chart of the rows with the most calls, the table (each header sorts it,
/// each row links to its calls), the calls no visit is credited with, the CSV.
pub fn render_sources(v: &SourcesView<'_>) -> String {
    use super::i18n::{int, percent, words};
    use super::sources::{Dimension, SortBy};
    let (r, lang) = (v.report, v.lang);
    let w = words(lang);
    let link = |by: Dimension, sort: SortBy, desc: bool, lang: &str, format: &str| {
        let mut q = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
        q.append_pair("from", &r.from).append_pair("to", &r.to).append_pair("by", by.as_str());
        q.append_pair("sort", sort.as_str()).append_pair("order", if desc { "desc" } else { "asc" });
        q.append_pair("lang", lang).append_pair("format", format);
        q.finish()
    };
    let dim_label = |d: Dimension| w.dimensions[Dimension::ALL.iter().position(|x| *x == d).unwrap_or(0)];
    let dims = Dimension::ALL
        .iter()
        .map(|d| DimLink { label: dim_label(*d), href: link(*d, v.sort, v.desc, w.lang, "html"), current: *d == r.by })
        .collect();
    let headers = SortBy::ALL
        .iter()
        .zip(w.columns)
        .map(|(s, label)| {
            let current = *s == v.sort;
            // A click sorts by the column, largest first; again, the other way.
            let desc = if current { !v.desc } else { *s != SortBy::Key };
            Header {
                label: if *s == SortBy::Key { dim_label(r.by) } else { label },
                href: link(r.by, *s, desc, w.lang, "html"),
                arrow: match (current, v.desc) {
                    (false, _) => "",
                    (true, true) => " ↓",
                    (true, false) => " ↑",
                },
            }
        })
        .collect();
    let rows = r
        .rows
        .iter()
        .map(|row| {
            let mut q = form_urlencoded::Serializer::for_suffix(String::from("calls?format=html"), "calls?".len());
            q.append_pair("from", &r.from).append_pair("to", &r.to).append_pair("lang", w.lang);
            q.append_pair(r.by.as_str(), row.key.as_deref().unwrap_or(super::NOT_SET));
            SourceLine {
                key: row.key.clone().unwrap_or_default(),
                none: row.key.is_none(),
                visits: int(lang, row.visits),
                calls: int(lang, row.calls),
                visits_that_called: int(lang, row.visits_that_called),
                rate: row.call_rate.map_or("—".into(), |x| percent(lang, x)),
                answered: int(lang, row.answered),
                missed: int(lang, row.missed),
                first_time: int(lang, row.first_time),
                repeat: int(lang, row.repeat),
                calls_href: if row.calls > 0 { q.finish() } else { String::new() },
            }
        })
        .collect();
    let top: Vec<_> = r.rows.iter().filter(|row| row.calls > 0).take(10).collect();
    let most = top.iter().map(|row| row.calls).max().unwrap_or(1).max(1);
    let bars = top
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let label = row.key.clone().unwrap_or_else(|| w.not_set.to_owned());
            let label = if label.chars().count() > 28 {
                format!("{}…", label.chars().take(27).collect::<String>())
            } else {
                label
            };
            HBar { label, value: int(lang, row.calls), y: i as u32 * 22 + 4, width: (row.calls * 380 / most) as u32 }
        })
        .collect::<Vec<_>>();
    let page = SourcesPage {
        w,
        site: &r.site,
        from: &r.from,
        to: &r.to,
        by_label: dim_label(r.by),
        dims,
        headers,
        rows,
        chart_height: bars.len() as u32 * 22 + 8,
        bars,
        total_visits: int(lang, r.visits),
        total_calls: int(lang, r.calls),
        unattributed: int(lang, r.unattributed.calls),
        truncated: r.truncated,
        csv_href: link(r.by, v.sort, v.desc, w.lang, "csv"),
        xlsx_href: link(r.by, v.sort, v.desc, w.lang, "xlsx"),
        other_lang_href: link(r.by, v.sort, v.desc, w.other_lang, "html"),
        overview_href: {
            let start = r.site.len() + 4;
            let mut q = form_urlencoded::Serializer::for_suffix(format!("../{}?", r.site), start);
            q.append_pair("from", &r.from).append_pair("to", &r.to);
            q.finish()
        },
    };
    page.render().unwrap_or_else(|e| format!("the page could not be rendered: {e}"))
}

/// The calls page's view of a request.
pub struct CallsView<'a> {
    pub list: &'a CallList,
    pub lang: super::i18n::Lang,
    pub tz: chrono_tz::Tz,
    pub filter: &'a super::CallFilter,
}

struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct CallLine {
    /// A callback's call: its request's story.
    story: String,
    started: String,
    called: String,
    caller: String,
    matched: &'static str,
    source: String,
    status: &'static str,
    duration: String,
    recording: String,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage<'a> {
    w: &'static super::i18n::Words,
    site: &'a str,
    from: &'a str,
    to: &'a str,
    source: String,
    /// The other filters a row of the sources page gave (medium, campaign, ...), kept by the form.
    kept: Vec<(&'static str, String)>,
    kinds: Vec<Choice>,
    answered: Vec<Choice>,
    first_time: Vec<Choice>,
    rows: Vec<CallLine>,
    count: String,
    truncated: bool,
    csv_href: String,
    xlsx_href: String,
    sources_href: String,
    overview_href: String,
    other_lang_href: String,
}

/// The calls page: a filter form (period, source, match kind, answered, first-time caller), the
/// calls newest first in the site's time zone with a player for each recording, the CSV of the
/// same calls.
pub fn render_calls(v: &CallsView<'_>) -> String {
    use super::i18n::{int, match_kind, words};
    use crate::calls::MatchKind;
    let (list, w, f) = (v.list, words(v.lang), v.filter);
    let source = f.dims.iter().find(|(d, _)| *d == super::sources::Dimension::Source).map(|(_, s)| s.clone());
    // The filters as a query, for the CSV and the language switch.
    let query = |lang: &str, format: &str| {
        let mut q = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
        q.append_pair("from", &list.from).append_pair("to", &list.to);
        for (d, value) in &f.dims {
            q.append_pair(d.as_str(), value);
        }
        if let Some(m) = f.matched {
            q.append_pair("match", m.as_str());
        }
        if let Some(a) = f.answered {
            q.append_pair("answered", if a { "true" } else { "false" });
        }
        if let Some(t) = f.first_time {
            q.append_pair("first_time", if t { "true" } else { "false" });
        }
        q.append_pair("lang", lang).append_pair("format", format);
        q.finish()
    };
    let yes_no = |current: Option<bool>| {
        vec![
            Choice { value: "", label: w.any, selected: current.is_none() },
            Choice { value: "true", label: w.yes, selected: current == Some(true) },
            Choice { value: "false", label: w.no, selected: current == Some(false) },
        ]
    };
    let kinds = MatchKind::ALL
        .iter()
        .map(|k| Choice { value: k.as_str(), label: match_kind(w, *k), selected: f.matched == Some(*k) })
        .collect();
    let rows = list.calls.iter().rev().map(|c| call_line(w, v.lang, v.tz, c)).collect::<Vec<_>>();
    let around = |path: &str| {
        let mut q = form_urlencoded::Serializer::for_suffix(format!("{path}?"), path.len() + 1);
        q.append_pair("from", &list.from).append_pair("to", &list.to).append_pair("lang", w.lang);
        q.append_pair("format", "html");
        q.finish()
    };
    let page = CallsPage {
        w,
        site: &list.site,
        from: &list.from,
        to: &list.to,
        source: source.unwrap_or_default(),
        kept: f
            .dims
            .iter()
            .filter(|(d, _)| *d != super::sources::Dimension::Source)
            .map(|(d, v)| (d.as_str(), v.clone()))
            .collect(),
        kinds,
        answered: yes_no(f.answered),
        first_time: yes_no(f.first_time),
        count: format!("{}: {}", w.calls_title, int(v.lang, rows.len() as u64)),
        rows,
        truncated: list.truncated,
        csv_href: query(w.lang, "csv"),
        xlsx_href: query(w.lang, "xlsx"),
        sources_href: around("sources"),
        overview_href: {
            let mut q = form_urlencoded::Serializer::for_suffix(format!("../{}?", list.site), list.site.len() + 4);
            q.append_pair("from", &list.from).append_pair("to", &list.to);
            q.finish()
        },
        other_lang_href: query(w.other_lang, "html"),
    };
    page.render().unwrap_or_else(|e| format!("the page could not be rendered: {e}"))
}
