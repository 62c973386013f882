//! A population: every visitor of the simulated period (arrival, how long they stay active, an
//! idle tab left open, extra tabs, traffic source) and every call with its true caller, drawn
//! deterministically from a seed — or read back from a file written earlier (JSON lines), so a
//! population can be kept, inspected, and replayed against any settings.

use std::io::{BufRead, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::model::{LogNormal, TrafficModel};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// One visitor (times in ms from the population's start).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visitor {
    pub arrive: i64,
    /// How long the visitor is active (activity in some tab until then).
    pub active: i64,
    /// How long a tab stays open without activity afterwards (0: all tabs close at once).
    pub idle_tab: i64,
    /// Tabs open at once (at least 1).
    pub tabs: u8,
    /// Index into [`Population::sources`].
    pub source: u16,
}

impl Visitor {
    /// When the visitor's last tab closes.
    pub fn close(&self) -> i64 {
        self.arrive + self.active + self.idle_tab
    }
}

/// When a call is made, in the visitor's story.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    During,
    AfterLeaving,
    DaysLater,
    Repeat,
    /// From someone who never visited, to the site's own number.
    Background,
}

/// One call and its truth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCall {
    pub at: i64,
    /// The visitor who calls (index into `visitors`), or `None` for a background call.
    pub visitor: Option<u32>,
    /// The moment the caller read the number off the page (they dial what was shown then).
    pub noted: i64,
    pub when: When,
}

/// Everything a run replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Population {
    pub days: u32,
    pub sources: Vec<String>,
    pub visitors: Vec<Visitor>,
    /// Sorted by time.
    pub calls: Vec<PlannedCall>,
}

fn lognormal(rng: &mut ChaCha8Rng, d: LogNormal) -> i64 {
    // Box–Muller: one standard normal from two uniforms.
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (d.median.as_millis() as f64 * (d.sigma * z).exp()) as i64
}

