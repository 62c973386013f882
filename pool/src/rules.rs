//! The pool's rules as a pure core: plain data in, decisions out, the current time passed in.
//!
//! [`PoolState`] holds the whole pool (numbers, sites, live leases and the lease history) in
//! memory. It never reads a clock, never touches a socket or a file, and never fails on a rule:
//! an empty pool is the value [`Grant::Exhausted`]. The embedded backend wraps it and persists
//! what each operation changed; the Redis scripts in `pool/lua/` mirror it operation by
//! operation (the conformance and model tests hold the two to the same behaviour); the
//! traffic simulator drives it with a virtual clock.
//!
//! The rules, in one place:
//! - Every number has a *target*: shared (drawn by any site on demand), dedicated to one site,
//!   or retired (removed from the config). A number that is free goes where its target says at
//!   once; a leased one when its lease ends.
//! - A site's *working set* grows from the shared inventory on demand, up to `max_numbers`
//!   (dedicated numbers count), and gives free shared numbers back after `shrink_after` unused.
//! - A number given back by site A serves another site only after A's `cooldown`, counted
//!   from the moment it was given back (`idle_since + shrink_after`); A itself may take it back
//!   at once.
//! - One lease per (site, visitor); asking again returns the same lease and counts as activity.
//!   A lease expires at `min(last activity + reclaim_after_idle, started + max_hold)`, or
//!   `release_grace` after the visitor left, and ends when the reaper finds it expired (its
//!   end is recorded as its expiry time, not the reaper's).
//! - Free numbers go out least-recently-released first (ties: the smaller number), from the
//!   site's working set before the inventory.
//! - Ended leases stay in the history for at least `history_for`.
//! - A visit begins at the visitor's first page view and lives until `reclaim_after_idle` after
//!   its last activity. When its lease ends for idleness or `max_hold`, the visit is marked ended
//!   (it shows `default_after` and gets no new number); a visitor who left and comes back is not.
//! - The pool's time never runs backwards: an operation handed an earlier `now` than one
//!   already seen (clock skew between nodes, a clock stepped back) uses the latest one, so a
//!   lease never starts before the previous lease of its number ended.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod visits;

pub use visits::{Due, Viewed};

use crate::types::{millis, EndReason, Lease, LeaseId, PhoneNumber, SessionAttrs, SiteId, Ts, Visit, VisitorId};

/// The timing and size rules of one site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRules {
    /// The most numbers the site's working set may hold (dedicated numbers included).
    pub max_numbers: u32,
    /// A lease ends this long after the visitor's last activity in any tab.
    pub reclaim_after_idle: Duration,
    /// A lease ends this long after it started, whatever the activity.
    pub max_hold: Duration,
    /// A lease ends this long after the visitor closed their last tab.
    pub release_grace: Duration,
    /// A shared number that sat free this long goes back to the inventory.
    pub shrink_after: Duration,
    /// How long a number this site gave back waits before another site may use it.
    pub cooldown: Duration,
}

/// Where a configured number belongs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// In the shared inventory, drawn by any site on demand.
    Shared,
    /// Always in this site's working set, never given back.
    Dedicated(SiteId),
    /// No longer configured: removed once free. Its history stays.
    Retired,
}

/// One number of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberSpec {
    pub number: PhoneNumber,
    pub dedicated_to: Option<SiteId>,
}

/// Everything the pool needs from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub numbers: Vec<NumberSpec>,
    pub sites: Vec<(SiteId, SiteRules)>,
    /// How long ended leases stay in the history (at least the longest match window).
    pub history_for: Duration,
}

/// The stored state of one number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberState {
    pub number: PhoneNumber,
    pub target: Target,
    /// The site whose working set holds the number; `None` while it is in the inventory.
    pub site: Option<SiteId>,
    /// The live lease on the number, if any.
    pub holder: Option<LeaseId>,
    /// When the number's last lease ended (the epoch if it never had one).
    pub idle_since: Ts,
    /// The last site whose working set held it.
    pub last_site: Option<SiteId>,
    /// Before this time, only `last_site` may draw it from the inventory.
    pub cooldown_until: Ts,
}

/// The stored state of one site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    pub rules: SiteRules,
    /// False once the site is removed from the config: no new leases, live ones run out.
    pub active: bool,
    /// How many times a visitor asked for a number and none was free.
    pub exhausted: u64,
}

/// The answer to a lease request.
// A Grant is returned once per request and never stored in bulk, so the size gap between the
// variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The visitor holds this lease; `fresh` is false when it already held it (the request then
    /// counted as activity).
    Leased { lease: Lease, fresh: bool },
    /// Nothing free and the site cannot grow: the visitor keeps the default number.
    Exhausted,
}

