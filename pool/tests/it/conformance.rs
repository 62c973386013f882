//! One conformance suite, run against both stores: each scenario must give the same answers
//! from the embedded store and from Redis.

use crate::common::*;
use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::RedisOptions;
use callpool_pool::{EndReason, Grant, Lease, NumberSpec, Pool, PoolError, SessionAttrs, SiteId, Ts, VisitorId};
use std::time::Duration;

async fn lease(pool: &Pool, s: &SiteId, v: &VisitorId, now: Ts) -> (Lease, bool) {
    match pool.acquire(s, v, &SessionAttrs::default(), now).await.expect("acquire") {
        Grant::Leased { lease, fresh } => (lease, fresh),
        Grant::Exhausted => panic!("{s}/{v}: pool exhausted at {now}"),
    }
}

/// Runs `scenario` against each store, naming the store in any failure.
macro_rules! conformance {
    ($name:ident, |$pool:ident, $kind:ident| $body:block) => {
        #[tokio::test]
        async fn $name() {
            for ($kind, $pool, _dir) in backends(stringify!($name)).await {
                let $pool = &$pool;
                let _ = $kind;
                $body
            }
        }
    };
}

conformance!(lease_is_idempotent_per_visitor, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..3), &[("a", rules(3))]), T0).await.unwrap();
    let (first, fresh) = lease(pool, &a, &visitor(1), T0).await;
    assert!(fresh, "{kind}");
    assert_eq!(first.number, num(0), "{kind}: equal idle times go out smallest number first");
    assert_eq!(first.expires_at, T0.plus(30 * MIN), "{kind}");
    let (again, fresh) = lease(pool, &a, &visitor(1), T0.plus(MIN)).await;
    assert!(!fresh, "{kind}");
    assert_eq!((again.id, &again.number), (first.id, &first.number), "{kind}: same lease");
    assert_eq!(again.expires_at, T0.plus(31 * MIN), "{kind}: asking again counts as activity");
    let (other, _) = lease(pool, &a, &visitor(2), T0).await;
    assert_eq!(other.number, num(1), "{kind}");
    assert_ne!(other.id, first.id, "{kind}");
    let current = pool.current(&a, &visitor(1), T0.plus(2 * MIN)).await.unwrap().unwrap();
    assert_eq!(current.expires_at, T0.plus(31 * MIN), "{kind}: current is read-only");
});

conformance!(activity_renews_up_to_max_hold, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..1), &[("a", rules(1))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await;
    assert_eq!(pool.touch(&a, &visitor(2), T0).await.unwrap(), None, "{kind}: no lease, nothing to renew");
    let mut t = T0;
    for _ in 0..11 {
        t = t.plus(20 * MIN);
        let l = pool.touch(&a, &visitor(1), t).await.unwrap().expect("live lease");
        assert_eq!(l.expires_at, t.plus(30 * MIN).min(T0.plus(4 * HOUR)), "{kind} at {t}");
    }
    let ended = pool.reap(T0.plus(4 * HOUR)).await.unwrap();
    assert_eq!(ended.len(), 1, "{kind}");
    assert_eq!(ended[0].end_reason, Some(EndReason::MaxHold), "{kind}");
    assert_eq!(ended[0].ended_at, Some(T0.plus(4 * HOUR)), "{kind}");
    assert_eq!(pool.touch(&a, &visitor(1), T0.plus(4 * HOUR)).await.unwrap(), None, "{kind}");
});

