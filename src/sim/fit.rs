//! A site's traffic model fitted to what callpool recorded for it: the visits the hub saw end
//! (arrival, activity, close, tabs, tracked or not) and the calls with their match kinds. The
//! simulator then runs the fitted model like any other, so a site owner reads what their own
//! traffic would give with another pool size or timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Datelike, Timelike};

use super::model::{LogNormal, TrafficModel};
use crate::calls::{Call, MatchKind};
use crate::store::visits::VisitRecord;

/// Fewer visits than this say too little to fit a model to.
pub const MIN_VISITS: usize = 50;
/// A visit active for less than this is a bounce.
const BOUNCE_MS: i64 = 40_000;
/// A gap this long between the last activity and the close is a tab left open idle.
const IDLE_TAB_MS: i64 = 5 * 60_000;

/// A fitted model and what it was fitted to.
#[derive(Clone, Debug)]
pub struct Fit {
    pub model: TrafficModel,
    pub visits: usize,
    pub calls: usize,
    pub days: f64,
    /// Share of visits the site's filter tracked (the fitted model has two sources,
    /// `tracked` and `untracked`, to carry it).
    pub tracked_share: f64,
}

/// A log-normal from samples (ms): the median and the spread of their logarithms.
fn lognormal(samples: &[i64], fallback: LogNormal) -> LogNormal {
    let logs: Vec<f64> = samples.iter().filter(|s| **s > 0).map(|s| (*s as f64).ln()).collect();
    if logs.len() < 5 {
        return fallback;
    }
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
    LogNormal { median: Duration::from_millis(mean.exp() as u64), sigma: var.sqrt().max(0.1) }
}

/// Fits a model to `days` days of a site's recorded `visits` and `calls` (times in the site's
/// time zone `tz`). What the records cannot tell (how long after leaving people call, calls from
/// people who never visited) keeps the `small-shop` preset's values.
pub fn fit(visits: &[VisitRecord], calls: &[Call], days: f64, tz: chrono_tz::Tz) -> Result<Fit, String> {
    if visits.len() < MIN_VISITS {
        return Err(format!(
            "{} visits recorded in the period; at least {MIN_VISITS} are needed to fit a model",
            visits.len()
        ));
    }
    let base = TrafficModel::small_shop();
    let n = visits.len() as f64;
    let local = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&tz));
    let mut hourly = [0.5_f64; 24];
    let mut weekday = [0.0_f64; 7];
    for v in visits {
        if let Some(t) = local(v.first_seen) {
            hourly[t.hour() as usize] += 1.0;
            weekday[t.weekday().num_days_from_monday() as usize] += 1.0;
        }
    }
    let weekday = if days >= 7.0 {
        let mean = weekday.iter().sum::<f64>() / 7.0;
        weekday.map(|w| if mean > 0.0 { (w / mean).max(0.05) } else { 1.0 })
    } else {
        [1.0; 7]
    };
    let active: Vec<i64> = visits.iter().map(|v| (v.last_active - v.first_seen).max(0)).collect();
    let bounces = active.iter().filter(|a| **a < BOUNCE_MS).count() as f64;
    let engaged: Vec<i64> = active.iter().copied().filter(|a| *a >= BOUNCE_MS).collect();
    let idle_gaps: Vec<i64> = visits.iter().map(|v| v.closed - v.last_active).filter(|g| *g > IDLE_TAB_MS).collect();
    let extra_tabs = visits.iter().map(|v| f64::from(v.tabs.max(1) - 1)).sum::<f64>() / n;
    let tracked = visits.iter().filter(|v| v.tracked).count() as f64 / n;

    // Calls from the site's visitors: everything but the static number's (untracked traffic).
    let visitor_calls: Vec<&Call> = calls.iter().filter(|c| c.matched.kind != MatchKind::Static).collect();
    let count = |k: MatchKind| visitor_calls.iter().filter(|c| c.matched.kind == k).count() as f64;
    let (active_calls, recent_calls, repeats) =
        (count(MatchKind::Active), count(MatchKind::Recent), count(MatchKind::RepeatCaller));
    let first_calls = (visitor_calls.len() as f64 - repeats).max(0.0);
    let (during, after) = if active_calls + recent_calls > 0.0 {
        let d = active_calls / (active_calls + recent_calls) * (1.0 - base.call_later);
        (d, 1.0 - base.call_later - d)
    } else {
        (base.call_during, base.call_after)
    };
    let model = TrafficModel {
        visitors_per_day: n / days,
        hourly,
        weekday,
        early_leave_share: bounces / n,
        early_leave_max: Duration::from_millis(BOUNCE_MS as u64),
        dwell: lognormal(&engaged, base.dwell),
        extra_tabs_mean: extra_tabs,
        idle_tab_share: idle_gaps.len() as f64 / n,
        idle_tab: lognormal(&idle_gaps, base.idle_tab),
        call_share: (first_calls / n).min(1.0),
        call_during: during,
        call_after: after,
        call_later: base.call_later,
        repeat_share: if first_calls > 0.0 { (repeats / first_calls).min(1.0) } else { 0.0 },
        // Calls to the site's number from people who never visited cannot be told apart from
        // visitors who called before their number showed: all are counted as visitors' calls.
        background_calls_per_day: 0.0,
        sources: vec![("tracked".into(), tracked), ("untracked".into(), 1.0 - tracked)],
        // Activity and idle tabs are replayed from the records themselves (a bootstrap): no
        // distribution has to fit them, and bounces are exactly as short as they were.
        recorded_visits: visits
            .iter()
            .map(|v| ((v.last_active - v.first_seen).max(0), (v.closed - v.last_active).max(0)))
            .collect(),
        ..base
    };
    Ok(Fit { model, visits: visits.len(), calls: visitor_calls.len(), days, tracked_share: tracked })
}

