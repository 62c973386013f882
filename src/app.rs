//! What every part of the running service shares: the configuration, the pool, the store, the
//! bus to every node's tabs, the clock, the metrics, and the wake-ups of this node's job runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool};
use callpool_pool::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::calls::matcher::Directory;
use crate::clock::Clock;
use crate::config::{BusConfig, Config, StoreConfig};
use crate::live::bus::{Bus, InProcessBus, RabbitBus};
use crate::metrics::Metrics;
use crate::store::jobs::Planned;
use crate::store::{Store, StoreError};

pub struct App {
    pub config: Config,
    pub pool: Pool,
    /// Calls, callbacks, jobs, visits and usage, in the same store as the pool.
    pub store: Store,
    /// Which number belongs where, for the call matcher (from the configuration).
    pub directory: Directory,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Wakes this node's job runner when jobs became due here (other nodes poll).
    pub job_wake: JobWake,
    /// Reaches every node's tabs (in-process, or RabbitMQ in a cluster).
    pub bus: Arc<dyn Bus>,
    /// Stops what the app runs in the background (the bus's connection) when the node stops.
    pub stop: CancellationToken,
    /// The callback form's per-address and per-visitor limits on this node.
    pub callback_limiters: crate::callback::limits::NodeLimiters,
}

impl App {
    /// Opens the configured store and brings it in line with the configuration.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<App, StoreError> {
        let (pool, store) = open_stores(&config).await?;
        pool.configure(&config.pool_spec(), clock.now()).await?;
        let directory = config.directory();
        let callback_limiters = crate::callback::limits::NodeLimiters::new(
            config.sites.iter().filter_map(|s| s.callback.as_ref().map(|c| (&s.id, &c.limits))),
        );
        let metrics = Metrics::new();
        metrics.watch(&config, clock.now());
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
        Ok(App {
            config,
            pool,
            store,
            directory,
            clock,
            metrics,
            job_wake: JobWake::default(),
            bus,
            stop,
            callback_limiters,
        })
    }
}

/// Opens the pool's store the configuration names. Redis: waits (with backoff, logged) until it answers.
pub async fn open_pool(config: &Config) -> Result<Pool, callpool_pool::PoolError> {
    match &config.store {
        StoreConfig::Embedded { data_dir } => EmbeddedPool::open(data_dir).map(Pool::Embedded),
        StoreConfig::Redis { url, prefix } => {
            let opts =
                RedisOptions { url: url.clone(), prefix: prefix.clone(), response_timeout: Duration::from_secs(2) };
            RedisPool::connect(&opts).await.map(Pool::Redis)
        }
    }
}

/// Opens the pool and the store the configuration names, for a tool (no server).
pub async fn open_stores(config: &Config) -> Result<(Pool, Store), StoreError> {
    let pool = open_pool(config).await?;
    let data_dir = match &config.store {
        StoreConfig::Embedded { data_dir } => Some(data_dir.as_path()),
        StoreConfig::Redis { .. } => None,
    };
    let store = Store::open(&pool, data_dir)?;
    Ok((pool, store))
}

/// A wake-up per kind of job: whoever plans jobs due now wakes their kinds' tasks on this node.
#[derive(Default)]
pub struct JobWake(Mutex<HashMap<&'static str, Arc<Notify>>>);

impl JobWake {
    fn get(&self, kind: &'static str) -> Arc<Notify> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default().clone()
    }

    pub fn wake(&self, kind: &'static str) {
        self.get(kind).notify_one();
    }

    /// Wakes the kinds of `jobs`.
    pub fn wake_all(&self, jobs: &[Planned]) {
        for j in jobs {
            self.wake(j.kind);
        }
    }

    /// Resolves when `kind` is woken (at once if it was woken since the last wait).
    pub async fn notified(&self, kind: &'static str) {
        self.get(kind).notified().await;
    }
}
