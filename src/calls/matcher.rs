//! Matching a call to a visitor session, as a pure function over data: the order of DESIGN.md
//! (`default_before` / `default_after` / `static` → `active` → `recent` → `repeat_caller` →
//! `unmatched`), with the windows per site. It reads no clock and no store: the caller hands in
//! the called number's leases up to the call ([`callpool_pool::Pool::leases_before`]) and what
//! is remembered of the caller, so the service and the simulator run the very same rules.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use callpool_pool::{Lease, PhoneNumber, SessionAttrs, SiteId, Ts};

use super::{CallerMemory, Match, MatchKind, NumberKind};

/// How a site matches calls: how far back it looks for the last holder of a number and for a
/// caller's earlier match, and whether a caller who dials the same number again goes to the
/// visitor of their earlier call before the number's current holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchRules {
    /// A call within this long after a number's last lease ended goes to that lease (`recent`).
    pub recent: Duration,
    /// A caller matched to a visitor of the site within this long is matched again (`repeat_caller`).
    pub repeat: Duration,
    /// Off (DESIGN.md's order): `active` and `recent` come before `repeat_caller`. On: a caller
    /// whose earlier call went to a visitor *through this very number* is matched to that visitor
    /// again, even if someone else holds the number now — the caller redials a number they saved,
    /// and the current holder is almost never them (docs/SIMULATION.md measures the difference).
    pub repeat_first: bool,
}

/// One site's numbers, as the matcher sees them.
#[derive(Clone, Debug)]
pub struct SiteNumbers {
    pub site: SiteId,
    pub default_before: PhoneNumber,
    pub default_after: PhoneNumber,
    pub static_number: PhoneNumber,
    pub dedicated: Vec<PhoneNumber>,
    pub windows: MatchRules,
}

/// Which number belongs where: built once from the configuration.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    defaults: HashMap<PhoneNumber, (SiteId, MatchKind)>,
    dedicated: HashMap<PhoneNumber, SiteId>,
    tracking: HashSet<PhoneNumber>,
    windows: HashMap<SiteId, MatchRules>,
    longest_recent: Duration,
}

impl Directory {
    /// `shared` is the pool's shared inventory. A number that is a default of two sites goes
    /// to the first (the configuration check refuses that).
    pub fn new(sites: &[SiteNumbers], shared: &[PhoneNumber]) -> Directory {
        let mut d = Directory::default();
        for s in sites {
            // When a site uses one number for several roles, the earlier kind in the order wins.
            for (n, kind) in [
                (&s.default_before, MatchKind::DefaultBefore),
                (&s.default_after, MatchKind::DefaultAfter),
                (&s.static_number, MatchKind::Static),
            ] {
                d.defaults.entry(n.clone()).or_insert((s.site.clone(), kind));
            }
            for n in &s.dedicated {
                d.dedicated.insert(n.clone(), s.site.clone());
                d.tracking.insert(n.clone());
            }
            d.windows.insert(s.site.clone(), s.windows);
            d.longest_recent = d.longest_recent.max(s.windows.recent);
        }
        d.tracking.extend(shared.iter().cloned());
        d
    }

    /// Whether `number` is one of callpool's own (a site's default, static or dedicated number, or
    /// one of the shared pool): the other end of a callback's call is the visitor's.
    pub fn is_ours(&self, number: &PhoneNumber) -> bool {
        self.defaults.contains_key(number) || self.tracking.contains(number)
    }

    /// The window to ask the pool with: the longest `recent` window of any site.
    pub fn lookup_window(&self) -> Duration {
        self.longest_recent
    }

    /// A site's default numbers are untracked by kind, whatever else is known.
    pub fn default_kind(&self, number: &PhoneNumber) -> Option<&(SiteId, MatchKind)> {
        self.defaults.get(number)
    }

    /// The site a call to `number` belongs to: a default's site; else the site of the number's
    /// latest lease up to the call (a shared number serves one site at a time, and moves to
    /// another only after a cooldown); else the site it is dedicated to.
    pub fn site_of(&self, number: &PhoneNumber, leases: &[Lease]) -> Option<SiteId> {
        if let Some((site, _)) = self.defaults.get(number) {
            return Some(site.clone());
        }
        leases.first().map(|l| l.site.clone()).or_else(|| self.dedicated.get(number).cloned())
    }

    pub fn windows(&self, site: &SiteId) -> Option<MatchRules> {
        self.windows.get(site).copied()
    }

