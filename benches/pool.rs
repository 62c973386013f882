//! Lease+release cycles per second on each store, one task and 32 concurrent tasks.
//!
//! A cycle is what one short visit costs the pool: `acquire` (a fresh lease), `leave` (the
//! visitor closed the tab; `release_grace` is 0 here) and, every 16th cycle of a task, a `reap`
//! that ends the leases left since (so the numbers return to the free set). Time is virtual:
//! each operation takes the next millisecond of a shared counter.
//!
//! Redis: `CALLPOOL_BENCH_REDIS_URL` (default redis://127.0.0.1:6379/). `benches/run.sh` starts
//! a throw-away Redis, measures the raw `EVALSHA` figure with redis-benchmark beside it, and
//! runs this. See BENCHMARKS.md.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool};
use callpool_pool::{NumberSpec, PhoneNumber, Pool, PoolSpec, SessionAttrs, SiteId, SiteRules, Ts, VisitorId};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const REAP_EVERY: u64 = 16;
const NUMBERS: u32 = 1000;

fn spec() -> PoolSpec {
    let site = SiteId::new("bench").unwrap();
    let numbers = (0..NUMBERS)
        .map(|i| NumberSpec {
            number: PhoneNumber::parse(&format!("+74951{:06}", 100_000 + i)).unwrap(),
            dedicated_to: Some(site.clone()),
        })
        .collect();
    let rules = SiteRules {
        max_numbers: NUMBERS,
        reclaim_after_idle: Duration::from_secs(1800),
        max_hold: Duration::from_secs(4 * 3600),
        release_grace: Duration::ZERO,
        shrink_after: Duration::from_secs(86_400),
        cooldown: Duration::from_secs(7 * 86_400),
    };
    PoolSpec { numbers, sites: vec![(site, rules)], history_for: Duration::from_secs(3600) }
}

struct Bench {
    pool: Pool,
    site: SiteId,
    clock: AtomicI64,
    visitors: AtomicU64,
}

impl Bench {
    fn tick(&self) -> Ts {
        Ts::from_millis(self.clock.fetch_add(1, Ordering::Relaxed))
    }

    /// `cycles` lease+release cycles, one after another.
    async fn cycles(&self, cycles: u64) {
        let attrs = SessionAttrs { utm_source: Some("bench".into()), ..Default::default() };
        for i in 0..cycles {
            let v = VisitorId::new(format!("v{}", self.visitors.fetch_add(1, Ordering::Relaxed))).unwrap();
            self.pool.acquire(&self.site, &v, &attrs, self.tick()).await.expect("acquire");
            self.pool.leave(&self.site, &v, self.tick()).await.expect("leave");
            if i % REAP_EVERY == REAP_EVERY - 1 {
                self.pool.reap(self.tick()).await.expect("reap");
            }
        }
        self.pool.reap(self.tick()).await.expect("reap");
    }
}

async fn setup(pool: Pool) -> Arc<Bench> {
    let start = Ts::from_millis(1_767_225_600_000);
    pool.configure(&spec(), start).await.expect("configure");
    Arc::new(Bench {
        pool,
        site: SiteId::new("bench").unwrap(),
        clock: AtomicI64::new(start.as_millis() + 1),
        visitors: AtomicU64::new(0),
    })
}

fn run_group(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, bench: Arc<Bench>) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.warm_up_time(Duration::from_secs(2));
    let b1 = bench.clone();
    g.bench_function("lease_release_cycle/1_task", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let b1 = b1.clone();
            async move {
                let t = Instant::now();
                b1.cycles(iters).await;
                t.elapsed()
            }
        })
    });
    g.bench_function("lease_release_cycle/32_tasks", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let bench = bench.clone();
            async move {
                let per_task = iters.div_ceil(32);
                let t = Instant::now();
                let tasks: Vec<_> = (0..32)
                    .map(|_| {
                        let bench = bench.clone();
                        tokio::spawn(async move { bench.cycles(per_task).await })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("bench task");
                }
                // Report time per cycle actually run (32 * per_task may exceed iters slightly).
                t.elapsed().mul_f64(iters as f64 / (per_task * 32) as f64)
            }
        })
    });
    g.finish();
}

fn pool_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let embedded = rt.block_on(setup(Pool::Embedded(EmbeddedPool::open(dir.path()).unwrap())));
    run_group(c, "embedded", &rt, embedded);

    let url = std::env::var("CALLPOOL_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let opts = RedisOptions { url, prefix: format!("bench:{nanos}"), response_timeout: Duration::from_secs(5) };
    let redis = rt.block_on(async {
        let pool = tokio::time::timeout(Duration::from_secs(10), RedisPool::connect(&opts))
            .await
            .expect("Redis for the benchmark did not answer: set CALLPOOL_BENCH_REDIS_URL or use benches/run.sh")
            .expect("connect");
        setup(Pool::Redis(pool)).await
    });
    run_group(c, "redis", &rt, redis);
}

criterion_group!(benches, pool_benches);
criterion_main!(benches);