fn between(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// A Poisson draw (Knuth's method for small means, a rounded normal for large ones).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 50.0 {
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        return (mean + z * mean.sqrt()).round().max(0.0) as u64;
    }
    let limit = (-mean).exp();
    let (mut k, mut p) = (0, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

impl Population {
    /// Draws `days` days of traffic (day 0 a Monday) from `model` with `seed`.
    pub fn generate(model: &TrafficModel, days: u32, seed: u64) -> Population {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let hour_total: f64 = model.hourly.iter().sum();
        let source_weights: Vec<f64> = model.sources.iter().map(|(_, w)| *w).collect();
        let call_share_engaged = (model.call_share / (1.0 - model.early_leave_share).max(0.01)).min(1.0);
        let mut visitors = Vec::new();
        let mut calls = Vec::new();
        for day in 0..days {
            let day_start = i64::from(day) * DAY_MS;
            let per_day = model.visitors_per_day * model.weekday[day as usize % 7];
            for (hour, weight) in model.hourly.iter().enumerate() {
                let n = poisson(&mut rng, per_day * weight / hour_total);
                for _ in 0..n {
                    let arrive = day_start + hour as i64 * HOUR_MS + between(&mut rng, 0, HOUR_MS);
                    let (bounced, active, idle_tab) = if model.recorded_visits.is_empty() {
                        let bounced = rng.random::<f64>() < model.early_leave_share;
                        let active = if bounced {
                            between(&mut rng, 1_000, model.early_leave_max.as_millis() as i64)
                        } else {
                            lognormal(&mut rng, model.dwell).max(1_000)
                        };
                        let idle_tab = if rng.random::<f64>() < model.idle_tab_share {
                            lognormal(&mut rng, model.idle_tab).max(1_000)
                        } else {
                            0
                        };
                        (bounced, active, idle_tab)
                    } else {
                        let (active, idle) = model.recorded_visits[rng.random_range(0..model.recorded_visits.len())];
                        (active < model.early_leave_max.as_millis() as i64, active.max(1_000), idle.max(0))
                    };
                    let tabs = 1 + poisson(&mut rng, model.extra_tabs_mean).min(20) as u8;
                    let source = pick(&mut rng, &source_weights) as u16;
                    let v = Visitor { arrive, active, idle_tab, tabs, source };
                    let index = visitors.len() as u32;
                    // Visitors who bounce do not call: the callers are drawn among the others, as
                    // many as `call_share` of all visitors.
                    if !bounced && rng.random::<f64>() < call_share_engaged {
                        let leave = arrive + active;
                        let (when, at, noted) =
                            match pick(&mut rng, &[model.call_during, model.call_after, model.call_later]) {
                                0 => {
                                    // Someone who calls from the page has read it first: in the
                                    // second half of the visit.
                                    let at = between(&mut rng, arrive + active / 2, leave);
                                    (When::During, at, at)
                                }
                                1 => (When::AfterLeaving, leave + lognormal(&mut rng, model.after_leave), leave - 1),
                                _ => {
                                    let later = between(
                                        &mut rng,
                                        model.later_min.as_millis() as i64,
                                        model.later_max.as_millis() as i64,
                                    );
                                    (When::DaysLater, leave + later, between(&mut rng, arrive, leave))
                                }
                            };
                        calls.push(PlannedCall { at, visitor: Some(index), noted, when });
                        if rng.random::<f64>() < model.repeat_share {
                            let again = between(
                                &mut rng,
                                model.repeat_min.as_millis() as i64,
                                model.repeat_max.as_millis() as i64,
                            );
                            calls.push(PlannedCall { at: at + again, visitor: Some(index), noted, when: When::Repeat });
                        }
                    }
                    visitors.push(v);
                }
            }
            for _ in 0..poisson(&mut rng, model.background_calls_per_day) {
                let at = day_start + between(&mut rng, 0, DAY_MS);
                calls.push(PlannedCall { at, visitor: None, noted: at, when: When::Background });
            }
        }
        calls.sort_by_key(|c| (c.at, c.visitor));
        Population { days, sources: model.sources.iter().map(|(s, _)| s.clone()).collect(), visitors, calls }
    }

    /// Writes the population as JSON lines: a header, then one line per visitor, then per call.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let header = serde_json::json!({"callpool_population": 1, "days": self.days, "sources": self.sources,
            "visitors": self.visitors.len(), "calls": self.calls.len()});
        writeln!(out, "{header}")?;
        for v in &self.visitors {
            writeln!(out, "{}", serde_json::to_string(v).map_err(std::io::Error::other)?)?;
        }
        for c in &self.calls {
            writeln!(out, "{}", serde_json::to_string(c).map_err(std::io::Error::other)?)?;
        }
        Ok(())
    }

    /// Reads what [`Population::write`] wrote; errors name the line.
    pub fn read(input: impl BufRead) -> Result<Population, String> {
        let mut lines = input.lines().enumerate();
        let (_, first) = lines.next().ok_or("the file is empty")?;
        let header: serde_json::Value =
            serde_json::from_str(&first.map_err(|e| e.to_string())?).map_err(|e| format!("line 1: {e}"))?;
        if header["callpool_population"] != 1 {
            return Err("line 1: not a callpool population file (version 1)".into());
        }
        let count = |k: &str| header[k].as_u64().ok_or(format!("line 1: {k} is missing"));
        let (nv, nc) = (count("visitors")? as usize, count("calls")? as usize);
        let days = count("days")? as u32;
        let sources: Vec<String> =
            serde_json::from_value(header["sources"].clone()).map_err(|e| format!("line 1: sources: {e}"))?;
        let mut visitors = Vec::with_capacity(nv);
        let mut calls = Vec::with_capacity(nc);
        for (i, line) in lines {
            let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
            if visitors.len() < nv {
                let v: Visitor = serde_json::from_str(&line).map_err(|e| format!("line {}: visitor: {e}", i + 1))?;
                if usize::from(v.source) >= sources.len() {
                    return Err(format!("line {}: source {} is not listed", i + 1, v.source));
                }
                visitors.push(v);
            } else {
                let c: PlannedCall = serde_json::from_str(&line).map_err(|e| format!("line {}: call: {e}", i + 1))?;
                if c.visitor.is_some_and(|v| v as usize >= nv) {
                    return Err(format!("line {}: the call names visitor {:?}, which is not listed", i + 1, c.visitor));
                }
                calls.push(c);
            }
        }
        if visitors.len() != nv || calls.len() != nc {
            return Err(format!("expected {nv} visitors and {nc} calls, found {} and {}", visitors.len(), calls.len()));
        }
        Ok(Population { days, sources, visitors, calls })
    }
}
