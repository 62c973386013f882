//! The traffic simulator: how many calls a site's pool and settings attribute correctly, before
//! buying numbers. A [`population::Population`] (synthetic from a [`model::TrafficModel`] and a
//! seed, or read from a file) is replayed through the real pool rules and the real call matcher
//! ([`engine::run`]); [`sweep`] runs a grid of settings over several seeds, and [`advise`] picks
//! the smallest pool that reaches a target. Deterministic for given seeds.

pub mod engine;
pub mod fit;
pub mod model;
pub mod population;

use std::fmt::Write as _;
use std::time::Duration;

use engine::Outcome;
use model::{Settings, TrafficModel};
use population::Population;

/// The settings a sweep varies: pool size × delay × hold (`reclaim_after_idle`).
#[derive(Clone, Debug)]
pub struct Grid {
    pub pools: Vec<u32>,
    pub delays: Vec<Duration>,
    pub holds: Vec<Duration>,
}

/// One point of a sweep: its settings and the outcome of each seed.
#[derive(Clone, Debug)]
pub struct Point {
    pub settings: Settings,
    pub outcomes: Vec<Outcome>,
}

impl Point {
    fn mean(&self, f: impl Fn(&Outcome) -> f64) -> f64 {
        self.outcomes.iter().map(f).sum::<f64>() / self.outcomes.len().max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.mean(Outcome::accuracy)
    }

    pub fn wrong(&self) -> f64 {
        self.mean(Outcome::wrong_share)
    }

    /// The lowest and highest accuracy over the seeds.
    pub fn accuracy_range(&self) -> (f64, f64) {
        let a = self.outcomes.iter().map(Outcome::accuracy);
        (a.clone().fold(f64::INFINITY, f64::min), a.fold(f64::NEG_INFINITY, f64::max))
    }

    pub fn wrong_range(&self) -> (f64, f64) {
        let w = self.outcomes.iter().map(Outcome::wrong_share);
        (w.clone().fold(f64::INFINITY, f64::min), w.fold(f64::NEG_INFINITY, f64::max))
    }
}

