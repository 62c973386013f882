//! What every part of the running service shares: the configuration, the pool, the clock and
//! the metrics.

use std::sync::Arc;
use std::time::Duration;

use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool};
use callpool_pool::{Pool, PoolError};

use crate::clock::Clock;
use crate::config::{Config, StoreConfig};
use crate::metrics::Metrics;

pub struct App {
    pub config: Config,
    pub pool: Pool,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
}

impl App {
    /// Opens the configured store and brings it in line with the configuration.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App, PoolError> {
        let pool = open_store(&config).await?;
        pool.configure(&config.pool_spec(), clock.now()).await?;
        Ok(App { config, pool, clock, metrics: Metrics::new() })
    }
}

/// Opens the store the configuration names. Redis: waits (with backoff, logged) until it answers.
pub async fn open_store(config: &Config) -> Result<Pool, PoolError> {
    match &config.store {
        StoreConfig::Embedded { data_dir } => EmbeddedPool::open(data_dir).map(Pool::Embedded),
        StoreConfig::Redis { url, prefix } => {
            let opts =
                RedisOptions { url: url.clone(), prefix: prefix.clone(), response_timeout: Duration::from_secs(2) };
            RedisPool::connect(&opts).await.map(Pool::Redis)
        }
    }
}
