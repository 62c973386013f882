//! Concurrency stress against a real Redis: many tasks on several connections lease, renew,
//! leave, reap and shrink on two small sites that share a small inventory, with the clock
//! handed out slightly out of order (as from several nodes). Afterwards the history must show
//! that no number ever had two holders at once and that no number moved to the other site
//! inside its cooldown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use callpool_pool::redis_store::RedisOptions;
use callpool_pool::{Grant, Lease, Pool, PoolSpec, SessionAttrs, SiteRules, Ts};

const MS: Duration = Duration::from_millis(1);
const TASKS: u64 = 32;
const OPS_PER_TASK: u64 = 400;

fn stress_rules() -> SiteRules {
    SiteRules {
        max_numbers: 5,
        reclaim_after_idle: 40 * MS,
        max_hold: 150 * MS,
        release_grace: 5 * MS,
        shrink_after: 30 * MS,
        cooldown: 60 * MS,
    }
}

/// A small xorshift generator: the test needs cheap, seeded randomness, not a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_number_has_two_holders_or_crosses_sites_inside_its_cooldown() {
    let opts = RedisOptions { url: redis_url(), prefix: fresh_prefix("stress"), response_timeout: 5 * SEC };
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(Pool::Redis(connect_redis(&opts).await));
    }
    let spec = PoolSpec {
        numbers: shared(0..8),
        sites: vec![(site("a"), stress_rules()), (site("b"), stress_rules())],
        history_for: DAY,
    };
    conns[0].configure(&spec, T0).await.unwrap();

    let clock = Arc::new(AtomicI64::new(T0.as_millis()));
    let granted = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let pool = conns[(task % 4) as usize].clone();
        let (clock, granted, exhausted) = (clock.clone(), granted.clone(), exhausted.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            for _ in 0..OPS_PER_TASK {
                let now = Ts::from_millis(clock.fetch_add(rng.below(2) as i64, Ordering::SeqCst));
                // Traffic moves between the sites in phases, so numbers shrink away from the
                // quiet site and the busy one draws them after their cooldown.
                let busy_a = ((now.as_millis() - T0.as_millis()) / 300) % 2 == 0;
                let s = site(if busy_a == (rng.below(30) != 0) { "a" } else { "b" });
                let v = visitor(rng.below(12) as u32);
                match rng.below(10) {
                    0..=4 => match pool.acquire(&s, &v, &SessionAttrs::default(), now).await.unwrap() {
                        Grant::Leased { .. } => granted.fetch_add(1, Ordering::Relaxed),
                        Grant::Exhausted => exhausted.fetch_add(1, Ordering::Relaxed),
                    },
                    5 => pool.touch(&s, &v, now).await.unwrap().map_or(0, |_| 0),
                    6 => pool.leave(&s, &v, now).await.unwrap().map_or(0, |_| 0),
                    7 | 8 => pool.reap(now).await.unwrap().len() as u64,
                    _ => pool.shrink(now).await.unwrap().len() as u64,
                };
            }
        }));
    }
    for t in tasks {
        t.await.expect("stress task");
    }
    let end = Ts::from_millis(clock.load(Ordering::SeqCst)).plus(Duration::from_secs(1));
    conns[0].reap(end).await.unwrap();

    let mut by_number: BTreeMap<String, Vec<Lease>> = BTreeMap::new();
    for i in 0..8 {
        let all = conns[1].last_holders(&num(i), end, DAY).await.unwrap();
        by_number.insert(num(i).to_string(), all.into_iter().rev().collect());
    }
    let total: usize = by_number.values().map(Vec::len).sum();
    let (granted, exhausted) = (granted.load(Ordering::Relaxed), exhausted.load(Ordering::Relaxed));
    assert!(total > 250, "the stress produced too few leases to mean anything: {total}");
    assert!(exhausted > 0, "the stress never exhausted the pool");
    let mut moves = 0;
    for (number, leases) in &by_number {
        for pair in leases.windows(2) {
            let (prev, next) = (&pair[0], &pair[1]);
            assert!(
                next.started_at >= prev.end(),
                "{number} had two holders: lease {} ({}..{}) and lease {} from {}",
                prev.id,
                prev.started_at,
                prev.end(),
                next.id,
                next.started_at
            );
            if next.site != prev.site {
                moves += 1;
                let r = stress_rules();
                let free_at = prev.end().plus(r.shrink_after).plus(r.cooldown);
                assert!(
                    next.started_at >= free_at,
                    "{number} moved from {} to {} at {}, inside the cooldown that ends at {free_at}",
                    prev.site,
                    next.site,
                    next.started_at
                );
            }
        }
    }
    assert!(moves >= 5, "no number ever moved between sites: the cooldown rule was not exercised");
    eprintln!("stress: {granted} grants ({total} distinct leases), {exhausted} exhausted, {moves} moves between sites");
}
