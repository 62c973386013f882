//! The traffic model (who comes, how long they stay, who calls and when) and the settings under
//! test (pool size, timeline, match windows, filter), read from TOML with documented defaults and
//! a few named presets. See docs/SIMULATION.md for the reasoning behind each default.

use std::time::Duration;

use serde::Deserialize;

/// A log-normal distribution given by its median and the standard deviation of its logarithm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogNormal {
    pub median: Duration,
    pub sigma: f64,
}

/// Who visits a site and how they behave.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficModel {
    pub visitors_per_day: f64,
    /// Relative weight of each hour of the day (site's local time), 24 values.
    pub hourly: [f64; 24],
    /// Factor per weekday, Monday first.
    pub weekday: [f64; 7],
    /// Share of visitors who leave within `early_leave_max` (bounces).
    pub early_leave_share: f64,
    pub early_leave_max: Duration,
    /// How long the others stay active.
    pub dwell: LogNormal,
    /// Mean number of extra tabs a visitor opens (each extra tab is one more connection).
    pub extra_tabs_mean: f64,
    /// Share of visitors who leave a tab open without activity after they are done.
    pub idle_tab_share: f64,
    pub idle_tab: LogNormal,
    /// Share of visitors who call (drawn among those who did not bounce).
    pub call_share: f64,
    /// Of the callers: share calling during the visit, minutes after leaving, and days later
    /// (from a written-down number); they sum to 1.
    pub call_during: f64,
    pub call_after: f64,
    pub call_later: f64,
    /// How long after leaving the "after" callers dial.
    pub after_leave: LogNormal,
    /// When the "later" callers dial, uniformly between these.
    pub later_min: Duration,
    pub later_max: Duration,
    /// Share of callers who call the same number again, uniformly between the two.
    pub repeat_share: f64,
    pub repeat_min: Duration,
    pub repeat_max: Duration,
    /// Calls per day to the site's number from people who never visited (print ads, old customers).
    pub background_calls_per_day: f64,
    /// Traffic sources and their shares (for the traffic filter).
    pub sources: Vec<(String, f64)>,
    /// Recorded visits, when the model was fitted to a site's traffic: each visitor's activity
    /// and idle tab are drawn from these (activity ms, idle-tab ms) pairs instead of the
    /// distributions above, so the simulated visits look like the site's own.
    pub recorded_visits: Vec<(i64, i64)>,
}

/// The settings a run tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub pool_size: u32,
    pub delay_to_show: Duration,
    pub reclaim_after_idle: Duration,
    pub max_hold: Duration,
    pub release_grace: Duration,
    pub recent_window: Duration,
    pub repeat_window: Duration,
    /// Tracked sources; empty: every visitor is tracked.
    pub track_sources: Vec<String>,
    /// A caller redialling the same number goes to their earlier visitor first ([`crate::calls::matcher::MatchRules`]).
    pub repeat_first: bool,
}

impl Settings {
    /// "14 numbers, delay 50s, hold 30m": what a sweep varies, for people.
    pub fn label(&self) -> String {
        format!(
            "{} numbers, delay {}, hold {}",
            self.pool_size,
            humantime::format_duration(self.delay_to_show),
            humantime::format_duration(self.reclaim_after_idle)
        )
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            pool_size: 10,
            delay_to_show: Duration::from_secs(50),
            reclaim_after_idle: Duration::from_secs(30 * 60),
            max_hold: Duration::from_secs(4 * 3600),
            release_grace: Duration::from_secs(120),
            recent_window: Duration::from_secs(24 * 3600),
            repeat_window: Duration::from_secs(30 * 86_400),
            track_sources: Vec::new(),
            repeat_first: false,
        }
    }
}

/// A typical business day on a site: quiet at night, peaks late morning and early afternoon
/// (weights, not shares).
const OFFICE_HOURS: [f64; 24] = [
    0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.4, 2.0, 2.4, 2.5, 2.3, 2.4, 2.4, 2.2, 2.0, 1.8, 1.6, 1.5, 1.3, 1.0, 0.7,
    0.4,
];
/// Media traffic: flatter, with an evening peak.
const MEDIA_HOURS: [f64; 24] = [
    0.6, 0.4, 0.3, 0.2, 0.2, 0.3, 0.6, 1.0, 1.3, 1.4, 1.4, 1.4, 1.5, 1.4, 1.4, 1.4, 1.5, 1.6, 1.8, 2.0, 2.1, 2.0, 1.6,
    1.0,
];