/// What a site's working set looks like now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteStatus {
    pub max_numbers: u32,
    /// Numbers in the working set.
    pub working: u32,
    pub dedicated: u32,
    pub leased: u32,
    pub free: u32,
    /// Numbers this site gave back that are still cooling down (no other site may take them).
    pub cooling: u32,
    /// Lease requests that found nothing free, since the pool was created.
    pub exhausted_total: u64,
}

/// Everything a store keeps of a pool, for [`PoolState::from_parts`].
#[derive(Clone, Debug, Default)]
pub struct StoredParts {
    pub numbers: Vec<NumberState>,
    pub sites: Vec<(SiteId, SiteState)>,
    pub leases: Vec<Lease>,
    /// Each visit with the time it ends unless active again.
    pub visits: Vec<(SiteId, VisitorId, Visit, Ts)>,
    pub next_lease_id: u64,
    pub clock: Ts,
    pub history_for: Duration,
}

/// Keys an operation changed, for a backend that persists changes (see `PoolState::take_changes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub numbers: BTreeSet<PhoneNumber>,
    pub sites: BTreeSet<SiteId>,
    pub leases: BTreeSet<LeaseId>,
    pub visits: BTreeSet<(SiteId, VisitorId)>,
    /// The lease counter or the pool's clock moved.
    pub meta: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
            && self.sites.is_empty()
            && self.leases.is_empty()
            && self.visits.is_empty()
            && !self.meta
    }
}

/// A site's working set, as indexes over the numbers.
#[derive(Clone, Debug, Default)]
struct WorkingSet {
    numbers: BTreeSet<PhoneNumber>,
    /// Free numbers ordered for reuse: least recently released first, ties by number.
    free: BTreeSet<(Ts, PhoneNumber)>,
}

/// The whole pool in memory. See the module docs for the rules.
#[derive(Clone, Debug, Default)]
pub struct PoolState {
    numbers: BTreeMap<PhoneNumber, NumberState>,
    sites: BTreeMap<SiteId, SiteState>,
    working: HashMap<SiteId, WorkingSet>,
    /// Free numbers in no working set, ordered like `WorkingSet::free`.
    inventory: BTreeSet<(Ts, PhoneNumber)>,
    live: HashMap<(SiteId, VisitorId), LeaseId>,
    leases: HashMap<LeaseId, Lease>,
    /// Every lease of a number (live and ended), by start time.
    by_number: HashMap<PhoneNumber, BTreeSet<(Ts, LeaseId)>>,
    /// Live leases by expiry.
    expiry: BTreeSet<(Ts, LeaseId)>,
    /// Ended leases by end, for trimming the history.
    ended: BTreeSet<(Ts, LeaseId)>,
    /// Each visit with the time it ends if nothing happens (`last_seen + reclaim_after_idle`,
    /// with the rules of when it was last written).
    visits: HashMap<(SiteId, VisitorId), (Visit, Ts)>,
    /// Visits by that end time.
    visit_expiry: BTreeSet<(Ts, SiteId, VisitorId)>,
    next_lease_id: u64,
    /// The latest `now` any operation was handed.
    clock: Ts,
    history_for: Duration,
    changes: Option<Changes>,
}

impl PoolState {
    /// An empty pool. `track_changes` makes every operation note the keys it changed, for a
    /// backend that persists them.
    pub fn new(track_changes: bool) -> PoolState {
        PoolState { next_lease_id: 1, changes: track_changes.then(Changes::default), ..PoolState::default() }
    }

    /// Rebuilds a pool from stored parts (the inverse of reading every number, site, lease and visit).
    pub fn from_parts(parts: StoredParts, track_changes: bool) -> PoolState {
        let StoredParts { numbers, sites, leases, visits, next_lease_id, clock, history_for } = parts;
        let mut pool = PoolState::new(track_changes);
        pool.next_lease_id = next_lease_id.max(1);
        pool.clock = clock;
        pool.history_for = history_for;
        pool.sites = sites.into_iter().collect();
        for n in numbers {
            pool.index_number(&n);
            pool.numbers.insert(n.number.clone(), n);
        }
        for l in leases {
            pool.index_lease(&l);
            pool.leases.insert(l.id, l);
        }
        for (site, visitor, v, end) in visits {
            pool.put_visit(site, visitor, Some((v, end)));
        }
        pool.take_changes();
        pool
    }