conformance!(idle_leases_are_reclaimed_once_at_their_expiry, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..2), &[("a", rules(2))]), T0).await.unwrap();
    let (l, _) = lease(pool, &a, &visitor(1), T0).await;
    assert!(pool.reap(T0.plus(29 * MIN)).await.unwrap().is_empty(), "{kind}");
    assert_eq!(pool.touch(&a, &visitor(1), T0.plus(30 * MIN)).await.unwrap(), None, "{kind}: expired at 30 min");
    // The reaper runs late; the lease still ends at its expiry.
    let ended = pool.reap(T0.plus(45 * MIN)).await.unwrap();
    assert_eq!(ended.len(), 1, "{kind}");
    assert_eq!(ended[0].id, l.id, "{kind}");
    assert_eq!(ended[0].ended_at, Some(T0.plus(30 * MIN)), "{kind}");
    assert_eq!(ended[0].end_reason, Some(EndReason::Idle), "{kind}");
    assert!(pool.reap(T0.plus(46 * MIN)).await.unwrap().is_empty(), "{kind}: reclaimed exactly once");
    let st = pool.status(&a, T0.plus(46 * MIN)).await.unwrap().unwrap();
    assert_eq!((st.working, st.leased, st.free), (1, 0, 1), "{kind}");
    // Asking after expiry without a reap in between starts a new lease.
    let (l2, fresh) = lease(pool, &a, &visitor(1), T0.plus(50 * MIN)).await;
    assert!(fresh, "{kind}");
    assert_ne!(l2.id, l.id, "{kind}");
    let (l3, fresh) = lease(pool, &a, &visitor(1), T0.plus(90 * MIN)).await;
    assert!(fresh && l3.id != l2.id, "{kind}: the stale lease ended and a new one began");
    let old = pool.holder_at(&l2.number, T0.plus(60 * MIN)).await.unwrap().unwrap();
    assert_eq!((old.id, old.ended_at), (l2.id, Some(T0.plus(80 * MIN))), "{kind}");
});

conformance!(leaving_ends_the_lease_after_the_grace_unless_the_visitor_returns, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..2), &[("a", rules(2))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await;
    lease(pool, &a, &visitor(2), T0).await;
    let l = pool.leave(&a, &visitor(1), T0.plus(MIN)).await.unwrap().unwrap();
    assert!(l.left, "{kind}");
    assert_eq!(l.expires_at, T0.plus(3 * MIN), "{kind}");
    pool.leave(&a, &visitor(2), T0.plus(MIN)).await.unwrap().unwrap();
    // Visitor 2 comes back in another tab within the grace.
    let back = pool.touch(&a, &visitor(2), T0.plus(2 * MIN)).await.unwrap().unwrap();
    assert!(!back.left, "{kind}");
    assert_eq!(back.expires_at, T0.plus(32 * MIN), "{kind}");
    let ended = pool.reap(T0.plus(3 * MIN)).await.unwrap();
    assert_eq!(ended.len(), 1, "{kind}");
    assert_eq!((&ended[0].visitor, ended[0].end_reason), (&visitor(1), Some(EndReason::Left)), "{kind}");
    assert_eq!(pool.leave(&a, &visitor(9), T0).await.unwrap(), None, "{kind}");
});

conformance!(free_numbers_go_out_least_recently_released_first, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..3), &[("a", rules(3))]), T0).await.unwrap();
    for v in 0..3 {
        lease(pool, &a, &visitor(v), T0).await;
    }
    // Release number 1, then 2, then 0.
    for (i, v) in [1, 2, 0].into_iter().enumerate() {
        let t = T0.plus(3 * MIN * (i as u32 + 1));
        pool.leave(&a, &visitor(v), t).await.unwrap();
        pool.reap(t.plus(2 * MIN)).await.unwrap();
    }
    let t = T0.plus(HOUR);
    let mut got = Vec::new();
    for v in [10, 11, 12] {
        got.push(lease(pool, &a, &visitor(v), t).await.0.number);
    }
    assert_eq!(got, vec![num(1), num(2), num(0)], "{kind}");
});