/// The named presets: `small-shop`, `lead-gen`, `media`.
pub const PRESETS: [&str; 3] = ["small-shop", "lead-gen", "media"];

impl TrafficModel {
    /// A small online shop: 1,500 visitors a day, office hours, 3 % call.
    pub fn small_shop() -> TrafficModel {
        TrafficModel {
            visitors_per_day: 1500.0,
            hourly: OFFICE_HOURS,
            weekday: [1.1, 1.1, 1.05, 1.05, 1.0, 0.8, 0.7],
            early_leave_share: 0.35,
            early_leave_max: Duration::from_secs(40),
            dwell: LogNormal { median: Duration::from_secs(150), sigma: 1.1 },
            extra_tabs_mean: 0.3,
            idle_tab_share: 0.1,
            idle_tab: LogNormal { median: Duration::from_secs(3600), sigma: 0.8 },
            call_share: 0.03,
            call_during: 0.7,
            call_after: 0.29,
            call_later: 0.01,
            after_leave: LogNormal { median: Duration::from_secs(600), sigma: 1.0 },
            later_min: Duration::from_secs(86_400),
            later_max: Duration::from_secs(7 * 86_400),
            repeat_share: 0.15,
            repeat_min: Duration::from_secs(86_400),
            repeat_max: Duration::from_secs(14 * 86_400),
            background_calls_per_day: 8.0,
            sources: vec![
                ("google".into(), 0.35),
                ("yandex".into(), 0.35),
                ("direct".into(), 0.2),
                ("other".into(), 0.1),
            ],
            recorded_visits: Vec::new(),
        }
    }

    /// A lead-generation landing page: fewer visitors who stay briefly and call more often.
    pub fn lead_gen() -> TrafficModel {
        TrafficModel {
            visitors_per_day: 600.0,
            early_leave_share: 0.45,
            dwell: LogNormal { median: Duration::from_secs(90), sigma: 0.9 },
            extra_tabs_mean: 0.1,
            idle_tab_share: 0.05,
            call_share: 0.08,
            call_during: 0.75,
            call_after: 0.24,
            call_later: 0.01,
            background_calls_per_day: 2.0,
            sources: vec![("google".into(), 0.5), ("yandex".into(), 0.45), ("other".into(), 0.05)],
            ..TrafficModel::small_shop()
        }
    }

    /// A high-traffic media site: many short visits, few calls.
    pub fn media() -> TrafficModel {
        TrafficModel {
            visitors_per_day: 100_000.0,
            hourly: MEDIA_HOURS,
            weekday: [1.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9],
            early_leave_share: 0.55,
            dwell: LogNormal { median: Duration::from_secs(100), sigma: 1.2 },
            extra_tabs_mean: 0.5,
            idle_tab_share: 0.15,
            call_share: 0.002,
            background_calls_per_day: 20.0,
            sources: vec![
                ("google".into(), 0.3),
                ("yandex".into(), 0.3),
                ("social".into(), 0.25),
                ("direct".into(), 0.15),
            ],
            ..TrafficModel::small_shop()
        }
    }

    pub fn preset(name: &str) -> Option<TrafficModel> {
        match name {
            "small-shop" => Some(TrafficModel::small_shop()),
            "lead-gen" => Some(TrafficModel::lead_gen()),
            "media" => Some(TrafficModel::media()),
            _ => None,
        }
    }
}