    /// Matches a call to `number` at `at`. `leases` are the number's leases that started at or
    /// before `at`, latest first (from `leases_before(number, at, lookup_window())`); `caller`
    /// is what is remembered of the caller for the call's site ([`Directory::site_of`]).
    pub fn decide(&self, number: &PhoneNumber, at: Ts, leases: &[Lease], caller: Option<&CallerMemory>) -> Match {
        let site = self.site_of(number, leases);
        let unmatched = |kind, number_kind| Match {
            kind,
            site: site.clone(),
            number_kind,
            visitor: None,
            lease: None,
            attrs: SessionAttrs::default(),
        };
        if let Some((_, kind)) = self.defaults.get(number) {
            return unmatched(*kind, NumberKind::Default);
        }
        let number_kind = if self.tracking.contains(number) || !leases.is_empty() {
            NumberKind::Tracking
        } else {
            NumberKind::Unknown
        };
        let Some(site) = site.clone() else { return unmatched(MatchKind::Unmatched, number_kind) };
        let windows = self.windows(&site).unwrap_or(MatchRules {
            recent: Duration::ZERO,
            repeat: Duration::ZERO,
            repeat_first: false,
        });
        let from_lease = |kind, l: &Lease| Match {
            kind,
            site: Some(site.clone()),
            number_kind,
            visitor: Some(l.visitor.clone()),
            lease: Some(l.id),
            attrs: l.attrs.clone(),
        };
        let repeat_from = at.minus(windows.repeat);
        let prior = caller.and_then(|c| c.last_match.as_ref()).filter(|p| repeat_from <= p.at && p.at <= at);
        let repeat = |prior: &super::PriorMatch| Match {
            kind: MatchKind::RepeatCaller,
            site: Some(site.clone()),
            number_kind,
            visitor: Some(prior.visitor.clone()),
            lease: prior.lease,
            attrs: prior.attrs.clone(),
        };
        if windows.repeat_first {
            if let Some(p) = prior.filter(|p| p.number.as_ref() == Some(number)) {
                return repeat(p);
            }
        }
        if let Some(l) = leases.iter().find(|l| l.covers(at)) {
            return from_lease(MatchKind::Active, l);
        }
        let recent_from = at.minus(windows.recent);
        if let Some(l) =
            leases.iter().filter(|l| l.site == site && l.ended_within(recent_from, at)).max_by_key(|l| (l.end(), l.id))
        {
            return from_lease(MatchKind::Recent, l);
        }
        if let Some(p) = prior {
            return repeat(p);
        }
        unmatched(MatchKind::Unmatched, number_kind)
    }
}

#[cfg(test)]
mod tests {
    use callpool_pool::{EndReason, LeaseId, VisitorId};

    use super::super::PriorMatch;
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn n(s: &str) -> PhoneNumber {
        PhoneNumber::parse(s).unwrap()
    }

    fn site(s: &str) -> SiteId {
        SiteId::new(s).unwrap()
    }

    const BEFORE: &str = "+74951234567";
    const AFTER: &str = "+74951234568";
    const STATIC: &str = "+74951234569";
    const SHARED: &str = "+74951230001";
    const DEDICATED: &str = "+74951230002";

    fn directory() -> Directory {
        let shop = SiteNumbers {
            site: site("shop"),
            default_before: n(BEFORE),
            default_after: n(AFTER),
            static_number: n(STATIC),
            dedicated: vec![n(DEDICATED)],
            windows: MatchRules {
                recent: Duration::from_secs(3600),
                repeat: Duration::from_secs(30 * 86_400),
                repeat_first: false,
            },
        };
        let blog = SiteNumbers {
            site: site("blog"),
            default_before: n("+74951239990"),
            default_after: n("+74951239990"),
            static_number: n("+74951239990"),
            dedicated: vec![],
            windows: MatchRules { recent: Duration::from_secs(600), repeat: Duration::ZERO, repeat_first: false },
        };
        Directory::new(&[shop, blog], &[n(SHARED)])
    }

    /// A lease of `number` by `visitor` of `site` over `[from, to)` (ms), ended when `to` is in the past of the test.
    fn lease(id: u64, site_id: &str, visitor: &str, from: i64, to: i64) -> Lease {
        Lease {
            id: LeaseId(id),
            site: site(site_id),
            visitor: VisitorId::new(visitor).unwrap(),
            number: n(SHARED),
            attrs: SessionAttrs { utm_source: Some(format!("src-{visitor}")), ..Default::default() },
            started_at: Ts::from_millis(from),
            expires_at: Ts::from_millis(to),
            ended_at: Some(Ts::from_millis(to)),
            end_reason: Some(EndReason::Idle),
            left: false,
        }
    }

    /// Matches a call to `number` at `at` and checks the kind, site and visitor.
    fn check(
        number: &str,
        at: i64,
        leases: &[Lease],
        caller: Option<&CallerMemory>,
        expected: (MatchKind, Option<&str>, Option<&str>),
    ) {
        let m = directory().decide(&n(number), Ts::from_millis(at), leases, caller);
        let got = (m.kind, m.site.as_ref().map(SiteId::as_str), m.visitor.as_ref().map(VisitorId::as_str));
        assert_eq!(got, expected, "call to {number} at {at}");
    }

    #[test]
    fn default_numbers_are_untracked_by_kind() {
        check(BEFORE, 0, &[], None, (MatchKind::DefaultBefore, Some("shop"), None));
        check(AFTER, 0, &[], None, (MatchKind::DefaultAfter, Some("shop"), None));
        check(STATIC, 0, &[], None, (MatchKind::Static, Some("shop"), None));
        // One number for every role: the first kind in the order.
        check("+74951239990", 0, &[], None, (MatchKind::DefaultBefore, Some("blog"), None));
    }