conformance!(working_set_grows_on_demand_up_to_max_numbers_then_exhausts, |pool, kind| {
    let a = site("a");
    let mut numbers = shared(0..3);
    numbers.push(NumberSpec { number: num(7), dedicated_to: Some(a.clone()) });
    pool.configure(&spec(numbers, &[("a", rules(3))]), T0).await.unwrap();
    let st = pool.status(&a, T0).await.unwrap().unwrap();
    assert_eq!((st.working, st.dedicated, st.free), (1, 1, 1), "{kind}: only the dedicated number at first");
    assert_eq!(lease(pool, &a, &visitor(1), T0).await.0.number, num(7), "{kind}: working set before inventory");
    assert_eq!(lease(pool, &a, &visitor(2), T0).await.0.number, num(0), "{kind}");
    assert_eq!(lease(pool, &a, &visitor(3), T0).await.0.number, num(1), "{kind}");
    let grant = pool.acquire(&a, &visitor(4), &SessionAttrs::default(), T0).await.unwrap();
    assert_eq!(grant, Grant::Exhausted, "{kind}: max_numbers reached although the inventory has more");
    let st = pool.status(&a, T0).await.unwrap().unwrap();
    assert_eq!((st.working, st.leased, st.exhausted_total), (3, 3, 1), "{kind}");
    pool.leave(&a, &visitor(2), T0).await.unwrap();
    pool.reap(T0.plus(2 * MIN)).await.unwrap();
    assert_eq!(lease(pool, &a, &visitor(4), T0.plus(3 * MIN)).await.0.number, num(0), "{kind}");
    assert_eq!(pool.status(&a, T0).await.unwrap().unwrap().exhausted_total, 1, "{kind}");
});

