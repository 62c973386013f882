//! Model-based property test: random sequences of operations and clock steps run against each
//! store and against a deliberately plain model of the rules (linear scans over vectors, no
//! indexes), compared answer by answer.

use std::time::Duration;

use crate::common::*;
use callpool_pool::{
    Due, EndReason, Grant, Lease, LeaseId, NumberSpec, PhoneNumber, Pool, PoolSpec, SessionAttrs, SiteId, SiteRules,
    SiteStatus, Target, Ts, Viewed, Visit, VisitorId,
};
use proptest::prelude::*;

const S: Duration = Duration::from_secs(1);

fn model_rules(max_numbers: u32) -> SiteRules {
    SiteRules {
        max_numbers,
        reclaim_after_idle: 30 * S,
        max_hold: 120 * S,
        release_grace: 10 * S,
        shrink_after: 60 * S,
        cooldown: 100 * S,
    }
}

/// Two configurations the test switches between, to exercise retiring and re-targeting.
fn model_spec(variant: u8) -> PoolSpec {
    let (a, b) = (site("a"), site("b"));
    let mut numbers: Vec<NumberSpec> = shared(0..4);
    numbers.push(NumberSpec { number: num(9), dedicated_to: Some(a.clone()) });
    let mut sites = vec![(a, model_rules(3)), (b.clone(), model_rules(2))];
    if variant == 1 {
        numbers.remove(1); // retire number 1
        numbers[0].dedicated_to = Some(b); // number 0 becomes b's
        numbers.push(NumberSpec { number: num(5), dedicated_to: None });
        sites.push((site("c"), model_rules(1)));
    }
    PoolSpec { numbers, sites, history_for: 300 * S }
}

#[derive(Clone, Debug)]
enum Op {
    /// Move the caller's clock, sometimes backwards (a node whose clock lags).
    Advance(i32),
    Acquire(u8, u8),
    Touch(u8, u8),
    Leave(u8, u8),
    Current(u8, u8),
    CurrentVisit(u8, u8),
    /// A page view (which is also activity: the service's one).
    View(u8, u8),
    /// A lease once the visit is this many seconds old.
    AcquireDue(u8, u8, u8),
    Reap,
    Shrink,
    HolderAt(u8, u32),
    LastHolders(u8, u32),
    LeasesBefore(u8, u32, u32),
    Status(u8),
    Configure(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (-15i32..40).prop_map(Op::Advance),
        6 => (0u8..3, 0u8..6).prop_map(|(s, v)| Op::Acquire(s, v)),
        2 => (0u8..3, 0u8..6).prop_map(|(s, v)| Op::Touch(s, v)),
        2 => (0u8..3, 0u8..6).prop_map(|(s, v)| Op::Leave(s, v)),
        1 => (0u8..3, 0u8..6).prop_map(|(s, v)| Op::Current(s, v)),
        1 => (0u8..3, 0u8..6).prop_map(|(s, v)| Op::CurrentVisit(s, v)),
        6 => (0u8..3, 0u8..6).prop_map(|(s, v)| Op::View(s, v)),
        4 => (0u8..3, 0u8..6, 0u8..60).prop_map(|(s, v, d)| Op::AcquireDue(s, v, d)),
        3 => Just(Op::Reap),
        2 => Just(Op::Shrink),
        2 => (0u8..10, 0u32..200).prop_map(|(n, back)| Op::HolderAt(n, back)),
        2 => (0u8..10, 1u32..200).prop_map(|(n, w)| Op::LastHolders(n, w)),
        1 => (0u8..10, 0u32..100, 1u32..200).prop_map(|(n, back, w)| Op::LeasesBefore(n, back, w)),
        1 => (0u8..3).prop_map(Op::Status),
        1 => (0u8..2).prop_map(Op::Configure),
    ]
}

fn site_of(i: u8) -> SiteId {
    site(["a", "b", "c"][i as usize])
}

