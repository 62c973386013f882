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

/// The pool-size advice: simulated (its sentence), or a link that asks for it.
pub enum Advice {
    Text(String),
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
    site: &'a str,
    summary: &'a Summary,
    share: String,
    chart: Chart,
    series: &'a [Series],
    pool: String,
    advice: Advice,
    days: Vec<Day<'a>>,
    /// The period's latest calls, newest first.
    calls: Vec<&'a CallRow>,
    /// The period's latest callback requests, newest first (`None`: the site has no form).
    callbacks: Option<Vec<&'a super::CallbackRow>>,
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

/// The page of `summary` and the latest of `calls`; `max_numbers` is the site's pool size.
pub fn render(
    site: &str,
    summary: &Summary,
    (calls, callbacks): (&CallList, Option<&super::CallbackList>),
    max_numbers: u32,
    advice: Advice,
) -> String {
    let percent = |v: Option<f64>, digits: usize| v.map_or("—".to_owned(), |v| format!("{:.*}%", digits, v * 100.0));
    let pool = summary.pool.as_ref().map_or("unknown".to_owned(), |p| {
        format!(
            "{} of {} numbers in the working set, {} held now; {} requests found the pool exhausted since it was created",
            p.working, p.max_numbers, p.leased_now, p.exhausted_total
        )
    });
    let days = summary
        .days
        .iter()
        .map(|d| Day {
            date: &d.date,
            counts: d,
            share: percent(d.share_tracked, 0),
            peak: d.peak_leased.map_or("—".to_owned(), |v| format!("{v} / {max_numbers}")),
            exhausted: d.exhausted.map_or("—".to_owned(), |v| v.to_string()),
        })
        .collect();
    let page = ReportPage {
        site,
        summary,
        share: percent(summary.total.share_tracked, 1),
        chart: chart(&summary.days),
        series: &SERIES,
        pool,
        advice,
        days,
        calls: calls.calls.iter().rev().take(LATEST).collect(),
        callbacks: callbacks.map(|c| c.callbacks.iter().rev().take(LATEST).collect()),
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
        let html = render("<b>shop</b>", &summary, (&calls, None), 3, Advice::Link("?a=1&token=x\"y".into()));
        assert!(!html.contains("<script>") && html.contains("alert(1)"), "{html}");
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
    use super::i18n::{int, match_kind, status, words};
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
    let local = |rfc: &str| {
        chrono::DateTime::parse_from_rfc3339(rfc)
            .map(|t| t.with_timezone(&v.tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|_| rfc.to_owned())
    };
    let rows = list
        .calls
        .iter()
        .rev()
        .map(|c| {
            let parts: Vec<&str> =
                [&c.source, &c.medium, &c.campaign].into_iter().filter_map(|p| p.as_deref()).collect();
            CallLine {
                started: local(&c.started_at),
                called: c.called.clone(),
                caller: c.caller.clone().unwrap_or_else(|| w.hidden.to_owned()),
                matched: match_kind(w, c.matched),
                source: if parts.is_empty() { "—".into() } else { parts.join(" / ") },
                status: status(w, &c.status),
                duration: c.duration.map_or("—".into(), |d| int(v.lang, u64::from(d))),
                recording: c.recording.clone().unwrap_or_default(),
            }
        })
        .collect::<Vec<_>>();
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

struct SiteRow {
    site: String,
    href: String,
    calls: String,
    share: String,
    untracked: String,
    numbers: String,
    exhausted: String,
    last_call: String,
    dead: String,
    attention: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    w: &'static super::i18n::Words,
    from: &'a str,
    to: &'a str,
    sites: Vec<SiteRow>,
    other_lang_href: String,
}

/// Every site on one page, each linking to its own report: calls, the share attributed, the pool's
/// pressure, the last call, deliveries given up, and what needs attention.
pub fn render_overview(o: &super::overview::Overview, lang: super::i18n::Lang) -> String {
    use super::i18n::{int, percent, words};
    let w = words(lang);
    let period = |prefix: String, start: usize, lang: &str| {
        let mut q = form_urlencoded::Serializer::for_suffix(prefix, start);
        q.append_pair("from", &o.from).append_pair("to", &o.to).append_pair("lang", lang);
        q.finish()
    };
    let sites = o
        .sites
        .iter()
        .map(|s| {
            let attention: Vec<&str> = s
                .attention
                .iter()
                .filter_map(|a| match a.as_str() {
                    "deliveries_failing" => Some(w.attention[0]),
                    "pool_exhausted" => Some(w.attention[1]),
                    "silent" => Some(w.attention[2]),
                    _ => None,
                })
                .collect();
            let dead: u64 = s.dead_letters.values().sum();
            SiteRow {
                href: period(format!("reports/{}?", s.site), "reports/".len() + s.site.len() + 1, w.lang),
                site: s.site.clone(),
                calls: int(lang, s.calls),
                share: s.share_tracked.map_or(w.nothing.to_owned(), |x| percent(lang, x)),
                untracked: int(lang, s.untracked),
                numbers: format!(
                    "{} / {}",
                    s.peak_leased.map_or(w.nothing.to_owned(), |p| int(lang, u64::from(p))),
                    int(lang, u64::from(s.max_numbers))
                ),
                exhausted: int(lang, s.exhausted),
                last_call: s
                    .last_call_at
                    .as_deref()
                    .map_or(w.nothing.to_owned(), |t| t.chars().take(16).collect::<String>().replace('T', " ")),
                dead: if dead == 0 {
                    w.nothing.to_owned()
                } else {
                    s.dead_letters.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
                },
                attention: attention.join(", "),
            }
        })
        .collect();
    let page = OverviewPage {
        w,
        from: &o.from,
        to: &o.to,
        sites,
        other_lang_href: period(String::from("?format=html"), 1, w.other_lang),
    };
    page.render().unwrap_or_else(|e| format!("the page could not be rendered: {e}"))
}