/// Runs every point of `grid` (the rest from `base`) on one population per seed. The
/// populations are shared by all points, so points differ only by their settings. Uses two
/// threads; the result does not depend on them.
pub fn sweep(model: &TrafficModel, base: &Settings, grid: &Grid, days: u32, warmup: u32, seeds: &[u64]) -> Vec<Point> {
    let populations: Vec<Population> = seeds.iter().map(|s| Population::generate(model, days, *s)).collect();
    let mut points = Vec::new();
    for &delay in &grid.delays {
        for &hold in &grid.holds {
            for &pool in &grid.pools {
                let settings =
                    Settings { pool_size: pool, delay_to_show: delay, reclaim_after_idle: hold, ..base.clone() };
                points.push(Point { settings, outcomes: Vec::new() });
            }
        }
    }
    let jobs: Vec<(usize, usize)> =
        (0..points.len()).flat_map(|p| (0..populations.len()).map(move |s| (p, s))).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
    let results: Vec<(usize, usize, Outcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (jobs, points, populations) = (&jobs, &points, &populations);
                scope.spawn(move || {
                    jobs.iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|&(p, s)| (p, s, engine::run(&populations[s], &points[p].settings, warmup)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a simulation thread does not panic")).collect()
    });
    let mut sorted = results;
    sorted.sort_by_key(|(p, s, _)| (*p, *s));
    for (p, _, outcome) in sorted {
        points[p].outcomes.push(outcome);
    }
    points
}

/// The smallest pool (then the best accuracy) among `points` whose mean accuracy is at least
/// `target` and whose mean misattribution is at most `max_wrong`.
pub fn advise(points: &[Point], target: f64, max_wrong: f64) -> Option<&Point> {
    points.iter().filter(|p| p.accuracy() >= target && p.wrong() <= max_wrong).min_by(|a, b| {
        a.settings
            .pool_size
            .cmp(&b.settings.pool_size)
            .then(b.accuracy().partial_cmp(&a.accuracy()).unwrap_or(std::cmp::Ordering::Equal))
    })
}

/// The advice in one sentence, for the command line and the report page alike: "With 14
/// numbers instead of 9 you would attribute 96% instead of 81% (0.5% instead of 2.1% to the
/// wrong visitor)." — or, when `best` is the current size, what the site attributes now.
pub fn advice_text(current: &Point, best: &Point) -> String {
    let whole = |x: f64| format!("{:.0}%", x * 100.0);
    let wrong = |x: f64| format!("{:.1}%", x * 100.0);
    if best.settings.pool_size == current.settings.pool_size {
        format!(
            "With its {} numbers the site attributes {} of calls correctly ({} to the wrong visitor); more numbers would not help much.",
            current.settings.pool_size,
            whole(current.accuracy()),
            wrong(current.wrong())
        )
    } else {
        format!(
            "With {} numbers instead of {} you would attribute {} instead of {} ({} instead of {} to the wrong visitor).",
            best.settings.pool_size,
            current.settings.pool_size,
            whole(best.accuracy()),
            whole(current.accuracy()),
            wrong(best.wrong()),
            wrong(current.wrong())
        )
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A one-run report for people.
pub fn describe(o: &Outcome) -> String {
    let mut s = String::new();
    let share = |n: u64| if o.calls == 0 { "—".to_owned() } else { pct(n as f64 / o.calls as f64) };
    let _ = writeln!(s, "visitors (after warm-up)   {}", o.visitors);
    let _ = writeln!(s, "calls from tracked traffic {}", o.calls);
    let _ = writeln!(s, "  correct                  {:>7}  {}", o.correct, share(o.correct));
    let _ = writeln!(s, "  WRONG visitor            {:>7}  {}", o.wrong, share(o.wrong));
    let _ = writeln!(s, "  untracked default_before {:>7}  {}", o.default_before, share(o.default_before));
    let _ = writeln!(s, "  untracked default_after  {:>7}  {}", o.default_after, share(o.default_after));
    let _ = writeln!(s, "  unmatched                {:>7}  {}", o.unmatched, share(o.unmatched));
    let _ = writeln!(s, "calls from untracked traffic (static number) {}", o.static_calls);
    let _ = writeln!(
        s,
        "background calls (never visited) {}, attributed to a visitor: {}",
        o.background, o.background_attributed
    );
    let _ = writeln!(s, "pool exhausted during {} minutes", o.exhausted_minutes);
    let _ = writeln!(s, "numbers in use: peak {}, p95 {}", o.peak_in_use, o.p95_in_use);
    s
}

/// The sweep as a table for people.
pub fn table(points: &[Point]) -> String {
    let mut s =
        String::from("pool  delay   hold     correct (min–max)         wrong (min–max)        exhausted min  peak\n");
    for p in points {
        let (alo, ahi) = p.accuracy_range();
        let (wlo, whi) = p.wrong_range();
        let exhausted = p.outcomes.iter().map(|o| o.exhausted_minutes).sum::<u64>() / p.outcomes.len().max(1) as u64;
        let peak = p.outcomes.iter().map(|o| o.peak_in_use).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "{:>4}  {:<6}  {:<7}  {:>6} ({:>6}–{:>6})  {:>6} ({:>5}–{:>5})  {:>13}  {:>4}",
            p.settings.pool_size,
            human(p.settings.delay_to_show),
            human(p.settings.reclaim_after_idle),
            pct(p.accuracy()),
            pct(alo),
            pct(ahi),
            pct(p.wrong()),
            pct(wlo),
            pct(whi),
            exhausted,
            peak
        );
    }
    s
}

/// The sweep as CSV: one line per point and seed.
pub fn csv(points: &[Point], seeds: &[u64]) -> String {
    let mut s = String::from("pool_size,delay_to_show_s,reclaim_after_idle_s,seed,calls,correct,wrong,default_before,default_after,unmatched,static_calls,background,accuracy,wrong_share,exhausted_minutes,peak_in_use,p95_in_use\n");
    for p in points {
        for (o, seed) in p.outcomes.iter().zip(seeds) {
            let _ = writeln!(
                s,
                "{},{},{},{seed},{},{},{},{},{},{},{},{},{:.4},{:.4},{},{},{}",
                p.settings.pool_size,
                p.settings.delay_to_show.as_secs(),
                p.settings.reclaim_after_idle.as_secs(),
                o.calls,
                o.correct,
                o.wrong,
                o.default_before,
                o.default_after,
                o.unmatched,
                o.static_calls,
                o.background,
                o.accuracy(),
                o.wrong_share(),
                o.exhausted_minutes,
                o.peak_in_use,
                o.p95_in_use
            );
        }
    }
    s
}

/// The sweep as an SVG chart: accuracy (solid) and misattribution (dashed) against pool size,
/// one colour per (delay, hold).
pub fn svg(points: &[Point], title: &str) -> String {
    const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
    let (w, h, left, right, top, bottom) = (860.0_f64, 480.0_f64, 60.0, 220.0, 40.0, 50.0);
    let max_pool = points.iter().map(|p| p.settings.pool_size).max().unwrap_or(1).max(1) as f64;
    let min_pool = points.iter().map(|p| p.settings.pool_size).min().unwrap_or(0) as f64;
    let span = (max_pool - min_pool).max(1.0);
    let x = |pool: u32| left + (f64::from(pool) - min_pool) / span * (w - left - right);
    let y = |share: f64| top + (1.0 - share) * (h - top - bottom);
    let mut series: Vec<((Duration, Duration), Vec<&Point>)> = Vec::new();
    for p in points {
        let key = (p.settings.delay_to_show, p.settings.reclaim_after_idle);
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(p),
            None => series.push((key, vec![p])),
        }
    }
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/><text x="{left}" y="22" font-size="15">{title}</text>
"#
    );
    for i in 0..=10 {
        let share = f64::from(i) / 10.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{}%</text>"##,
            w - right,
            left - 6.0,
            y(share) + 4.0,
            i * 10,
            y = y(share)
        );
    }
    let mut pools: Vec<u32> = points.iter().map(|p| p.settings.pool_size).collect();
    pools.sort_unstable();
    pools.dedup();
    for pool in &pools {
        let _ =
            writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{pool}</text>"#, x(*pool), h - bottom + 18.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">numbers in the pool</text>"#,
        (left + w - right) / 2.0,
        h - 10.0
    );
    for (i, ((delay, hold), pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let line = |f: &dyn Fn(&Point) -> f64| -> String {
            pts.iter().map(|p| format!("{:.1},{:.1}", x(p.settings.pool_size), y(f(p)))).collect::<Vec<_>>().join(" ")
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line(&|p| p.accuracy())
        );
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="5,4" points="{}"/>"#,
            line(&|p| p.wrong())
        );
        let ly = top + 20.0 + i as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">delay {}, hold {}</text>"#,
            w - right + 12.0,
            w - right + 36.0,
            w - right + 42.0,
            ly + 4.0,
            human(*delay),
            human(*hold)
        );
    }
    let ly = top + 30.0 + series.len() as f64 * 18.0;
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{ly}">solid: attributed correctly</text><text x="{}" y="{}">dashed: wrong visitor</text>"##,
        w - right + 12.0,
        w - right + 12.0,
        ly + 16.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TrafficModel {
        TrafficModel { visitors_per_day: 400.0, call_share: 0.1, ..TrafficModel::small_shop() }
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let m = small();
        let a = engine::run(&Population::generate(&m, 3, 7), &Settings::default(), 1);
        let b = engine::run(&Population::generate(&m, 3, 7), &Settings::default(), 1);
        assert_eq!(a, b);
        assert!(a.calls > 0, "{a:?}");
        let c = engine::run(&Population::generate(&m, 3, 8), &Settings::default(), 1);
        assert_ne!(a, c, "another seed, another population");
    }

    #[test]
    fn an_unbounded_pool_without_delay_attributes_every_call_made_during_the_visit() {
        let m = TrafficModel {
            call_during: 1.0,
            call_after: 0.0,
            call_later: 0.0,
            repeat_share: 0.0,
            background_calls_per_day: 0.0,
            ..small()
        };
        let s = Settings { pool_size: 400, delay_to_show: Duration::ZERO, ..Settings::default() };
        let o = engine::run(&Population::generate(&m, 3, 1), &s, 1);
        assert!(o.calls > 50, "{o:?}");
        assert_eq!((o.correct, o.wrong, o.exhausted_minutes), (o.calls, 0, 0), "{o:?}");
    }

    #[test]
    fn one_number_under_heavy_traffic_misattributes_many_calls() {
        let m = TrafficModel { visitors_per_day: 3000.0, call_share: 0.05, ..TrafficModel::small_shop() };
        // The number changes hands quickly, and callers dial it minutes after they left.
        let s = Settings {
            pool_size: 1,
            delay_to_show: Duration::ZERO,
            reclaim_after_idle: Duration::from_secs(120),
            release_grace: Duration::ZERO,
            ..Settings::default()
        };
        let o = engine::run(&Population::generate(&m, 4, 3), &s, 1);
        // Most callers never see the number, and a large share of the calls attributed at all
        // go to the wrong visitor; with enough numbers most calls are attributed correctly.
        let wrong_of_attributed = |o: &Outcome| o.wrong as f64 / (o.wrong + o.correct).max(1) as f64;
        assert!(o.accuracy() < 0.1, "{o:?}");
        assert!(wrong_of_attributed(&o) >= 0.2, "{o:?}");
        let plenty = engine::run(&Population::generate(&m, 4, 3), &Settings { pool_size: 60, ..s }, 1);
        assert!(plenty.accuracy() > 0.5, "{plenty:?}");
    }

    #[test]
    fn accuracy_does_not_fall_as_the_pool_grows() {
        let grid = Grid {
            pools: vec![2, 4, 8, 16, 32],
            delays: vec![Duration::from_secs(30)],
            holds: vec![Duration::from_secs(1800)],
        };
        let points = sweep(&small(), &Settings::default(), &grid, 4, 1, &[1, 2, 3]);
        let acc: Vec<f64> = points.iter().map(Point::accuracy).collect();
        for pair in acc.windows(2) {
            assert!(pair[1] >= pair[0] - 0.02, "accuracy by pool size: {acc:?}");
        }
        assert!(acc[4] > acc[0] + 0.1, "a bigger pool helps: {acc:?}");
        let best = advise(&points, 0.0, 1.0).unwrap();
        assert_eq!(best.settings.pool_size, 2, "the smallest pool that meets a trivial target");
        assert!(advise(&points, 1.01, 0.0).is_none());
        let chart = svg(&points, "test");
        assert!(chart.starts_with("<svg") && chart.contains("polyline"));
        assert_eq!(csv(&points, &[1, 2, 3]).lines().count(), 1 + 5 * 3);
    }

    #[test]
    fn a_population_written_out_and_read_back_gives_the_same_outcome() {
        let pop = Population::generate(&small(), 3, 11);
        let mut buf = Vec::new();
        pop.write(&mut buf).unwrap();
        let back = Population::read(std::io::BufReader::new(buf.as_slice())).unwrap();
        assert_eq!(back, pop);
        assert_eq!(engine::run(&back, &Settings::default(), 1), engine::run(&pop, &Settings::default(), 1));
        let bad = String::from_utf8(buf).unwrap().replacen("\"source\":", "\"sauce\":", 1);
        assert!(Population::read(std::io::BufReader::new(bad.as_bytes())).unwrap_err().starts_with("line 2:"));
    }
}