fn attrs_of(v: &VisitorId) -> SessionAttrs {
    SessionAttrs { utm_source: Some(format!("src-{v}")), ..Default::default() }
}

/// Every answer an operation can give, in one comparable shape.
#[derive(Debug, PartialEq)]
enum Answer {
    Unit,
    Grant(Option<Grant>),
    Lease(Option<Lease>),
    Leases(Vec<Lease>),
    Returned(Vec<(SiteId, PhoneNumber)>),
    Status(Option<SiteStatus>),
    Visit(Option<Visit>),
    View(Option<Viewed>),
    Due(Option<Due>),
}

// ---------------------------------------------------------------------------------------------
// The model: the rules of pool/src/rules.rs written the plain way.

#[derive(Clone, Debug)]
struct MNum {
    number: PhoneNumber,
    target: Target,
    site: Option<SiteId>,
    holder: Option<u64>,
    idle: i64,
    last: Option<SiteId>,
    cool: i64,
}

#[derive(Clone, Debug)]
struct MSite {
    id: SiteId,
    rules: SiteRules,
    active: bool,
    exhausted: u64,
}

#[derive(Default)]
struct Model {
    nums: Vec<MNum>,
    sites: Vec<MSite>,
    leases: Vec<Lease>,
    last_id: u64,
    history_ms: i64,
    /// (site, visitor, visit, the time it ends unless active again)
    visits: Vec<(SiteId, VisitorId, Visit, i64)>,
    /// The latest time any mutating operation was handed.
    clock: i64,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl Model {
    fn site(&self, s: &SiteId) -> Option<&MSite> {
        self.sites.iter().find(|x| &x.id == s)
    }

    fn num_mut(&mut self, n: &PhoneNumber) -> Option<&mut MNum> {
        self.nums.iter_mut().find(|x| &x.number == n)
    }

    fn configure(&mut self, spec: &PoolSpec, now: i64) {
        self.history_ms = ms(spec.history_for);
        for s in &mut self.sites {
            s.active = spec.sites.iter().any(|(id, _)| id == &s.id);
        }
        for (id, rules) in &spec.sites {
            match self.sites.iter_mut().find(|x| &x.id == id) {
                Some(s) => {
                    s.rules = rules.clone();
                    s.active = true;
                }
                None => self.sites.push(MSite { id: id.clone(), rules: rules.clone(), active: true, exhausted: 0 }),
            }
        }
        for n in &mut self.nums {
            n.target = Target::Retired;
        }
        for ns in &spec.numbers {
            let target = ns.dedicated_to.clone().map_or(Target::Shared, Target::Dedicated);
            match self.num_mut(&ns.number) {
                Some(n) => n.target = target,
                None => self.nums.push(MNum {
                    number: ns.number.clone(),
                    target,
                    site: None,
                    holder: None,
                    idle: 0,
                    last: None,
                    cool: 0,
                }),
            }
        }
        let all: Vec<PhoneNumber> = self.nums.iter().map(|n| n.number.clone()).collect();
        for n in all {
            self.settle(&n, now);
        }
    }

    fn settle(&mut self, number: &PhoneNumber, now: i64) {
        let Some(i) = self.nums.iter().position(|x| &x.number == number) else { return };
        if self.nums[i].holder.is_some() {
            return;
        }
        match self.nums[i].target.clone() {
            Target::Retired => {
                self.nums.remove(i);
            }
            Target::Dedicated(s) => {
                if self.nums[i].site.as_ref() != Some(&s) {
                    self.nums[i].site = Some(s.clone());
                    self.nums[i].last = Some(s);
                }
            }
            Target::Shared => {
                if let Some(s) = self.nums[i].site.clone() {
                    let site = self.site(&s).cloned();
                    if !site.as_ref().is_some_and(|x| x.active) {
                        let cool = site.map_or(0, |x| ms(x.rules.cooldown));
                        let n = &mut self.nums[i];
                        n.site = None;
                        n.cool = n.cool.max(now + cool);
                    }
                }
            }
        }
    }

    fn live_visit(&self, s: &SiteId, v: &VisitorId, now: i64) -> Option<Visit> {
        self.visits.iter().find(|(a, b, _, until)| a == s && b == v && *until > now).map(|x| x.2)
    }

    fn put_visit(&mut self, s: &SiteId, v: &VisitorId, visit: Visit, now: i64) {
        let idle = self.site(s).map_or(0, |x| ms(x.rules.reclaim_after_idle));
        self.visits.retain(|(a, b, _, _)| !(a == s && b == v));
        self.visits.push((s.clone(), v.clone(), Visit { last_seen: Ts::from_millis(now), ..visit }, now + idle));
    }

    fn visit(&mut self, s: &SiteId, v: &VisitorId, now: i64) -> Option<Visit> {
        self.site(s).filter(|x| x.active)?;
        let t = Ts::from_millis(now);
        let visit = self.live_visit(s, v, now).unwrap_or(Visit { first_seen: t, last_seen: t, ended_at: None });
        self.put_visit(s, v, visit, now);
        Some(Visit { last_seen: t, ..visit })
    }

    fn live(&self, s: &SiteId, v: &VisitorId) -> Option<usize> {
        self.leases.iter().position(|l| &l.site == s && &l.visitor == v && l.ended_at.is_none())
    }

    fn live_unexpired(&self, s: &SiteId, v: &VisitorId, now: i64) -> Option<usize> {
        self.live(s, v).filter(|&i| self.leases[i].expires_at.as_millis() > now)
    }

    fn extend(&mut self, i: usize, now: i64) {
        let rules = self.site(&self.leases[i].site).expect("lease site").rules.clone();
        let l = &mut self.leases[i];
        l.expires_at =
            Ts::from_millis((now + ms(rules.reclaim_after_idle)).min(l.started_at.as_millis() + ms(rules.max_hold)));
        l.left = false;
    }

    fn end(&mut self, i: usize, now: i64) -> Lease {
        let hold = self.site(&self.leases[i].site).map(|s| ms(s.rules.max_hold));
        let l = &mut self.leases[i];
        l.ended_at = Some(l.expires_at);
        let held_for = l.expires_at.as_millis() - l.started_at.as_millis();
        l.end_reason = Some(if l.left {
            EndReason::Left
        } else if hold.is_some_and(|h| h <= held_for) {
            EndReason::MaxHold
        } else {
            EndReason::Idle
        });
        let l = l.clone();
        if l.end_reason != Some(EndReason::Left) {
            for (a, b, visit, _) in self.visits.iter_mut() {
                if a == &l.site && b == &l.visitor {
                    visit.ended_at = Some(l.expires_at);
                }
            }
        }
        if let Some(n) = self.num_mut(&l.number) {
            n.holder = None;
            n.idle = l.expires_at.as_millis();
            self.settle(&l.number, now);
        }
        l
    }

    fn acquire(&mut self, s: &SiteId, v: &VisitorId, now: i64) -> Option<Grant> {
        let site = self.site(s).filter(|x| x.active)?.clone();
        if let Some(i) = self.live(s, v) {
            if self.leases[i].expires_at.as_millis() > now {
                self.extend(i, now);
                return Some(Grant::Leased { lease: self.leases[i].clone(), fresh: false });
            }
            self.end(i, now);
        }
        let free = self
            .nums
            .iter()
            .filter(|n| n.site.as_ref() == Some(s) && n.holder.is_none())
            .min_by(|x, y| (x.idle, &x.number).cmp(&(y.idle, &y.number)));
        let number = match free {
            Some(n) => n.number.clone(),
            None => {
                let size = self.nums.iter().filter(|n| n.site.as_ref() == Some(s)).count();
                let cand = self
                    .nums
                    .iter()
                    .filter(|n| n.site.is_none())
                    .filter(|n| n.last.is_none() || n.last.as_ref() == Some(s) || n.cool <= now)
                    .min_by(|x, y| (x.idle, &x.number).cmp(&(y.idle, &y.number)));
                match cand {
                    Some(n) if size < site.rules.max_numbers as usize => n.number.clone(),
                    _ => {
                        self.sites.iter_mut().find(|x| &x.id == s).expect("site").exhausted += 1;
                        return Some(Grant::Exhausted);
                    }
                }
            }
        };
        self.last_id += 1;
        let lease = Lease {
            id: LeaseId(self.last_id),
            site: s.clone(),
            visitor: v.clone(),
            number: number.clone(),
            attrs: attrs_of(v),
            started_at: Ts::from_millis(now),
            expires_at: Ts::from_millis(now + ms(site.rules.reclaim_after_idle.min(site.rules.max_hold))),
            ended_at: None,
            end_reason: None,
            left: false,
        };
        let n = self.num_mut(&number).expect("chosen number");
        if n.site.as_ref() != Some(s) {
            n.site = Some(s.clone());
            n.last = Some(s.clone());
        }
        n.holder = Some(lease.id.0);
        self.leases.push(lease.clone());
        Some(Grant::Leased { lease, fresh: true })
    }

    fn reap(&mut self, now: i64) -> Vec<Lease> {
        let mut due: Vec<usize> = (0..self.leases.len())
            .filter(|&i| self.leases[i].ended_at.is_none() && self.leases[i].expires_at.as_millis() <= now)
            .collect();
        due.sort_by_key(|&i| (self.leases[i].expires_at, self.leases[i].id));
        let ended = due.into_iter().map(|i| self.end(i, now)).collect();
        let horizon = now - self.history_ms;
        self.leases.retain(|l| l.ended_at.is_none_or(|e| e.as_millis() >= horizon));
        self.visits.retain(|(_, _, _, until)| *until > now);
        ended
    }

    fn shrink(&mut self, now: i64) -> Vec<(SiteId, PhoneNumber)> {
        let mut out = Vec::new();
        for site in self.sites.clone() {
            for n in self.nums.iter_mut() {
                let due = n.idle + ms(site.rules.shrink_after) <= now;
                if n.site.as_ref() == Some(&site.id) && n.holder.is_none() && due && n.target == Target::Shared {
                    n.site = None;
                    n.cool = n.idle + ms(site.rules.shrink_after) + ms(site.rules.cooldown);
                    out.push((site.id.clone(), n.number.clone()));
                }
            }
        }
        out.sort();
        out
    }

    fn holder_at(&self, n: &PhoneNumber, t: Ts) -> Option<Lease> {
        self.leases.iter().find(|l| &l.number == n && l.covers(t)).cloned()
    }

    /// Started at or before `at`, latest start first, down to and including the first that ended
    /// before `at - window`.
    fn leases_before(&self, n: &PhoneNumber, at: Ts, window: Duration) -> Vec<Lease> {
        let mut v: Vec<Lease> = self.leases.iter().filter(|l| &l.number == n && l.started_at <= at).cloned().collect();
        v.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        match v.iter().position(|l| l.end() < at.minus(window)) {
            Some(i) => v.into_iter().take(i + 1).collect(),
            None => v,
        }
    }

    fn last_holders(&self, n: &PhoneNumber, before: Ts, window: Duration) -> Vec<Lease> {
        let from = before.minus(window);
        let mut v: Vec<Lease> = self
            .leases
            .iter()
            .filter(|l| &l.number == n && l.started_at <= before && l.ended_within(from, before))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.end().cmp(&a.end()).then(b.id.cmp(&a.id)));
        v
    }