    /// Brings the pool in line with the configuration: sites added, updated or deactivated;
    /// numbers added, re-targeted or retired. Leased numbers move when their lease ends.
    pub fn configure(&mut self, spec: &PoolSpec, now: Ts) {
        let now = self.advance(now);
        self.history_for = spec.history_for;
        let configured: BTreeMap<&SiteId, &SiteRules> = spec.sites.iter().map(|(s, r)| (s, r)).collect();
        let site_ids: Vec<SiteId> = self.sites.keys().cloned().collect();
        for site in site_ids {
            if !configured.contains_key(&site) {
                let state = self.sites.get_mut(&site).expect("key listed from the map");
                if state.active {
                    state.active = false;
                    self.note_site(&site);
                }
            }
        }
        for (site, rules) in &spec.sites {
            let fresh = SiteState {
                rules: rules.clone(),
                active: true,
                exhausted: self.sites.get(site).map_or(0, |s| s.exhausted),
            };
            if self.sites.get(site) != Some(&fresh) {
                self.sites.insert(site.clone(), fresh);
                self.note_site(site);
            }
        }
        let mut targets: BTreeMap<PhoneNumber, Target> =
            self.numbers.keys().map(|n| (n.clone(), Target::Retired)).collect();
        for spec in &spec.numbers {
            let target = spec.dedicated_to.clone().map_or(Target::Shared, Target::Dedicated);
            targets.insert(spec.number.clone(), target);
        }
        for (number, target) in targets {
            match self.numbers.get_mut(&number) {
                Some(state) if state.target == target => {}
                Some(state) => {
                    state.target = target;
                    self.note_number(&number);
                }
                None => {
                    let state = NumberState {
                        number: number.clone(),
                        target,
                        site: None,
                        holder: None,
                        idle_since: Ts::EPOCH,
                        last_site: None,
                        cooldown_until: Ts::EPOCH,
                    };
                    self.index_number(&state);
                    self.numbers.insert(number.clone(), state);
                    self.note_number(&number);
                }
            }
            self.settle(&number, now);
        }
    }

    /// Grants `visitor` a lease on one of `site`'s numbers, or returns the one it holds
    /// (extended, as activity). `None` when the site is unknown or removed.
    pub fn acquire(&mut self, site: &SiteId, visitor: &VisitorId, attrs: &SessionAttrs, now: Ts) -> Option<Grant> {
        let now = self.advance(now);
        let rules = match self.sites.get(site) {
            Some(s) if s.active => s.rules.clone(),
            _ => return None,
        };
        let key = (site.clone(), visitor.clone());
        if let Some(&id) = self.live.get(&key) {
            if self.leases[&id].expires_at > now {
                let lease = self.extend(id, &rules, now);
                return Some(Grant::Leased { lease, fresh: false });
            }
            // Expired but not yet reaped: it ended at its expiry, and the visitor starts anew.
            self.end_lease(id, now);
        }
        let number = match self.working.get(site).and_then(|w| w.free.first()) {
            Some((_, n)) => n.clone(),
            None => {
                let size = self.working.get(site).map_or(0, |w| w.numbers.len());
                match self.eligible_in_inventory(site, now) {
                    Some(n) if size < rules.max_numbers as usize => n,
                    _ => {
                        let state = self.sites.get_mut(site).expect("site checked above");
                        state.exhausted += 1;
                        self.note_site(site);
                        return Some(Grant::Exhausted);
                    }
                }
            }
        };
        let id = LeaseId(self.next_lease_id);
        self.next_lease_id += 1;
        self.note_meta();
        let lease = Lease {
            id,
            site: site.clone(),
            visitor: visitor.clone(),
            number: number.clone(),
            attrs: attrs.clone(),
            started_at: now,
            expires_at: now.plus(rules.reclaim_after_idle.min(rules.max_hold)),
            ended_at: None,
            end_reason: None,
            left: false,
        };
        let mut state = self.numbers.get(&number).expect("free sets hold known numbers").clone();
        self.unindex_number(&state);
        if state.site.as_ref() != Some(site) {
            state.site = Some(site.clone());
            state.last_site = Some(site.clone());
        }
        state.holder = Some(id);
        self.index_number(&state);
        self.numbers.insert(number.clone(), state);
        self.note_number(&number);
        self.index_lease(&lease);
        self.live.insert(key, id);
        self.leases.insert(id, lease.clone());
        self.note_lease(id);
        Some(Grant::Leased { lease, fresh: true })
    }

