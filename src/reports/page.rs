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