    #[test]
    fn a_number_held_at_the_call_is_active_and_carries_the_session() {
        let leases = [lease(2, "shop", "v2", 2 * HOUR, 3 * HOUR), lease(1, "shop", "v1", 0, HOUR)];
        check(SHARED, 2 * HOUR + MIN, &leases, None, (MatchKind::Active, Some("shop"), Some("v2")));
        let m = directory().decide(&n(SHARED), Ts::from_millis(2 * HOUR), &leases, None);
        assert_eq!((m.lease, m.attrs.utm_source.as_deref()), (Some(LeaseId(2)), Some("src-v2")));
        assert_eq!(m.number_kind, NumberKind::Tracking);
    }

    #[test]
    fn lease_boundaries_start_inclusive_end_exclusive() {
        let leases = [lease(2, "shop", "v2", HOUR, 2 * HOUR), lease(1, "shop", "v1", 0, HOUR)];
        // At the very moment one lease ends and the next starts, the new holder has it.
        check(SHARED, HOUR, &leases, None, (MatchKind::Active, Some("shop"), Some("v2")));
        // At its end, the last holder is recent, not active.
        check(SHARED, 2 * HOUR, &leases[..1], None, (MatchKind::Recent, Some("shop"), Some("v2")));
        // The recent window (1 h for shop) is inclusive at both ends.
        check(SHARED, 3 * HOUR, &leases, None, (MatchKind::Recent, Some("shop"), Some("v2")));
        check(SHARED, 3 * HOUR + 1, &leases, None, (MatchKind::Unmatched, Some("shop"), None));
    }

    #[test]
    fn a_number_that_moved_to_another_site_belongs_to_its_latest_site() {
        // Shop held it, gave it back; after the cooldown blog drew it.
        let leases = [lease(2, "blog", "b1", 9 * DAY, 9 * DAY + HOUR), lease(1, "shop", "s1", 0, HOUR)];
        check(SHARED, 9 * DAY + 30 * MIN, &leases, None, (MatchKind::Active, Some("blog"), Some("b1")));
        check(SHARED, 9 * DAY + HOUR + 5 * MIN, &leases, None, (MatchKind::Recent, Some("blog"), Some("b1")));
        // Blog's recent window is 10 minutes: later calls are blog's, unmatched — never shop's visitor.
        check(SHARED, 9 * DAY + 2 * HOUR, &leases, None, (MatchKind::Unmatched, Some("blog"), None));
    }

    #[test]
    fn a_number_never_leased_is_unmatched() {
        check(SHARED, HOUR, &[], None, (MatchKind::Unmatched, None, None));
        check(DEDICATED, HOUR, &[], None, (MatchKind::Unmatched, Some("shop"), None));
        let m = directory().decide(&n("+74959999999"), Ts::from_millis(0), &[], None);
        assert_eq!((m.kind, m.site, m.number_kind), (MatchKind::Unmatched, None, NumberKind::Unknown));
    }

    #[test]
    fn a_caller_matched_before_is_a_repeat_caller_within_the_window() {
        let leases = [lease(1, "shop", "v1", 0, HOUR)];
        let memory = CallerMemory {
            last_call_at: Ts::from_millis(30 * MIN),
            last_match: Some(PriorMatch {
                at: Ts::from_millis(30 * MIN),
                visitor: VisitorId::new("v1").unwrap(),
                lease: Some(LeaseId(1)),
                number: Some(n(SHARED)),
                attrs: SessionAttrs { utm_source: Some("src-v1".into()), ..Default::default() },
            }),
        };
        // Two calls from one caller: the first was active; days later, the second is a repeat.
        check(SHARED, 3 * DAY, &leases, Some(&memory), (MatchKind::RepeatCaller, Some("shop"), Some("v1")));
        check(SHARED, 31 * DAY, &leases, Some(&memory), (MatchKind::Unmatched, Some("shop"), None));
        // A repeat never beats the number's own holder.
        let later = [lease(2, "shop", "v2", 2 * DAY, 4 * DAY), leases[0].clone()];
        check(SHARED, 3 * DAY, &later, Some(&memory), (MatchKind::Active, Some("shop"), Some("v2")));
        // Calls to a default number stay untracked even from a known caller.
        check(BEFORE, 3 * DAY, &[], Some(&memory), (MatchKind::DefaultBefore, Some("shop"), None));

        // With repeat_first, redialling the same number goes to the earlier visitor, not the holder.
        let mut d = directory();
        let shop = SiteId::new("shop").unwrap();
        d.windows.get_mut(&shop).unwrap().repeat_first = true;
        let m = d.decide(&n(SHARED), Ts::from_millis(3 * DAY), &later, Some(&memory));
        assert_eq!((m.kind, m.visitor.as_ref().map(VisitorId::as_str)), (MatchKind::RepeatCaller, Some("v1")));
        let mut elsewhere = memory.clone();
        elsewhere.last_match.as_mut().unwrap().number = Some(n(DEDICATED));
        let m = d.decide(&n(SHARED), Ts::from_millis(3 * DAY), &later, Some(&elsewhere));
        assert_eq!(m.kind, MatchKind::Active, "an earlier match through another number does not beat the holder");
    }
}