    /// Activity from the visitor: extends its live lease. `None` when it holds none (or it expired).
    pub fn touch(&mut self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Lease> {
        let now = self.advance(now);
        if let Some(v) = self.live_visit(site, visitor, now) {
            self.active_visit(site, visitor, v, now);
        }
        let id = self.live_lease(site, visitor, now)?;
        let rules = self.sites.get(site)?.rules.clone();
        Some(self.extend(id, &rules, now))
    }

    /// The visitor closed its last tab: the lease ends `release_grace` from now unless it comes back.
    pub fn leave(&mut self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Lease> {
        let now = self.advance(now);
        let id = self.live_lease(site, visitor, now)?;
        let grace = self.sites.get(site)?.rules.release_grace;
        let mut lease = self.leases[&id].clone();
        self.unindex_lease(&lease);
        lease.expires_at = lease.expires_at.min(now.plus(grace));
        lease.left = true;
        self.index_lease(&lease);
        self.leases.insert(id, lease.clone());
        self.note_lease(id);
        Some(lease)
    }

    /// The visitor's live lease, if it holds one that has not expired.
    pub fn current(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Lease> {
        let now = now.max(self.clock);
        self.live_lease(site, visitor, now).map(|id| self.leases[&id].clone())
    }

    /// Ends every lease expired by `now` and trims the history; returns the ended leases,
    /// ordered by end then id.
    pub fn reap(&mut self, now: Ts) -> Vec<Lease> {
        let now = self.advance(now);
        let due: Vec<LeaseId> =
            self.expiry.range(..(now, LeaseId(u64::MAX))).filter(|(t, _)| *t <= now).map(|(_, id)| *id).collect();
        let ended = due.into_iter().map(|id| self.end_lease(id, now)).collect();
        let horizon = now.minus(self.history_for);
        let old: Vec<LeaseId> = self.ended.iter().take_while(|(t, _)| *t < horizon).map(|(_, id)| *id).collect();
        for id in old {
            if let Some(lease) = self.leases.remove(&id) {
                self.unindex_lease(&lease);
                self.note_lease(id);
            }
        }
        let over: Vec<(SiteId, VisitorId)> = self
            .visit_expiry
            .iter()
            .take_while(|(t, _, _)| *t <= now)
            .map(|(_, s, v)| (s.clone(), v.clone()))
            .collect();
        for (site, visitor) in over {
            self.put_visit(site, visitor, None);
        }
        ended
    }

    /// Gives shared numbers that sat free for `shrink_after` back to the inventory, into their
    /// cooldown. Returns them.
    pub fn shrink(&mut self, now: Ts) -> Vec<(SiteId, PhoneNumber)> {
        let now = self.advance(now);
        let mut returned = Vec::new();
        for (site, state) in &self.sites {
            let Some(w) = self.working.get(site) else { continue };
            for (idle_since, number) in &w.free {
                if idle_since.plus(state.rules.shrink_after) > now {
                    break;
                }
                if self.numbers[number].target == Target::Shared {
                    returned.push((site.clone(), number.clone()));
                }
            }
        }
        for (site, number) in &returned {
            let rules = self.sites[site].rules.clone();
            let mut state = self.numbers[number].clone();
            self.unindex_number(&state);
            state.site = None;
            state.cooldown_until = state.idle_since.plus(rules.shrink_after).plus(rules.cooldown);
            self.index_number(&state);
            self.numbers.insert(number.clone(), state);
            self.note_number(number);
        }
        returned
    }

    /// The site's working set now; `None` for an unknown site.
    /// Whether the pool knows `site` (active or not).
    pub fn knows_site(&self, site: &SiteId) -> bool {
        self.sites.contains_key(site)
    }

    /// Every site the pool has known (active or not).
    pub fn site_ids(&self) -> Vec<SiteId> {
        self.sites.keys().cloned().collect()
    }

    pub fn status(&self, site: &SiteId, now: Ts) -> Option<SiteStatus> {
        let now = now.max(self.clock);
        let state = self.sites.get(site)?;
        let w = self.working.get(site);
        let working = w.map_or(0, |w| w.numbers.len()) as u32;
        let free = w.map_or(0, |w| w.free.len()) as u32;
        let dedicated = w.map_or(0, |w| {
            w.numbers.iter().filter(|n| matches!(&self.numbers[*n].target, Target::Dedicated(s) if s == site)).count()
        }) as u32;
        let cooling = self
            .inventory
            .iter()
            .filter(|(_, n)| {
                let s = &self.numbers[n];
                s.last_site.as_ref() == Some(site) && s.cooldown_until > now
            })
            .count() as u32;
        Some(SiteStatus {
            max_numbers: state.rules.max_numbers,
            working,
            dedicated,
            leased: working - free,
            free,
            cooling,
            exhausted_total: state.exhausted,
        })
    }

    /// The configured sites, active or not.
    pub fn sites(&self) -> impl Iterator<Item = (&SiteId, &SiteState)> {
        self.sites.iter()
    }

    pub fn number(&self, number: &PhoneNumber) -> Option<&NumberState> {
        self.numbers.get(number)
    }

    pub fn numbers(&self) -> impl Iterator<Item = &NumberState> {
        self.numbers.values()
    }

    pub fn site(&self, site: &SiteId) -> Option<&SiteState> {
        self.sites.get(site)
    }

    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn history_for(&self) -> Duration {
        self.history_for
    }

    /// The latest time any operation was handed.
    pub fn clock(&self) -> Ts {
        self.clock
    }

    pub fn next_lease_id(&self) -> u64 {
        self.next_lease_id
    }

    /// Moves the pool's clock to `now` unless it is already later; returns the pool's time.
    fn advance(&mut self, now: Ts) -> Ts {
        if now > self.clock {
            self.clock = now;
            self.note_meta();
        }
        self.clock
    }

    fn live_lease(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<LeaseId> {
        let id = *self.live.get(&(site.clone(), visitor.clone()))?;
        (self.leases[&id].expires_at > now).then_some(id)
    }

    fn extend(&mut self, id: LeaseId, rules: &SiteRules, now: Ts) -> Lease {
        let mut lease = self.leases[&id].clone();
        self.unindex_lease(&lease);
        lease.expires_at = now.plus(rules.reclaim_after_idle).min(lease.started_at.plus(rules.max_hold));
        lease.left = false;
        self.index_lease(&lease);
        self.leases.insert(id, lease.clone());
        self.note_lease(id);
        lease
    }

    fn end_lease(&mut self, id: LeaseId, now: Ts) -> Lease {
        let mut lease = self.leases[&id].clone();
        let max_hold = self.sites.get(&lease.site).map_or(Duration::MAX, |s| s.rules.max_hold);
        self.unindex_lease(&lease);
        lease.ended_at = Some(lease.expires_at);
        lease.end_reason = Some(if lease.left {
            EndReason::Left
        } else if millis(max_hold) <= lease.expires_at.as_millis() - lease.started_at.as_millis() {
            EndReason::MaxHold
        } else {
            EndReason::Idle
        });
        self.index_lease(&lease);
        self.live.remove(&(lease.site.clone(), lease.visitor.clone()));
        if lease.end_reason != Some(EndReason::Left) {
            let key = (lease.site.clone(), lease.visitor.clone());
            if let Some(&(v, end)) = self.visits.get(&key) {
                self.put_visit(key.0, key.1, Some((Visit { ended_at: Some(lease.expires_at), ..v }, end)));
            }
        }
        self.leases.insert(id, lease.clone());
        self.note_lease(id);
        if let Some(mut state) = self.numbers.get(&lease.number).cloned() {
            self.unindex_number(&state);
            state.holder = None;
            state.idle_since = lease.expires_at;
            self.index_number(&state);
            self.numbers.insert(lease.number.clone(), state);
            self.note_number(&lease.number);
            self.settle(&lease.number, now);
        }
        lease
    }

    /// Puts a free number where its target says: retired numbers leave, dedicated ones join
    /// their site, shared ones of a removed site go back to the inventory into cooldown.
    fn settle(&mut self, number: &PhoneNumber, now: Ts) {
        let Some(before) = self.numbers.get(number).cloned() else { return };
        if before.holder.is_some() {
            return;
        }
        self.unindex_number(&before);
        let mut after = before.clone();
        match &before.target {
            Target::Retired => {
                self.numbers.remove(number);
                self.note_number(number);
                return;
            }
            Target::Dedicated(site) => {
                if after.site.as_ref() != Some(site) {
                    after.site = Some(site.clone());
                    after.last_site = Some(site.clone());
                }
            }
            Target::Shared => {
                if let Some(site) = &before.site {
                    if !self.sites.get(site).is_some_and(|s| s.active) {
                        let cooldown = self.sites.get(site).map_or(Duration::ZERO, |s| s.rules.cooldown);
                        after.site = None;
                        after.cooldown_until = after.cooldown_until.max(now.plus(cooldown));
                    }
                }
            }
        }
        self.index_number(&after);
        if after != before {
            self.numbers.insert(number.clone(), after);
            self.note_number(number);
        }
    }

    fn eligible_in_inventory(&self, site: &SiteId, now: Ts) -> Option<PhoneNumber> {
        self.inventory
            .iter()
            .map(|(_, n)| &self.numbers[n])
            .find(|s| s.last_site.is_none() || s.last_site.as_ref() == Some(site) || s.cooldown_until <= now)
            .map(|s| s.number.clone())
    }
}

mod bookkeeping;
mod history;

#[cfg(test)]
mod tests;
