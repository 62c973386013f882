//! The pool's bookkeeping: the indexes kept beside the numbers and leases (the working sets and
//! the inventory by release time, leases by number, expiry and end), and the log of the keys an
//! operation changed, which the embedded store persists.

use super::*;

impl PoolState {
    /// The keys changed since the last call (empty unless the pool tracks changes).
    pub fn take_changes(&mut self) -> Changes {
        match &mut self.changes {
            Some(c) => std::mem::take(c),
            None => Changes::default(),
        }
    }

    pub(super) fn index_number(&mut self, s: &NumberState) {
        let key = (s.idle_since, s.number.clone());
        match &s.site {
            Some(site) => {
                let w = self.working.entry(site.clone()).or_default();
                w.numbers.insert(s.number.clone());
                if s.holder.is_none() {
                    w.free.insert(key);
                }
            }
            None => {
                self.inventory.insert(key);
            }
        }
    }

    pub(super) fn unindex_number(&mut self, s: &NumberState) {
        let key = (s.idle_since, s.number.clone());
        match &s.site {
            Some(site) => {
                if let Some(w) = self.working.get_mut(site) {
                    w.numbers.remove(&s.number);
                    w.free.remove(&key);
                }
            }
            None => {
                self.inventory.remove(&key);
            }
        }
    }

    pub(super) fn index_lease(&mut self, l: &Lease) {
        self.by_number.entry(l.number.clone()).or_default().insert((l.started_at, l.id));
        match l.ended_at {
            None => {
                self.expiry.insert((l.expires_at, l.id));
                self.live.insert((l.site.clone(), l.visitor.clone()), l.id);
            }
            Some(t) => {
                self.ended.insert((t, l.id));
            }
        }
    }

    pub(super) fn unindex_lease(&mut self, l: &Lease) {
        if let Some(set) = self.by_number.get_mut(&l.number) {
            set.remove(&(l.started_at, l.id));
            if set.is_empty() {
                self.by_number.remove(&l.number);
            }
        }
        match l.ended_at {
            None => {
                self.expiry.remove(&(l.expires_at, l.id));
            }
            Some(t) => {
                self.ended.remove(&(t, l.id));
            }
        }
    }

    pub(super) fn note_number(&mut self, n: &PhoneNumber) {
        if let Some(c) = &mut self.changes {
            c.numbers.insert(n.clone());
        }
    }

    pub(super) fn note_site(&mut self, s: &SiteId) {
        if let Some(c) = &mut self.changes {
            c.sites.insert(s.clone());
        }
    }

    pub(super) fn note_lease(&mut self, id: LeaseId) {
        if let Some(c) = &mut self.changes {
            c.leases.insert(id);
        }
    }

    pub(super) fn note_meta(&mut self) {
        if let Some(c) = &mut self.changes {
            c.meta = true;
        }
    }
}