    fn status(&self, s: &SiteId, now: i64) -> Option<SiteStatus> {
        let site = self.site(s)?;
        let mine = || self.nums.iter().filter(|n| n.site.as_ref() == Some(s));
        let working = mine().count() as u32;
        let free = mine().filter(|n| n.holder.is_none()).count() as u32;
        Some(SiteStatus {
            max_numbers: site.rules.max_numbers,
            working,
            dedicated: mine().filter(|n| n.target == Target::Dedicated(s.clone())).count() as u32,
            leased: working - free,
            free,
            cooling: self.nums.iter().filter(|n| n.site.is_none() && n.last.as_ref() == Some(s) && n.cool > now).count()
                as u32,
            exhausted_total: site.exhausted,
        })
    }

    fn apply(&mut self, op: &Op, now: Ts) -> Answer {
        let mutating = matches!(
            op,
            Op::Acquire(..)
                | Op::Touch(..)
                | Op::Leave(..)
                | Op::View(..)
                | Op::AcquireDue(..)
                | Op::Reap
                | Op::Shrink
                | Op::Configure(_)
        );
        if mutating {
            self.clock = self.clock.max(now.as_millis());
        }
        let t = now.as_millis().max(self.clock);
        match op {
            Op::Advance(_) => Answer::Unit,
            Op::Acquire(s, v) => Answer::Grant(self.acquire(&site_of(*s), &visitor(*v as u32), t)),
            Op::Touch(s, v) => {
                let (s, v) = (site_of(*s), visitor(*v as u32));
                if let Some(visit) = self.live_visit(&s, &v, t) {
                    self.put_visit(&s, &v, visit, t);
                }
                Answer::Lease(self.live_unexpired(&s, &v, t).map(|i| {
                    self.extend(i, t);
                    self.leases[i].clone()
                }))
            }
            Op::CurrentVisit(s, v) => Answer::Visit(self.live_visit(&site_of(*s), &visitor(*v as u32), t)),
            Op::View(s, v) => {
                let (s, v) = (site_of(*s), visitor(*v as u32));
                let began = self.live_visit(&s, &v, t).is_none();
                Answer::View(self.visit(&s, &v, t).map(|visit| {
                    let lease = self.live_unexpired(&s, &v, t).map(|i| {
                        self.extend(i, t);
                        self.leases[i].clone()
                    });
                    Viewed { visit, began, lease }
                }))
            }
            Op::AcquireDue(s, v, d) => {
                let (s, v) = (site_of(*s), visitor(*v as u32));
                if self.site(&s).is_none_or(|x| !x.active) {
                    return Answer::Due(None);
                }
                let visit = self.live_visit(&s, &v, t).unwrap_or_else(|| {
                    let fresh = Visit { first_seen: Ts::from_millis(t), last_seen: Ts::from_millis(t), ended_at: None };
                    self.put_visit(&s, &v, fresh, t);
                    fresh
                });
                let due = visit.first_seen.as_millis() + i64::from(*d) * 1000;
                Answer::Due(Some(if visit.ended_at.is_some() {
                    Due::Ended
                } else if t < due {
                    Due::Later(Ts::from_millis(due))
                } else {
                    Due::Granted(self.acquire(&s, &v, t).expect("an active site"))
                }))
            }
            Op::Leave(s, v) => {
                let (s, v) = (site_of(*s), visitor(*v as u32));
                let i = self.live_unexpired(&s, &v, t);
                let grace = self.site(&s).map(|x| ms(x.rules.release_grace));
                Answer::Lease(i.zip(grace).map(|(i, g)| {
                    let l = &mut self.leases[i];
                    l.expires_at = l.expires_at.min(Ts::from_millis(t + g));
                    l.left = true;
                    l.clone()
                }))
            }
            Op::Current(s, v) => {
                Answer::Lease(self.live_unexpired(&site_of(*s), &visitor(*v as u32), t).map(|i| self.leases[i].clone()))
            }
            Op::Reap => Answer::Leases(self.reap(t)),
            Op::Shrink => Answer::Returned(self.shrink(t)),
            Op::HolderAt(n, back) => Answer::Lease(self.holder_at(&num(*n as u32), now.minus(*back * S))),
            Op::LastHolders(n, w) => Answer::Leases(self.last_holders(&num(*n as u32), now, *w * S)),
            Op::LeasesBefore(n, back, w) => {
                Answer::Leases(self.leases_before(&num(*n as u32), now.minus(*back * S), *w * S))
            }
            Op::Status(s) => Answer::Status(self.status(&site_of(*s), t)),
            Op::Configure(variant) => {
                self.configure(&model_spec(*variant), t);
                Answer::Unit
            }
        }
    }
}