conformance!(unused_numbers_shrink_back_and_cool_down_before_another_site, |pool, kind| {
    let (a, b) = (site("a"), site("b"));
    pool.configure(&spec(shared(0..1), &[("a", rules(1)), ("b", rules(1))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await;
    pool.leave(&a, &visitor(1), T0).await.unwrap();
    pool.reap(T0.plus(2 * MIN)).await.unwrap(); // idle since T0+2min
    let idle_since = T0.plus(2 * MIN);
    assert!(pool.shrink(idle_since.plus(DAY).minus(SEC)).await.unwrap().is_empty(), "{kind}");
    let back = pool.shrink(idle_since.plus(DAY)).await.unwrap();
    assert_eq!(back, vec![(a.clone(), num(0))], "{kind}");
    let st = pool.status(&a, idle_since.plus(DAY)).await.unwrap().unwrap();
    assert_eq!((st.working, st.cooling), (0, 1), "{kind}");
    // Site b waits out a's cooldown, counted from the give-back.
    let cool_end = idle_since.plus(DAY).plus(7 * DAY);
    let early = pool.acquire(&b, &visitor(2), &SessionAttrs::default(), cool_end.minus(SEC)).await.unwrap();
    assert_eq!(early, Grant::Exhausted, "{kind}: inside a's cooldown");
    let (l, _) = lease(pool, &b, &visitor(2), cool_end).await;
    assert_eq!(l.number, num(0), "{kind}");
    assert_eq!(pool.status(&a, cool_end).await.unwrap().unwrap().cooling, 0, "{kind}");
});

conformance!(a_number_returns_to_its_own_site_without_cooldown, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..1), &[("a", rules(1)), ("b", rules(1))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await;
    pool.reap(T0.plus(30 * MIN)).await.unwrap();
    let back = pool.shrink(T0.plus(30 * MIN).plus(DAY)).await.unwrap();
    assert_eq!(back.len(), 1, "{kind}");
    let (l, _) = lease(pool, &a, &visitor(2), T0.plus(30 * MIN).plus(DAY).plus(SEC)).await;
    assert_eq!(l.number, num(0), "{kind}");
});

conformance!(dedicated_numbers_never_shrink, |pool, kind| {
    let a = site("a");
    let numbers = vec![NumberSpec { number: num(0), dedicated_to: Some(a.clone()) }];
    pool.configure(&spec(numbers, &[("a", rules(1))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await;
    pool.reap(T0.plus(HOUR)).await.unwrap();
    assert!(pool.shrink(T0.plus(30 * DAY)).await.unwrap().is_empty(), "{kind}");
    assert_eq!(pool.status(&a, T0.plus(30 * DAY)).await.unwrap().unwrap().working, 1, "{kind}");
});

conformance!(history_answers_who_held_a_number_when, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..1), &[("a", rules(1))]), T0).await.unwrap();
    let attrs = SessionAttrs { utm_source: Some("google".into()), gclid: Some("abc".into()), ..Default::default() };
    let first = match pool.acquire(&a, &visitor(1), &attrs, T0).await.unwrap() {
        Grant::Leased { lease, .. } => lease,
        Grant::Exhausted => panic!("{kind}: exhausted"),
    };
    pool.reap(T0.plus(30 * MIN)).await.unwrap();
    let (second, _) = lease(pool, &a, &visitor(2), T0.plus(HOUR)).await;
    pool.leave(&a, &visitor(2), T0.plus(HOUR + 10 * MIN)).await.unwrap();
    pool.reap(T0.plus(2 * HOUR)).await.unwrap();
    let n = num(0);

    let at = |t| pool.holder_at(&n, t);
    assert_eq!(at(T0.minus(SEC)).await.unwrap(), None, "{kind}: before any lease");
    let h = at(T0).await.unwrap().unwrap();
    assert_eq!((h.id, &h.attrs), (first.id, &attrs), "{kind}: the session travels with the lease");
    assert_eq!(
        at(T0.plus(30 * MIN).minus(Duration::from_millis(1))).await.unwrap().map(|l| l.id),
        Some(first.id),
        "{kind}"
    );
    assert_eq!(at(T0.plus(30 * MIN)).await.unwrap(), None, "{kind}: the end is exclusive");
    assert_eq!(at(T0.plus(HOUR)).await.unwrap().map(|l| l.id), Some(second.id), "{kind}: a start is inclusive");

    // A call at 2h: the last lease ended at 1h12m (left at 1h10m plus 2 min grace).
    let recent = pool.last_holders(&n, T0.plus(2 * HOUR), HOUR).await.unwrap();
    assert_eq!(recent.iter().map(|l| l.id).collect::<Vec<_>>(), vec![second.id], "{kind}");
    assert_eq!(recent[0].ended_at, Some(T0.plus(HOUR + 12 * MIN)), "{kind}");
    let both = pool.last_holders(&n, T0.plus(2 * HOUR), 2 * HOUR).await.unwrap();
    assert_eq!(both.iter().map(|l| l.id).collect::<Vec<_>>(), vec![second.id, first.id], "{kind}: latest first");
    assert!(pool.last_holders(&n, T0.plus(20 * MIN), HOUR).await.unwrap().is_empty(), "{kind}: still held then");
    assert!(pool.holder_at(&num(5), T0).await.unwrap().is_none(), "{kind}: a number never leased");
    // What the call matcher reads: latest first, down to and including the first lease that
    // ended before the window (which tells the site the number served last).
    let ids = |v: Vec<callpool_pool::Lease>| v.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(
        ids(pool.leases_before(&n, T0.plus(2 * HOUR), HOUR).await.unwrap()),
        vec![second.id, first.id],
        "{kind}: the second ended within the hour, the first before it"
    );
    assert_eq!(ids(pool.leases_before(&n, T0.plus(3 * HOUR), MIN).await.unwrap()), vec![second.id], "{kind}: older");
    assert_eq!(
        ids(pool.leases_before(&n, T0.plus(HOUR), 2 * HOUR).await.unwrap()),
        vec![second.id, first.id],
        "{kind}: a lease starting at `at` counts"
    );
    assert_eq!(ids(pool.leases_before(&n, T0.minus(SEC), HOUR).await.unwrap()), vec![], "{kind}: before any");

    // History older than history_for (30 days) is trimmed by the reaper.
    pool.reap(T0.plus(31 * DAY)).await.unwrap();
    assert!(pool.last_holders(&n, T0.plus(2 * HOUR), 2 * HOUR).await.unwrap().is_empty(), "{kind}: trimmed");
});

conformance!(reconfiguring_retires_numbers_once_free_and_removes_sites, |pool, kind| {
    let (a, b) = (site("a"), site("b"));
    pool.configure(&spec(shared(0..3), &[("a", rules(3)), ("b", rules(3))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await; // number 0
    lease(pool, &a, &visitor(2), T0).await; // number 1
    pool.reap(T0.plus(30 * MIN)).await.unwrap();
    lease(pool, &a, &visitor(3), T0.plus(31 * MIN)).await; // number 0 again
                                                           // Numbers 0 (leased) and 1 (free) are removed from the config; site b is removed.
    pool.configure(&spec(shared(2..3), &[("a", rules(3))]), T0.plus(32 * MIN)).await.unwrap();
    let st = pool.status(&a, T0.plus(32 * MIN)).await.unwrap().unwrap();
    assert_eq!((st.working, st.leased), (1, 1), "{kind}: the free retired number left at once");
    match pool.acquire(&b, &visitor(1), &SessionAttrs::default(), T0.plus(32 * MIN)).await {
        Err(PoolError::UnknownSite(s)) => assert_eq!(s, b, "{kind}"),
        other => panic!("{kind}: a removed site must be unknown, got {other:?}"),
    }
    pool.reap(T0.plus(2 * HOUR)).await.unwrap();
    let st = pool.status(&a, T0.plus(2 * HOUR)).await.unwrap().unwrap();
    assert_eq!(st.working, 0, "{kind}: the retired number left when its lease ended");
    let (l, _) = lease(pool, &a, &visitor(4), T0.plus(2 * HOUR)).await;
    assert_eq!(l.number, num(2), "{kind}");
    assert!(pool.holder_at(&num(0), T0.plus(40 * MIN)).await.unwrap().is_some(), "{kind}: history outlives the number");
});

#[tokio::test]
async fn unknown_sites_are_refused_by_both_stores() {
    for (kind, pool, _dir) in backends("unknown_site").await {
        pool.configure(&spec(shared(0..1), &[("a", rules(1))]), T0).await.unwrap();
        let r = pool.acquire(&site("zz"), &visitor(1), &SessionAttrs::default(), T0).await;
        assert!(matches!(r, Err(PoolError::UnknownSite(_))), "{kind}: {r:?}");
        assert_eq!(pool.status(&site("zz"), T0).await.unwrap(), None, "{kind}");
    }
}

#[tokio::test]
async fn embedded_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let held = fill_before_restart(Pool::Embedded(EmbeddedPool::open(dir.path()).unwrap())).await;
    let pool = Pool::Embedded(EmbeddedPool::open(dir.path()).unwrap());
    check_after_restart(&pool, &site("a"), &held, "embedded").await;
}

#[tokio::test]
async fn redis_state_survives_a_reconnect() {
    let opts = RedisOptions { url: redis_url(), prefix: fresh_prefix("restart"), response_timeout: 5 * SEC };
    let held = fill_before_restart(Pool::Redis(connect_redis(&opts).await)).await;
    let pool = Pool::Redis(connect_redis(&opts).await);
    check_after_restart(&pool, &site("a"), &held, "redis").await;
}

/// Leases, an ended lease and a live one, then drops the pool; returns the live lease of visitor 2.
async fn fill_before_restart(pool: Pool) -> Lease {
    let a = site("a");
    pool.configure(&spec(shared(0..2), &[("a", rules(2))]), T0).await.unwrap();
    lease(&pool, &a, &visitor(1), T0).await;
    pool.reap(T0.plus(30 * MIN)).await.unwrap();
    let held = lease(&pool, &a, &visitor(2), T0.plus(31 * MIN)).await.0;
    lease(&pool, &a, &visitor(3), T0.plus(31 * MIN)).await;
    held
}

async fn check_after_restart(pool: &Pool, a: &SiteId, held: &Lease, kind: &str) {
    let now = T0.plus(32 * MIN);
    assert_eq!(pool.current(a, &visitor(2), now).await.unwrap().as_ref(), Some(held), "{kind}");
    let (again, fresh) = lease(pool, a, &visitor(2), now).await;
    assert!(!fresh && again.id == held.id, "{kind}: still the same lease");
    let st = pool.status(a, now).await.unwrap().unwrap();
    assert_eq!((st.working, st.leased), (2, 2), "{kind}");
    let first = pool.holder_at(&num(0), T0).await.unwrap().unwrap();
    assert_eq!(first.visitor, visitor(1), "{kind}: history kept");
    pool.reap(T0.plus(2 * HOUR)).await.unwrap();
    let (next, _) = lease(pool, a, &visitor(4), T0.plus(2 * HOUR)).await;
    assert!(next.id.0 > held.id.0, "{kind}: lease ids keep counting up");
}

conformance!(a_lagging_clock_never_starts_a_lease_before_the_last_one_ended, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..1), &[("a", rules(1))]), T0).await.unwrap();
    lease(pool, &a, &visitor(1), T0).await;
    pool.reap(T0.plus(30 * MIN)).await.unwrap();
    // Another node whose clock runs 10 minutes behind hands out the number next.
    let (l, _) = lease(pool, &a, &visitor(2), T0.plus(20 * MIN)).await;
    assert_eq!(l.started_at, T0.plus(30 * MIN), "{kind}: the pool's time does not run backwards");
    assert_eq!(pool.holder_at(&num(0), T0.plus(25 * MIN)).await.unwrap().unwrap().visitor, visitor(1), "{kind}");
});

