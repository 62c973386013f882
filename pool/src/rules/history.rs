//! The lease history the call matcher reads: who held a number when.

use super::*;

impl PoolState {
    /// Who held `number` at `t`, if anyone.
    pub fn holder_at(&self, number: &PhoneNumber, t: Ts) -> Option<Lease> {
        let starts = self.by_number.get(number)?;
        let (_, id) = starts.range(..=(t, LeaseId(u64::MAX))).next_back()?;
        let lease = &self.leases[id];
        lease.covers(t).then(|| lease.clone())
    }

    /// The leases of `number` that ended in `[before - window, before]`, latest end first.
    pub fn last_holders(&self, number: &PhoneNumber, before: Ts, window: Duration) -> Vec<Lease> {
        let from = before.minus(window);
        let Some(starts) = self.by_number.get(number) else { return Vec::new() };
        let mut found: Vec<Lease> = starts
            .range(..=(before, LeaseId(u64::MAX)))
            .map(|(_, id)| &self.leases[id])
            .filter(|l| l.ended_within(from, before))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.end().cmp(&a.end()).then(b.id.cmp(&a.id)));
        found
    }

    /// The leases of `number` that started at or before `at`, latest first, down to and including
    /// the first that ended before `at - window`: what the call matcher needs in one read (the
    /// holder at `at`, the leases that ended within the window, and the latest one before that,
    /// which says which site the number served last).
    pub fn leases_before(&self, number: &PhoneNumber, at: Ts, window: Duration) -> Vec<Lease> {
        let from = at.minus(window);
        let Some(starts) = self.by_number.get(number) else { return Vec::new() };
        let mut found = Vec::new();
        for (_, id) in starts.range(..=(at, LeaseId(u64::MAX))).rev() {
            let lease = &self.leases[id];
            found.push(lease.clone());
            if lease.end() < from {
                break;
            }
        }
        found
    }
}