async fn apply(pool: &Pool, op: &Op, now: Ts) -> Answer {
    match op {
        Op::Advance(_) => Answer::Unit,
        Op::Acquire(s, v) => {
            let v = visitor(*v as u32);
            match pool.acquire(&site_of(*s), &v, &attrs_of(&v), now).await {
                Ok(g) => Answer::Grant(Some(g)),
                Err(callpool_pool::PoolError::UnknownSite(_)) => Answer::Grant(None),
                Err(e) => panic!("acquire failed: {e}"),
            }
        }
        Op::Touch(s, v) => Answer::Lease(pool.touch(&site_of(*s), &visitor(*v as u32), now).await.unwrap()),
        Op::Leave(s, v) => Answer::Lease(pool.leave(&site_of(*s), &visitor(*v as u32), now).await.unwrap()),
        Op::Current(s, v) => Answer::Lease(pool.current(&site_of(*s), &visitor(*v as u32), now).await.unwrap()),
        Op::View(s, v) => match pool.view(&site_of(*s), &visitor(*v as u32), now).await {
            Ok(seen) => Answer::View(Some(seen)),
            Err(callpool_pool::PoolError::UnknownSite(_)) => Answer::View(None),
            Err(e) => panic!("view failed: {e}"),
        },
        Op::AcquireDue(s, v, d) => {
            let v = visitor(*v as u32);
            let delay = std::time::Duration::from_secs(u64::from(*d));
            match pool.acquire_due(&site_of(*s), &v, &attrs_of(&v), now, delay).await {
                Ok(due) => Answer::Due(Some(due)),
                Err(callpool_pool::PoolError::UnknownSite(_)) => Answer::Due(None),
                Err(e) => panic!("acquire_due failed: {e}"),
            }
        }
        Op::CurrentVisit(s, v) => {
            Answer::Visit(pool.current_visit(&site_of(*s), &visitor(*v as u32), now).await.unwrap())
        }
        Op::Reap => Answer::Leases(pool.reap(now).await.unwrap()),
        Op::Shrink => Answer::Returned(pool.shrink(now).await.unwrap()),
        Op::HolderAt(n, back) => Answer::Lease(pool.holder_at(&num(*n as u32), now.minus(*back * S)).await.unwrap()),
        Op::LastHolders(n, w) => Answer::Leases(pool.last_holders(&num(*n as u32), now, *w * S).await.unwrap()),
        Op::LeasesBefore(n, back, w) => {
            Answer::Leases(pool.leases_before(&num(*n as u32), now.minus(*back * S), *w * S).await.unwrap())
        }
        Op::Status(s) => Answer::Status(pool.status(&site_of(*s), now).await.unwrap()),
        Op::Configure(variant) => {
            pool.configure(&model_spec(*variant), now).await.unwrap();
            Answer::Unit
        }
    }
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for (kind, pool, _dir) in backends("model").await {
            let mut model = Model::default();
            let mut now = T0;
            pool.configure(&model_spec(0), now).await.unwrap();
            model.clock = now.as_millis();
            model.configure(&model_spec(0), now.as_millis());
            for (step, op) in ops.iter().enumerate() {
                if let Op::Advance(secs) = op {
                    now = Ts::from_millis(now.as_millis() + i64::from(*secs) * 1000);
                }
                let expected = model.apply(op, now);
                let got = apply(&pool, op, now).await;
                prop_assert_eq!(
                    got,
                    expected,
                    "{} diverged from the model at step {} ({:?}) at {}",
                    kind,
                    step,
                    op,
                    now
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn both_stores_follow_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run_case(&ops)?;
    }
}