conformance!(a_visit_counts_from_the_first_page_view_and_remembers_a_reclaim, |pool, kind| {
    let a = site("a");
    pool.configure(&spec(shared(0..2), &[("a", rules(2))]), T0).await.unwrap();
    let first = pool.view(&a, &visitor(1), T0).await.unwrap().visit;
    assert_eq!((first.first_seen, first.ended_at), (T0, None), "{kind}");
    // A second tab ten seconds later: the same visit, first view unchanged.
    let again = pool.view(&a, &visitor(1), T0.plus(10 * SEC)).await.unwrap().visit;
    assert_eq!((again.first_seen, again.last_seen), (T0, T0.plus(10 * SEC)), "{kind}");
    lease(pool, &a, &visitor(1), T0.plus(50 * SEC)).await;
    pool.touch(&a, &visitor(1), T0.plus(5 * MIN)).await.unwrap();
    // Idle for 30 minutes: the lease ends and the visit remembers it (default_after from now on).
    let ended = pool.reap(T0.plus(35 * MIN)).await.unwrap();
    assert_eq!(ended[0].end_reason, Some(EndReason::Idle), "{kind}");
    let v = pool.current_visit(&a, &visitor(1), T0.plus(34 * MIN)).await.unwrap();
    assert_eq!(v, None, "{kind}: the visit ended with the idle timeout too");
    let next = pool.view(&a, &visitor(1), T0.plus(36 * MIN)).await.unwrap().visit;
    assert_eq!((next.first_seen, next.ended_at), (T0.plus(36 * MIN), None), "{kind}: a new visit begins");

    // Max hold ends the lease while the visit is alive: the visit is marked ended.
    lease(pool, &a, &visitor(1), T0.plus(37 * MIN)).await;
    let mut t = T0.plus(37 * MIN);
    while t < T0.plus(37 * MIN + 4 * HOUR) {
        t = t.plus(10 * MIN);
        pool.touch(&a, &visitor(1), t).await.unwrap();
    }
    pool.reap(t).await.unwrap();
    let v = pool.current_visit(&a, &visitor(1), t).await.unwrap().expect("alive");
    assert_eq!(v.ended_at, Some(T0.plus(37 * MIN + 4 * HOUR)), "{kind}");

    // A visitor who left is not marked: coming back, they get a number again.
    pool.view(&a, &visitor(2), t).await.unwrap();
    lease(pool, &a, &visitor(2), t).await;
    pool.leave(&a, &visitor(2), t).await.unwrap();
    pool.reap(t.plus(2 * MIN)).await.unwrap();
    let v = pool.view(&a, &visitor(2), t.plus(3 * MIN)).await.unwrap().visit;
    assert_eq!((v.first_seen, v.ended_at), (t, None), "{kind}");
    match pool.view(&site("zz"), &visitor(2), t).await {
        Err(PoolError::UnknownSite(_)) => {}
        other => panic!("{kind}: {other:?}"),
    }
});