/// Reads a site's recorded visits and calls of `[from, to)` from `store` and fits a model to them.
pub async fn recorded(
    store: &crate::store::Store,
    site: &crate::config::SiteConfig,
    from: callpool_pool::Ts,
    to: callpool_pool::Ts,
) -> Result<(Fit, Vec<VisitRecord>), String> {
    let days = ((to.as_millis() - from.as_millis()) as f64 / 86_400_000.0).max(1.0 / 24.0);
    let last = callpool_pool::Ts::from_millis(to.as_millis() - 1);
    let visits = store.visits(&site.id, from, last, 5_000_000).await.map_err(|e| e.to_string())?;
    let calls: Vec<Call> = store.calls(Some(&site.id), from, last, 1_000_000).await.map_err(|e| e.to_string())?;
    Ok((fit(&visits, &calls, days, site.timezone)?, visits))
}

/// The settings a site runs with now, for a model fitted to its traffic.
pub fn site_settings(site: &crate::config::SiteConfig, fit: &Fit) -> super::model::Settings {
    super::model::Settings {
        pool_size: site.rules.max_numbers,
        delay_to_show: site.delay_to_show,
        reclaim_after_idle: site.rules.reclaim_after_idle,
        max_hold: site.rules.max_hold,
        release_grace: site.rules.release_grace,
        recent_window: site.windows.recent,
        repeat_window: site.windows.repeat,
        track_sources: tracked_sources(fit),
        repeat_first: site.windows.repeat_first,
    }
}

/// The site's accuracy now and the smallest pool reaching `target` correct with at most
/// `max_wrong` wrong among a few sizes around the current one (or the best of them): what the
/// report page shows. Runs for a while (seconds; about fifteen for a site of 100,000 visitors a day):
/// call it off the async threads.
pub fn advice(
    model: &TrafficModel,
    now: &super::model::Settings,
    target: f64,
    max_wrong: f64,
) -> (super::Point, super::Point) {
    let n = now.pool_size.max(1);
    let mut pools: Vec<u32> =
        [n / 2, n, n * 3 / 2, n * 2, n * 3, n * 4, n * 6].into_iter().filter(|p| *p >= 1).collect();
    pools.sort_unstable();
    pools.dedup();
    let grid = super::Grid { pools, delays: vec![now.delay_to_show], holds: vec![now.reclaim_after_idle] };
    // A page request waits for this: big sites get fewer simulated days and one seed (a day of
    // 100,000 visitors takes about two seconds per setting).
    let (days, seeds): (u32, &[u64]) = if model.visitors_per_day > 20_000.0 { (2, &[1]) } else { (8, &[1, 2]) };
    let points = super::sweep(model, now, &grid, days, 1, seeds);
    let current = points.iter().find(|p| p.settings.pool_size == n).cloned().expect("the grid holds the current size");
    let best = super::advise(&points, target, max_wrong)
        .or_else(|| points.iter().max_by(|a, b| a.accuracy().total_cmp(&b.accuracy())))
        .cloned()
        .expect("the grid is not empty");
    (current, best)
}

