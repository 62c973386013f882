//! The pool rules' unit tests.

use super::*;

const T0: Ts = Ts::from_millis(1_767_225_600_000);
const MIN: Duration = Duration::from_secs(60);

fn n(i: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+74951{:06}", 230_000 + i)).unwrap()
}

fn s(id: &str) -> SiteId {
    SiteId::new(id).unwrap()
}

fn v(id: &str) -> VisitorId {
    VisitorId::new(id).unwrap()
}

fn rules(max_numbers: u32) -> SiteRules {
    SiteRules {
        max_numbers,
        reclaim_after_idle: 30 * MIN,
        max_hold: 240 * MIN,
        release_grace: 2 * MIN,
        shrink_after: 1440 * MIN,
        cooldown: 7 * 1440 * MIN,
    }
}

fn pool(numbers: Vec<NumberSpec>, sites: &[&str]) -> PoolState {
    let mut p = PoolState::new(true);
    let spec = PoolSpec { numbers, sites: sites.iter().map(|id| (s(id), rules(3))).collect(), history_for: 1440 * MIN };
    p.configure(&spec, T0);
    p
}

fn leased(g: Option<Grant>) -> Lease {
    match g {
        Some(Grant::Leased { lease, .. }) => lease,
        other => panic!("expected a lease, got {other:?}"),
    }
}

#[test]
fn operations_report_exactly_the_keys_they_changed() {
    let mut p = pool(vec![NumberSpec { number: n(0), dedicated_to: None }], &["a"]);
    let c = p.take_changes();
    assert_eq!((c.numbers.len(), c.sites.len(), c.leases.len()), (1, 1, 0));
    let l = leased(p.acquire(&s("a"), &v("x"), &SessionAttrs::default(), T0));
    let c = p.take_changes();
    assert_eq!(c.numbers, [n(0)].into());
    assert_eq!(c.leases, [l.id].into());
    assert!(c.meta, "the lease counter moved");
    // Reading changes nothing.
    p.current(&s("a"), &v("x"), T0);
    p.status(&s("a"), T0);
    p.holder_at(&n(0), T0);
    assert!(p.take_changes().is_empty());
    // Nothing expired: a reap at the same time changes nothing either.
    assert!(p.reap(T0).is_empty());
    assert!(p.take_changes().is_empty());
}

#[test]
fn a_pool_rebuilt_from_its_parts_behaves_the_same() {
    let mut p = pool((0..3).map(|i| NumberSpec { number: n(i), dedicated_to: None }).collect(), &["a"]);
    leased(p.acquire(&s("a"), &v("x"), &SessionAttrs::default(), T0));
    leased(p.acquire(&s("a"), &v("y"), &SessionAttrs::default(), T0.plus(MIN)));
    p.leave(&s("a"), &v("x"), T0.plus(2 * MIN));
    let parts = StoredParts {
        numbers: p.numbers().cloned().collect(),
        sites: p.sites().map(|(k, v)| (k.clone(), v.clone())).collect(),
        leases: (1..p.next_lease_id()).filter_map(|i| p.lease(LeaseId(i)).cloned()).collect(),
        visits: ["x", "y"]
            .iter()
            .filter_map(|id| p.visit_record(&s("a"), &v(id)).map(|(vi, t)| (s("a"), v(id), vi, t)))
            .collect(),
        next_lease_id: p.next_lease_id(),
        clock: p.clock(),
        history_for: p.history_for(),
    };
    let mut q = PoolState::from_parts(parts, false);
    let later = T0.plus(10 * MIN);
    assert_eq!(p.reap(later), q.reap(later));
    let (gp, gq) = (
        p.acquire(&s("a"), &v("z"), &SessionAttrs::default(), later),
        q.acquire(&s("a"), &v("z"), &SessionAttrs::default(), later),
    );
    assert_eq!(gp, gq);
    assert_eq!(p.status(&s("a"), later), q.status(&s("a"), later));
}

#[test]
fn a_dedicated_number_moves_to_its_new_site_when_its_lease_ends() {
    let mut p = pool(vec![NumberSpec { number: n(0), dedicated_to: Some(s("a")) }], &["a", "b"]);
    leased(p.acquire(&s("a"), &v("x"), &SessionAttrs::default(), T0));
    let spec = PoolSpec {
        numbers: vec![NumberSpec { number: n(0), dedicated_to: Some(s("b")) }],
        sites: vec![(s("a"), rules(3)), (s("b"), rules(3))],
        history_for: 1440 * MIN,
    };
    p.configure(&spec, T0.plus(MIN));
    assert_eq!(p.number(&n(0)).unwrap().site, Some(s("a")), "still leased by a visitor of a");
    assert_eq!(p.acquire(&s("b"), &v("y"), &SessionAttrs::default(), T0.plus(MIN)), Some(Grant::Exhausted));
    let ended = p.reap(T0.plus(31 * MIN));
    assert_eq!(ended[0].end_reason, Some(EndReason::Idle));
    assert_eq!(p.number(&n(0)).unwrap().site, Some(s("b")));
    assert_eq!(leased(p.acquire(&s("b"), &v("y"), &SessionAttrs::default(), T0.plus(32 * MIN))).number, n(0));
}

#[test]
fn a_removed_site_gives_its_shared_numbers_back_into_cooldown() {
    let mut p = pool(vec![NumberSpec { number: n(0), dedicated_to: None }], &["a", "b"]);
    leased(p.acquire(&s("a"), &v("x"), &SessionAttrs::default(), T0));
    p.reap(T0.plus(30 * MIN));
    let spec = PoolSpec {
        numbers: vec![NumberSpec { number: n(0), dedicated_to: None }],
        sites: vec![(s("b"), rules(3))],
        history_for: 1440 * MIN,
    };
    let removed_at = T0.plus(40 * MIN);
    p.configure(&spec, removed_at);
    let st = p.number(&n(0)).unwrap();
    assert_eq!((st.site.clone(), st.cooldown_until), (None, removed_at.plus(rules(3).cooldown)));
    assert_eq!(p.acquire(&s("a"), &v("x"), &SessionAttrs::default(), removed_at), None, "a is gone");
    assert_eq!(p.acquire(&s("b"), &v("y"), &SessionAttrs::default(), removed_at), Some(Grant::Exhausted));
}
