//! One run: a population replayed through the real pool rules ([`PoolState`]) and the real
//! matcher ([`Directory::decide`]) on a virtual clock, scored against the truth.
//!
//! The timeline is the hub's: a visit begins at arrival; `delay_to_show` later (if a tab is still
//! open) the visitor asks for a number, and asks again every 30 s while the pool is exhausted;
//! activity touches the lease every minute while the visitor is active; closing the last tab is
//! a leave. The reaper runs before every lease request and every call, and once a minute (when
//! it also samples the numbers in use). A caller dials the number their page showed at the
//! moment they noted it: the tracking number if their lease covered that moment, `default_after`
//! if their lease had ended for idleness or `max_hold`, `default_before` otherwise (before the
//! delay, or while the pool was exhausted), the static number if the filter did not track them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use callpool_pool::rules::PoolState;
use callpool_pool::{
    EndReason, Grant, LeaseId, NumberSpec, PhoneNumber, PoolSpec, SessionAttrs, SiteId, SiteRules, Ts, VisitorId,
};
use serde::Serialize;

use super::model::Settings;
use super::population::Population;
use crate::calls::matcher::{Directory, MatchRules, SiteNumbers};
use crate::calls::{CallerMemory, MatchKind};

/// Monday 2026-01-05 00:00 UTC: day 0 of every run.
pub const START: Ts = Ts::from_millis(1_767_571_200_000);
const MINUTE: i64 = 60_000;
/// The hub asks again this long after the pool was exhausted.
const RETRY_EXHAUSTED: i64 = 30_000;
/// Activity reaches the lease this often while the visitor is active.
const ACTIVITY_EVERY: i64 = 60_000;

/// What a run came to. Calls are counted from the end of the warm-up on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// Visitors who arrived after the warm-up.
    pub visitors: u64,
    /// Calls from visitors the site tracks (the base of the shares below).
    pub calls: u64,
    /// Attributed to the visitor who really called.
    pub correct: u64,
    /// Attributed to another visitor: worse than none.
    pub wrong: u64,
    pub default_before: u64,
    pub default_after: u64,
    pub unmatched: u64,
    /// Calls from visitors the filter does not track (they saw the static number).
    pub static_calls: u64,
    /// Calls from people who never visited (to the site's number).
    pub background: u64,
    /// Background calls attributed to some visitor (should stay 0).
    pub background_attributed: u64,
    /// Minutes in which at least one visitor found the pool exhausted.
    pub exhausted_minutes: u64,
    /// Numbers leased at once: the highest and the 95th percentile of per-minute samples.
    pub peak_in_use: u32,
    pub p95_in_use: u32,
}

impl Outcome {
    /// correct ÷ calls (1 without calls).
    pub fn accuracy(&self) -> f64 {
        if self.calls == 0 {
            1.0
        } else {
            self.correct as f64 / self.calls as f64
        }
    }

    /// wrong ÷ calls.
    pub fn wrong_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.wrong as f64 / self.calls as f64
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Tick,
    Arrive(u32),
    Show(u32),
    Touch(u32),
    Close(u32),
    Call(u32),
}

fn number(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).expect("the simulator's numbers are valid Moscow numbers")
}