/// The sources a fitted model tracks (its `track_sources` setting).
pub fn tracked_sources(fit: &Fit) -> Vec<String> {
    if fit.tracked_share >= 1.0 {
        Vec::new()
    } else {
        vec!["tracked".into()]
    }
}

/// How many of `visits` came from each source (for the fit's summary).
pub fn sources(visits: &[VisitRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in visits {
        *out.entry(v.source.clone()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::population::Population;
    use super::*;

    /// A synthetic population's visits, as the hub would have recorded them.
    fn recorded(pop: &Population) -> Vec<VisitRecord> {
        pop.visitors
            .iter()
            .enumerate()
            .map(|(i, v)| VisitRecord {
                visitor: format!("v{i}"),
                first_seen: super::super::engine::START.as_millis() + v.arrive,
                last_active: super::super::engine::START.as_millis() + v.arrive + v.active,
                closed: super::super::engine::START.as_millis() + v.close(),
                tabs: u32::from(v.tabs),
                source: "google".into(),
                tracked: true,
                ..Default::default()
            })
            .collect()
    }

    /// Share of visits active less than 40 s, median activity of the others, share with an idle tab.
    fn shape(visits: &[VisitRecord]) -> (f64, f64, f64) {
        let n = visits.len() as f64;
        let mut engaged: Vec<i64> =
            visits.iter().map(|v| v.last_active - v.first_seen).filter(|a| *a >= BOUNCE_MS).collect();
        engaged.sort_unstable();
        let short = visits.iter().filter(|v| v.last_active - v.first_seen < BOUNCE_MS).count() as f64 / n;
        let idle = visits.iter().filter(|v| v.closed - v.last_active > IDLE_TAB_MS).count() as f64 / n;
        (short, engaged[engaged.len() / 2] as f64, idle)
    }

    #[test]
    fn traffic_drawn_from_a_fit_looks_like_the_recorded_traffic() {
        let pop = Population::generate(&TrafficModel::small_shop(), 14, 5);
        let seen = recorded(&pop);
        let fit = fit(&seen, &[], 14.0, chrono_tz::UTC).unwrap();
        let again = recorded(&Population::generate(&fit.model, 14, 6));
        let close = |got: f64, want: f64, tol: f64| (got - want).abs() <= tol * want.abs().max(1e-9);
        assert!(close(again.len() as f64, seen.len() as f64, 0.05), "{} vs {}", again.len(), seen.len());
        let (s1, m1, i1) = shape(&seen);
        let (s2, m2, i2) = shape(&again);
        assert!(close(s2, s1, 0.05), "short visits {s2} vs {s1}");
        assert!(close(m2, m1, 0.05), "median activity {m2} vs {m1}");
        assert!(close(i2, i1, 0.15), "idle tabs {i2} vs {i1}");
        let m = &fit.model;
        let peak = m.hourly.iter().cloned().fold(0.0, f64::max);
        assert!(m.hourly[3] < peak / 5.0, "nights are quiet: {:?}", m.hourly);
        assert!(m.sources.iter().any(|(s, w)| s == "tracked" && *w == 1.0));
        assert!(super::super::model::check(m, &Default::default()).is_empty());
        assert!(super::fit(&seen[..10], &[], 1.0, chrono_tz::UTC).is_err(), "too few visits");
    }

    #[test]
    fn advice_compares_the_current_pool_with_bigger_ones() {
        let model = TrafficModel { visitors_per_day: 600.0, call_share: 0.1, ..TrafficModel::small_shop() };
        let now = super::super::model::Settings { pool_size: 2, ..Default::default() };
        let (current, best) = advice(&model, &now, 0.95, 0.01);
        assert_eq!(current.settings.pool_size, 2);
        assert!(best.settings.pool_size > 2, "two numbers are too few for 600 visitors a day");
        assert!(best.accuracy() > current.accuracy() + 0.1, "{} vs {}", best.accuracy(), current.accuracy());
    }
}
