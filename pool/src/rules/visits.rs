//! The visits in the pool's rules: a visit begins with its first page view and ends
//! `reclaim_after_idle` after its last activity; a page view ([`PoolState::view`]) and the moment
//! the delay runs out ([`PoolState::acquire_due`]) are each one operation of the pool.

use std::time::Duration;

use super::{Grant, PoolState};
use crate::types::{Lease, SessionAttrs, SiteId, Ts, Visit, VisitorId};

/// What a page view found ([`PoolState::view`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewed {
    pub visit: Visit,
    /// This view began the visit (no live visit before it): of the nodes that see the visitor's
    /// first tabs at once, exactly one is told so.
    pub began: bool,
    /// The visitor's live lease, extended.
    pub lease: Option<Lease>,
}

/// What [`PoolState::acquire_due`] came to.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// The visit is old enough: a lease was asked for.
    Granted(Grant),
    /// The visit is younger than the delay: it runs out then.
    Later(Ts),
    /// The visit's lease ended (the visitor sees the default number after it).
    Ended,
}

impl PoolState {
    /// A page view: the visitor's live visit, refreshed, or a new one beginning now. `None` for
    /// an unknown or removed site.
    pub fn visit(&mut self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Visit> {
        let now = self.advance(now);
        if !self.sites.get(site)?.active {
            return None;
        }
        let v =
            self.live_visit(site, visitor, now).unwrap_or(Visit { first_seen: now, last_seen: now, ended_at: None });
        self.active_visit(site, visitor, v, now);
        Some(Visit { last_seen: now, ..v })
    }

    /// A page view ([`PoolState::visit`]) that also counts as activity ([`PoolState::touch`]):
    /// the visit, whether this view began it, and the visitor's live lease, extended, if it
    /// holds one.
    pub fn view(&mut self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Viewed> {
        let began = self.current_visit(site, visitor, now).is_none();
        let visit = self.visit(site, visitor, now)?;
        Some(Viewed { visit, began, lease: self.touch(site, visitor, now) })
    }

    /// A lease for the visitor once its visit is `delay` old: [`Due::Later`] while it is younger,
    /// [`Due::Ended`] once its lease ended; a visitor without a live visit begins one now. `None`
    /// for an unknown or removed site.
    pub fn acquire_due(
        &mut self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
        delay: Duration,
    ) -> Option<Due> {
        let now = self.advance(now);
        if !self.sites.get(site)?.active {
            return None;
        }
        let v = match self.live_visit(site, visitor, now) {
            Some(v) => v,
            None => {
                let v = Visit { first_seen: now, last_seen: now, ended_at: None };
                self.active_visit(site, visitor, v, now);
                v
            }
        };
        if v.ended_at.is_some() {
            return Some(Due::Ended);
        }
        let due = v.first_seen.plus(delay);
        if now < due {
            return Some(Due::Later(due));
        }
        self.acquire(site, visitor, attrs, now).map(Due::Granted)
    }

    pub(super) fn live_visit(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Visit> {
        let (v, end) = *self.visits.get(&(site.clone(), visitor.clone()))?;
        (end > now).then_some(v)
    }

    /// Stores (or with `None` forgets) a visit and the time it ends if nothing happens, keeping
    /// the expiry index in step.
    pub(super) fn put_visit(&mut self, site: SiteId, visitor: VisitorId, v: Option<(Visit, Ts)>) {
        let key = (site, visitor);
        if let Some((_, end)) = self.visits.remove(&key) {
            self.visit_expiry.remove(&(end, key.0.clone(), key.1.clone()));
        }
        if let Some((v, end)) = v {
            self.visit_expiry.insert((end, key.0.clone(), key.1.clone()));
            self.visits.insert(key.clone(), (v, end));
        }
        if let Some(c) = &mut self.changes {
            c.visits.insert(key);
        }
    }

    /// A visit active at `now`: it ends `reclaim_after_idle` later unless active again.
    pub(super) fn active_visit(&mut self, site: &SiteId, visitor: &VisitorId, v: Visit, now: Ts) {
        let idle = self.sites.get(site).map_or(Duration::ZERO, |s| s.rules.reclaim_after_idle);
        self.put_visit(site.clone(), visitor.clone(), Some((Visit { last_seen: now, ..v }, now.plus(idle))));
    }

    /// The visitor's visit, if one is alive at `now`.
    pub fn current_visit(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Option<Visit> {
        self.live_visit(site, visitor, now.max(self.clock))
    }

    /// A stored visit, alive or not, with the time it ends (for a store that persists them).
    pub fn visit_record(&self, site: &SiteId, visitor: &VisitorId) -> Option<(Visit, Ts)> {
        self.visits.get(&(site.clone(), visitor.clone())).copied()
    }
}