/// A simulation file: `preset` (default small-shop), then `[traffic]` fields overriding it and
/// `[settings]`; every field optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    preset: Option<String>,
    #[serde(default)]
    traffic: RawTraffic,
    #[serde(default)]
    settings: RawSettings,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogNormal {
    median: String,
    sigma: f64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    visitors_per_day: Option<f64>,
    hourly: Option<Vec<f64>>,
    weekday: Option<Vec<f64>>,
    early_leave_share: Option<f64>,
    early_leave_max: Option<String>,
    dwell: Option<RawLogNormal>,
    extra_tabs_mean: Option<f64>,
    idle_tab_share: Option<f64>,
    idle_tab: Option<RawLogNormal>,
    call_share: Option<f64>,
    call_during: Option<f64>,
    call_after: Option<f64>,
    call_later: Option<f64>,
    after_leave: Option<RawLogNormal>,
    later_min: Option<String>,
    later_max: Option<String>,
    repeat_share: Option<f64>,
    repeat_min: Option<String>,
    repeat_max: Option<String>,
    background_calls_per_day: Option<f64>,
    sources: Option<std::collections::BTreeMap<String, f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    pool_size: Option<u32>,
    delay_to_show: Option<String>,
    reclaim_after_idle: Option<String>,
    max_hold: Option<String>,
    release_grace: Option<String>,
    recent_window: Option<String>,
    repeat_window: Option<String>,
    track_sources: Option<Vec<String>>,
    repeat_first: Option<bool>,
}

/// Reads a simulation file; every problem is listed, each naming its field.
pub fn parse(text: &str) -> Result<(TrafficModel, Settings), Vec<String>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| vec![e.to_string().trim_end().to_owned()])?;
    let mut problems = Vec::new();
    let preset = raw.preset.unwrap_or_else(|| "small-shop".into());
    let mut m = TrafficModel::preset(&preset).unwrap_or_else(|| {
        problems.push(format!("preset: {preset:?} is not one of {}", PRESETS.join(", ")));
        TrafficModel::small_shop()
    });
    let t = raw.traffic;
    let p = &mut problems;
    for (field, v, into) in [
        ("traffic.dwell", t.dwell, &mut m.dwell),
        ("traffic.idle_tab", t.idle_tab, &mut m.idle_tab),
        ("traffic.after_leave", t.after_leave, &mut m.after_leave),
    ] {
        if let Some(r) = v {
            duration(p, &format!("{field}.median"), Some(r.median), &mut into.median);
            into.sigma = r.sigma;
        }
    }
    duration(p, "traffic.early_leave_max", t.early_leave_max, &mut m.early_leave_max);
    duration(p, "traffic.later_min", t.later_min, &mut m.later_min);
    duration(p, "traffic.later_max", t.later_max, &mut m.later_max);
    duration(p, "traffic.repeat_min", t.repeat_min, &mut m.repeat_min);
    duration(p, "traffic.repeat_max", t.repeat_max, &mut m.repeat_max);
    let mut s = Settings::default();
    let rs = raw.settings;
    duration(p, "settings.delay_to_show", rs.delay_to_show, &mut s.delay_to_show);
    duration(p, "settings.reclaim_after_idle", rs.reclaim_after_idle, &mut s.reclaim_after_idle);
    duration(p, "settings.max_hold", rs.max_hold, &mut s.max_hold);
    duration(p, "settings.release_grace", rs.release_grace, &mut s.release_grace);
    duration(p, "settings.recent_window", rs.recent_window, &mut s.recent_window);
    duration(p, "settings.repeat_window", rs.repeat_window, &mut s.repeat_window);
    for (field, v, into) in [
        ("traffic.visitors_per_day", t.visitors_per_day, &mut m.visitors_per_day),
        ("traffic.early_leave_share", t.early_leave_share, &mut m.early_leave_share),
        ("traffic.extra_tabs_mean", t.extra_tabs_mean, &mut m.extra_tabs_mean),
        ("traffic.idle_tab_share", t.idle_tab_share, &mut m.idle_tab_share),
        ("traffic.call_share", t.call_share, &mut m.call_share),
        ("traffic.call_during", t.call_during, &mut m.call_during),
        ("traffic.call_after", t.call_after, &mut m.call_after),
        ("traffic.call_later", t.call_later, &mut m.call_later),
        ("traffic.repeat_share", t.repeat_share, &mut m.repeat_share),
        ("traffic.background_calls_per_day", t.background_calls_per_day, &mut m.background_calls_per_day),
    ] {
        if let Some(v) = v {
            if !v.is_finite() || v < 0.0 {
                p.push(format!("{field}: must be a number ≥ 0"));
            }
            *into = v;
        }
    }
    if let Some(h) = t.hourly {
        match <[f64; 24]>::try_from(h.as_slice()) {
            Ok(a) => m.hourly = a,
            Err(_) => p.push(format!("traffic.hourly: {} values; give 24 (one per hour)", h.len())),
        }
    }
    if let Some(w) = t.weekday {
        match <[f64; 7]>::try_from(w.as_slice()) {
            Ok(a) => m.weekday = a,
            Err(_) => p.push(format!("traffic.weekday: {} values; give 7 (Monday first)", w.len())),
        }
    }
    if let Some(src) = t.sources {
        m.sources = src.into_iter().collect();
    }
    if let Some(n) = rs.pool_size {
        s.pool_size = n;
    }
    if let Some(t) = rs.track_sources {
        s.track_sources = t;
    }
    if let Some(r) = rs.repeat_first {
        s.repeat_first = r;
    }
    problems.extend(check(&m, &s));
    if problems.is_empty() {
        Ok((m, s))
    } else {
        Err(problems)
    }
}

