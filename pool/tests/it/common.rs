//! What the pool's integration tests share: the two backends, numbers, sites and a clock origin.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool};
use callpool_pool::{NumberSpec, PhoneNumber, Pool, PoolSpec, SiteId, SiteRules, Ts, VisitorId};

/// 2026-01-01T00:00:00Z: tests count time from here.
pub const T0: Ts = Ts::from_millis(1_767_225_600_000);

pub const SEC: Duration = Duration::from_secs(1);
pub const MIN: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

/// The Redis the tests use: `CALLPOOL_TEST_REDIS_URL`, else the default local port.
/// A test that needs Redis fails when it is not there; it never skips.
pub fn redis_url() -> String {
    std::env::var("CALLPOOL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A key prefix no other test (or earlier run) uses.
pub fn fresh_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("test:{name}:{}:{nanos}:{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn redis_pool(name: &str) -> RedisPool {
    let opts = RedisOptions { url: redis_url(), prefix: fresh_prefix(name), response_timeout: Duration::from_secs(5) };
    connect_redis(&opts).await
}

pub async fn connect_redis(opts: &RedisOptions) -> RedisPool {
    match tokio::time::timeout(Duration::from_secs(10), RedisPool::connect(opts)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => panic!("cannot use Redis at {}: {e}", opts.url),
        Err(_) => panic!(
            "Redis at {} did not answer within 10 s: start it, or run the whole suite with ./deploy/test.sh",
            opts.url
        ),
    }
}

/// Both backends, each empty: `("embedded", …)` in a temp dir, `("redis", …)` under a fresh prefix.
pub async fn backends(name: &str) -> Vec<(&'static str, Pool, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = EmbeddedPool::open(dir.path()).expect("open embedded pool");
    vec![("embedded", Pool::Embedded(embedded), Some(dir)), ("redis", Pool::Redis(redis_pool(name).await), None)]
}

/// The i-th test number: valid Moscow numbers +7495123xxxx.
pub fn num(i: u32) -> PhoneNumber {
    PhoneNumber::parse(&format!("+74951{:06}", 230_000 + i)).expect("test numbers are valid")
}

pub fn site(s: &str) -> SiteId {
    SiteId::new(s).expect("valid site id")
}

pub fn visitor(i: u32) -> VisitorId {
    VisitorId::new(format!("v{i}")).expect("valid visitor id")
}

pub fn rules(max_numbers: u32) -> SiteRules {
    SiteRules {
        max_numbers,
        reclaim_after_idle: 30 * MIN,
        max_hold: 4 * HOUR,
        release_grace: 2 * MIN,
        shrink_after: DAY,
        cooldown: 7 * DAY,
    }
}

pub fn shared(numbers: impl IntoIterator<Item = u32>) -> Vec<NumberSpec> {
    numbers.into_iter().map(|i| NumberSpec { number: num(i), dedicated_to: None }).collect()
}

pub fn spec(numbers: Vec<NumberSpec>, sites: &[(&str, SiteRules)]) -> PoolSpec {
    PoolSpec { numbers, sites: sites.iter().map(|(s, r)| (site(s), r.clone())).collect(), history_for: 30 * DAY }
}
