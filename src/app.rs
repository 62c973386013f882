//! What every part of the running service shares: the configuration, the pool, the store, the
//! bus to every node's tabs, the clock, the metrics, and the wake-ups of this node's job runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool, SentinelOptions};
use callpool_pool::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::calls::matcher::Directory;
use crate::clock::Clock;
use crate::config::{BusConfig, Config, StoreConfig, TlsFiles};
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
        // The bus's files first: a problem with them stops the start before the store is opened.
        let bus_tls = match &config.bus {
            BusConfig::RabbitMq { url, tls } if url.starts_with("amqps://") => {
                Some(amqp_tls(tls).map_err(|why| StoreError::Pool(callpool_pool::PoolError::Invalid(why)))?)
            }
            _ => None,
        };
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
            BusConfig::RabbitMq { url, .. } => Arc::new(RabbitBus::start(
                url.clone(),
                bus_tls.unwrap_or_default(),
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
        StoreConfig::Redis { url, prefix, tls, sentinel } => {
            let opts =
                RedisOptions { url: url.clone(), prefix: prefix.clone(), response_timeout: Duration::from_secs(2) };
            let certs = if url.starts_with("rediss://") {
                let files = tls_files("[store] redis", tls).map_err(callpool_pool::PoolError::Invalid)?;
                Some(redis::TlsCertificates {
                    client_tls: files
                        .client
                        .map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
                    root_cert: files.ca,
                })
            } else {
                None
            };
            match sentinel {
                None => RedisPool::connect_tls(&opts, certs).await.map(Pool::Redis),
                Some(s) => {
                    let sentinel = SentinelOptions {
                        sentinels: s.sentinels.clone(),
                        master_name: s.master_name.clone(),
                        username: s.username.clone(),
                        password: s.password.clone(),
                    };
                    RedisPool::connect_sentinel(&opts, &sentinel, certs).await.map(Pool::Redis)
                }
            }
        }
    }
}

/// The PEM files of a TLS connection, read.
struct TlsPem {
    ca: Option<Vec<u8>>,
    /// The certificate (chain) and the private key.
    client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Reads `files` (the settings `{at}_ca_file`, ...); a problem names the setting and the path,
/// never the content.
fn tls_files(at: &str, files: &TlsFiles) -> Result<TlsPem, String> {
    let read = |name: &str, path: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>, String> {
        path.as_ref()
            .map(|p| std::fs::read(p).map_err(|e| format!("{at}_{name}: {}: cannot read it: {e}", p.display())))
            .transpose()
    };
    let ca = read("ca_file", &files.ca_file)?;
    let cert = read("client_cert_file", &files.client_cert_file)?;
    let key = read("client_key_path", &files.client_key_path)?;
    Ok(TlsPem { ca, client: cert.zip(key) })
}

/// The bus's TLS settings for lapin: its CA (trusted beside the system's roots) and client certificate.
fn amqp_tls(files: &TlsFiles) -> Result<lapin::tcp::OwnedTLSConfig, String> {
    let pem = tls_files("[bus] amqp", files)?;
    let text =
        |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| "[bus] amqp_ca_file: not a PEM text file".to_owned());
    Ok(lapin::tcp::OwnedTLSConfig {
        cert_chain: pem.ca.map(text).transpose()?,
        identity: pem.client.map(|(pem, key)| lapin::tcp::OwnedIdentity::PKCS8 { pem, key }),
    })
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
