//! What every part of the running service shares: the configuration, the pool, the calls
//! store, the bus to every node's tabs, the clock and the metrics.

use std::sync::Arc;
use std::time::Duration;

use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool};
use callpool_pool::{Pool, PoolError};
use tokio_util::sync::CancellationToken;

use crate::calls::matcher::Directory;
use crate::calls::store::CallStore;
use crate::clock::Clock;
use crate::config::{BusConfig, Config, StoreConfig};
use crate::live::bus::{Bus, InProcessBus, RabbitBus};
use crate::metrics::Metrics;

pub struct App {
    pub config: Config,
    pub pool: Pool,
    /// Calls, caller memory and the analytics outbox, in the same store as the pool.
    pub calls: CallStore,
    /// Which number belongs where, for the call matcher (from the configuration).
    pub directory: Directory,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Wakes this node's outbox worker when a call became final (other nodes poll).
    pub outbox_wake: tokio::sync::Notify,
    /// Wakes this node's callback worker when a request was stored (other nodes poll).
    pub callback_wake: tokio::sync::Notify,
    /// Reaches every node's tabs (in-process, or RabbitMQ in a cluster).
    pub bus: Arc<dyn Bus>,
    /// Stops what the app runs in the background (the bus's connection) when the node stops.
    pub stop: CancellationToken,
    /// The callback form's per-address and per-visitor limits on this node.
    pub callback_limiters: crate::callback::limits::NodeLimiters,
}

impl App {
    /// Opens the configured store and brings it in line with the configuration.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App, PoolError> {
        let pool = open_store(&config).await?;
        pool.configure(&config.pool_spec(), clock.now()).await?;
        let data_dir = match &config.store {
            StoreConfig::Embedded { data_dir } => Some(data_dir.as_path()),
            StoreConfig::Redis { .. } => None,
        };
        let calls = crate::calls::store::open(&pool, data_dir)?;
        let directory = config.directory();
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let bus: Arc<dyn Bus> = match &config.bus {
            BusConfig::InProcess => Arc::new(InProcessBus::new()),
            BusConfig::RabbitMq { url } => Arc::new(RabbitBus::start(
                url.clone(),
                config.server.node_id.clone(),
                metrics.bus.clone(),
                stop.clone(),
            )),
        };
        let callback_limiters = crate::callback::limits::NodeLimiters::new(
            config.sites.iter().filter_map(|s| s.callback.as_ref().map(|c| (&s.id, &c.limits))),
        );
        Ok(App {
            config,
            pool,
            calls,
            directory,
            clock,
            metrics,
            outbox_wake: Default::default(),
            callback_wake: Default::default(),
            bus,
            stop,
            callback_limiters,
        })
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