/// Runs `pop` with `settings`; calls before `warmup_days` are not scored.
pub fn run(pop: &Population, settings: &Settings, warmup_days: u32) -> Outcome {
    let site = SiteId::new("sim").expect("a valid site id");
    let (before, after, static_number) = (number("+74951000001"), number("+74951000002"), number("+74951000003"));
    let numbers: Vec<PhoneNumber> =
        (0..settings.pool_size).map(|i| number(&format!("+7495{:07}", 2_000_000 + i))).collect();
    let windows = MatchRules {
        recent: settings.recent_window,
        repeat: settings.repeat_window,
        repeat_first: settings.repeat_first,
    };
    let dir = Directory::new(
        &[SiteNumbers {
            site: site.clone(),
            default_before: before.clone(),
            default_after: after.clone(),
            static_number: static_number.clone(),
            dedicated: numbers.clone(),
            windows,
        }],
        &[],
    );
    let spec = PoolSpec {
        numbers: numbers.iter().map(|n| NumberSpec { number: n.clone(), dedicated_to: Some(site.clone()) }).collect(),
        sites: vec![(
            site.clone(),
            SiteRules {
                max_numbers: settings.pool_size,
                reclaim_after_idle: settings.reclaim_after_idle,
                max_hold: settings.max_hold,
                release_grace: settings.release_grace,
                shrink_after: Duration::from_secs(86_400),
                cooldown: Duration::from_secs(7 * 86_400),
            },
        )],
        history_for: settings.recent_window.max(settings.repeat_window) + Duration::from_secs(86_400),
    };
    let mut pool = PoolState::new(false);
    pool.configure(&spec, START);

    let tracked_source: Vec<bool> = pop
        .sources
        .iter()
        .map(|s| settings.track_sources.is_empty() || settings.track_sources.iter().any(|t| t.eq_ignore_ascii_case(s)))
        .collect();
    let vid = |i: u32| VisitorId::new(format!("v{i}")).expect("a valid visitor id");
    let attrs = SessionAttrs::default();
    let delay = settings.delay_to_show.as_millis() as i64;
    let scored_from = START.as_millis() + i64::from(warmup_days) * 86_400_000;
    let end = START.as_millis() + i64::from(pop.days) * 86_400_000;

    let mut queue: BinaryHeap<Reverse<(i64, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(i64, u64, Ev)>>, at: i64, ev: Ev| {
        seq += 1;
        queue.push(Reverse((at, seq, ev)));
    };
    for (i, v) in pop.visitors.iter().enumerate() {
        push(&mut queue, START.as_millis() + v.arrive, Ev::Arrive(i as u32));
    }
    for (i, c) in pop.calls.iter().enumerate() {
        push(&mut queue, START.as_millis() + c.at, Ev::Call(i as u32));
    }
    push(&mut queue, START.as_millis(), Ev::Tick);

    let mut lease_of: Vec<Option<LeaseId>> = vec![None; pop.visitors.len()];
    let mut memory: HashMap<u32, CallerMemory> = HashMap::new();
    let mut exhausted: HashSet<i64> = HashSet::new();
    let mut in_use: Vec<u32> = Vec::new();
    let mut out = Outcome::default();

    while let Some(Reverse((t, _, ev))) = queue.pop() {
        let now = Ts::from_millis(t);
        match ev {
            Ev::Tick => {
                pool.reap(now);
                if t >= scored_from {
                    in_use.push(pool.status(&site, now).map_or(0, |s| s.leased));
                }
                if t + MINUTE <= end {
                    push(&mut queue, t + MINUTE, Ev::Tick);
                }
            }
            Ev::Arrive(i) => {
                let v = &pop.visitors[i as usize];
                if t >= scored_from {
                    out.visitors += 1;
                }
                pool.visit(&site, &vid(i), now);
                let close = START.as_millis() + v.close();
                if tracked_source[usize::from(v.source)] && t + delay < close {
                    push(&mut queue, t + delay, Ev::Show(i));
                }
                let mut k = t + ACTIVITY_EVERY;
                while k < t + v.active {
                    push(&mut queue, k, Ev::Touch(i));
                    k += ACTIVITY_EVERY;
                }
                push(&mut queue, close, Ev::Close(i));
            }
            Ev::Show(i) => {
                let v = &pop.visitors[i as usize];
                if t >= START.as_millis() + v.close() {
                    continue;
                }
                let id = vid(i);
                if pool.current_visit(&site, &id, now).is_some_and(|visit| visit.ended_at.is_some()) {
                    continue; // default_after from now on
                }
                pool.reap(now);
                match pool.acquire(&site, &id, &attrs, now) {
                    Some(Grant::Leased { lease, .. }) => lease_of[i as usize] = Some(lease.id),
                    Some(Grant::Exhausted) | None => {
                        if t >= scored_from {
                            exhausted.insert(t / MINUTE);
                        }
                        push(&mut queue, t + RETRY_EXHAUSTED, Ev::Show(i));
                    }
                }
            }
            Ev::Touch(i) => {
                pool.touch(&site, &vid(i), now);
            }
            Ev::Close(i) => {
                pool.leave(&site, &vid(i), now);
            }
            Ev::Call(c) => {
                let call = &pop.calls[c as usize];
                pool.reap(now);
                let noted = Ts::from_millis(START.as_millis() + call.noted);
                let dialled = match call.visitor {
                    None => before.clone(),
                    Some(v) if !tracked_source[usize::from(pop.visitors[v as usize].source)] => static_number.clone(),
                    Some(v) => match lease_of[v as usize].and_then(|id| pool.lease(id)) {
                        Some(l) if l.covers(noted) => l.number.clone(),
                        Some(l)
                            if noted >= l.end()
                                && matches!(l.end_reason, Some(EndReason::Idle | EndReason::MaxHold)) =>
                        {
                            after.clone()
                        }
                        _ => before.clone(),
                    },
                };
                let leases = pool.leases_before(&dialled, now, dir.lookup_window());
                let caller = call.visitor.unwrap_or(u32::MAX - c);
                let matched = dir.decide(&dialled, now, &leases, memory.get(&caller));
                let remembered = CallerMemory::after(memory.get(&caller), &dialled, now, &matched);
                memory.insert(caller, remembered);
                if t < scored_from {
                    continue;
                }
                match call.visitor {
                    None => {
                        out.background += 1;
                        out.background_attributed += u64::from(matched.visitor.is_some());
                    }
                    Some(_) if matched.kind == MatchKind::Static => out.static_calls += 1,
                    Some(v) => {
                        out.calls += 1;
                        match (&matched.visitor, matched.kind) {
                            (Some(who), _) if *who == vid(v) => out.correct += 1,
                            (Some(_), _) => out.wrong += 1,
                            (None, MatchKind::DefaultBefore) => out.default_before += 1,
                            (None, MatchKind::DefaultAfter) => out.default_after += 1,
                            (None, _) => out.unmatched += 1,
                        }
                    }
                }
            }
        }
    }
    out.exhausted_minutes = exhausted.len() as u64;
    in_use.sort_unstable();
    out.peak_in_use = in_use.last().copied().unwrap_or(0);
    out.p95_in_use = in_use.get((in_use.len() * 95 / 100).min(in_use.len().saturating_sub(1))).copied().unwrap_or(0);
    out
}