fn duration(problems: &mut Vec<String>, field: &str, v: Option<String>, into: &mut Duration) {
    if let Some(text) = v {
        match humantime::parse_duration(&text) {
            Ok(d) => *into = d,
            Err(e) => problems.push(format!("{field}: {text:?} is not a duration ({e})")),
        }
    }
}

/// What a model and settings must satisfy.
pub fn check(m: &TrafficModel, s: &Settings) -> Vec<String> {
    let mut p = Vec::new();
    for (name, share) in [
        ("early_leave_share", m.early_leave_share),
        ("idle_tab_share", m.idle_tab_share),
        ("call_share", m.call_share),
        ("repeat_share", m.repeat_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            p.push(format!("traffic.{name}: {share} is not a share between 0 and 1"));
        }
    }
    let when = m.call_during + m.call_after + m.call_later;
    if (when - 1.0).abs() > 1e-6 {
        p.push(format!("traffic.call_during + call_after + call_later = {when}; they must sum to 1"));
    }
    if m.hourly.iter().sum::<f64>() <= 0.0 || m.hourly.iter().any(|h| *h < 0.0) {
        p.push("traffic.hourly: weights must be ≥ 0 and not all 0".into());
    }
    if m.sources.is_empty() || m.sources.iter().map(|(_, w)| *w).sum::<f64>() <= 0.0 {
        p.push("traffic.sources: give at least one source with a share above 0".into());
    }
    if m.later_min > m.later_max || m.repeat_min > m.repeat_max {
        p.push("traffic: later_min/repeat_min must not exceed later_max/repeat_max".into());
    }
    if s.pool_size == 0 {
        p.push("settings.pool_size: must be at least 1".into());
    }
    if s.reclaim_after_idle.is_zero() || s.max_hold.is_zero() {
        p.push("settings: reclaim_after_idle and max_hold must be longer than zero".into());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_its_preset_and_names_bad_fields() {
        let (m, s) = parse(
            "preset = \"lead-gen\"\n[traffic]\nvisitors_per_day = 900\n[settings]\npool_size = 7\ndelay_to_show = \"20s\"\n",
        )
        .unwrap();
        assert_eq!((m.visitors_per_day, m.call_share), (900.0, 0.08));
        assert_eq!((s.pool_size, s.delay_to_show), (7, Duration::from_secs(20)));
        let e = parse("preset = \"nope\"\n[traffic]\ncall_share = 2\nhourly = [1]\n[settings]\nmax_hold = \"x\"\n")
            .unwrap_err();
        assert!(e.iter().any(|p| p.starts_with("preset:")), "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("settings.max_hold:")), "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("traffic.hourly:")), "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("traffic.call_share:")), "{e:?}");
        assert!(parse("[traffic]\nunknown = 1\n").is_err());
        for name in PRESETS {
            assert!(check(&TrafficModel::preset(name).unwrap(), &Settings::default()).is_empty(), "{name}");
        }
    }
}
