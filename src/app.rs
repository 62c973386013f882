//! What every part of the running service shares: the configuration, the pool, the store, the
//! bus to every node's tabs, the clock, the metrics, and the wake-ups of this node's job runner.
//!
//! The configuration can change while the node runs (a reload): [`App::config`] hands out the
//! one running now, whole, and a task keeps the one it took for the work at hand; [`App::apply`]
//! brings the pool in line with a new one, then swaps it in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use callpool_pool::embedded::EmbeddedPool;
use callpool_pool::redis_store::{RedisOptions, RedisPool, SentinelOptions};
use callpool_pool::{Pool, Ts};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::callback::limits::NodeLimiters;
use crate::calls::matcher::Directory;
use crate::clock::Clock;
use crate::config::{BusConfig, Config, StoreConfig, TlsFiles};
use crate::live::bus::{Bus, InProcessBus, NodeConfig, RabbitBus};
use crate::metrics::Metrics;
use crate::store::jobs::Planned;
use crate::store::{Store, StoreError};

pub struct App {
    running: ArcSwap<Running>,
    /// Tells who keeps state derived from the configuration that a new one runs (its version).
    changed: tokio::sync::watch::Sender<String>,
    /// Applies one configuration at a time.
    applying: tokio::sync::Mutex<()>,
    /// The configuration version every node runs, as the nodes announced it over the bus.
    pub nodes: Mutex<std::collections::BTreeMap<String, NodeHeard>>,
    pub pool: Pool,
    /// Calls, callbacks, jobs, visits and usage, in the same store as the pool.
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Wakes this node's job runner when jobs became due here (other nodes poll).
    pub job_wake: JobWake,
    /// Reaches every node's tabs (in-process, or RabbitMQ in a cluster).
    pub bus: Arc<dyn Bus>,
    /// Stops what the app runs in the background (the bus's connection) when the node stops.
    pub stop: CancellationToken,
}

/// One configuration as the node runs it, with what follows from it. Dereferences to the
/// [`Config`].
pub struct Running {
    pub config: Config,
    /// Which number belongs where, for the call matcher.
    pub directory: Directory,
    /// The callback form's per-address and per-visitor limits on this node.
    pub callback_limiters: NodeLimiters,
    /// When this node began running it.
    pub since: Ts,
}

impl std::ops::Deref for Running {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Running {
    /// `config` with what follows from it; the limiters of sites whose limits stay the same
    /// carry on from `before` (a reload does not reset a visitor's count).
    fn new(config: Config, before: Option<&Running>, since: Ts) -> Running {
        let forms = config.sites.iter().filter_map(|s| s.callback.as_ref().map(|c| (&s.id, &c.limits)));
        let callback_limiters = NodeLimiters::new(forms, before.map(|b| &b.callback_limiters));
        Running { directory: config.directory(), callback_limiters, config, since }
    }
}

/// What this node last heard from a node about the configuration it runs, and when.
#[derive(Clone, Debug)]
pub struct NodeHeard {
    pub config: NodeConfig,
    pub heard: Ts,
}

/// Settings a node reads once, when it starts: a reload that changes any of them is refused.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (&running.server, &new.server);
    let mut changed = Vec::new();
    let mut check = |name: &str, same: bool| {
        if !same {
            changed.push(format!("{name}: changed; it is read when the node starts, so restart the node to apply it"));
        }
    };
    check("[server] listen", a.listen == b.listen);
    check("[server] ops_listen", a.ops_listen == b.ops_listen);
    check("[server] max_connections", a.max_connections == b.max_connections);
    check("[server] header_timeout", a.header_timeout == b.header_timeout);
    check("[server] shutdown_grace", a.shutdown_grace == b.shutdown_grace);
    check("[server] ws_connects_per_ip_per_minute", a.ws_connects_per_ip_per_minute == b.ws_connects_per_ip_per_minute);
    check("[store]", running.store == new.store);
    check("[bus]", running.bus == new.bus);
    check("[pool] reaper_interval", running.pool.reaper_interval == new.pool.reaper_interval);
    check("[analytics] request_timeout", running.analytics.request_timeout == new.analytics.request_timeout);
    changed
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
        let version = config.version.clone();
        Ok(App {
            running: ArcSwap::from_pointee(Running::new(config, None, clock.now())),
            changed: tokio::sync::watch::Sender::new(version),
            applying: tokio::sync::Mutex::new(()),
            nodes: Mutex::default(),
            pool,
            store,
            clock,
            metrics,
            job_wake: JobWake::default(),
            bus,
            stop,
        })
    }

    /// The configuration running now. Take it once for a piece of work: a reload may swap in
    /// another meanwhile, and the work goes on with the one it began with.
    pub fn config(&self) -> Arc<Running> {
        self.running.load_full()
    }

    /// Resolves each time another configuration starts running, with its version.
    pub fn config_changes(&self) -> tokio::sync::watch::Receiver<String> {
        self.changed.subscribe()
    }

    /// Runs `config` from now on: the pool first (new numbers and sites, removed numbers retired
    /// as their leases end), then the configuration swapped in. `Ok(false)` when it is the
    /// version already running. Refused, with the running one kept, when it changes a setting
    /// read only at start or the store does not take it.
    pub async fn apply(&self, config: Config) -> Result<bool, ApplyError> {
        let _one_at_a_time = self.applying.lock().await;
        let running = self.config();
        if config.version == running.version && !config.version.is_empty() {
            return Ok(false);
        }
        // The node keeps its id (by default one made up when the configuration is read).
        let mut config = config;
        config.server.node_id.clone_from(&running.server.node_id);
        let restart = restart_only_changes(&running, &config);
        if !restart.is_empty() {
            return Err(ApplyError::Restart(restart));
        }
        let now = self.clock.now();
        self.pool.configure(&config.pool_spec(), now).await.map_err(|e| ApplyError::Store(e.to_string()))?;
        self.metrics.watch(&config, now);
        let version = config.version.clone();
        self.running.store(Arc::new(Running::new(config, Some(&running), now)));
        self.changed.send_replace(version);
        Ok(true)
    }
}

impl App {
    /// Writes the running configuration's pool to the store again (after the store lost it), one
    /// apply at a time with reloads.
    pub async fn configure_pool_again(&self) -> Result<(), callpool_pool::PoolError> {
        let _one_at_a_time = self.applying.lock().await;
        self.pool.configure(&self.config().pool_spec(), self.clock.now()).await
    }
}

/// Why a configuration was not applied (the running one stays).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", .0.join("; "))]
    Restart(Vec<String>),
    #[error("the store did not take the new pool configuration: {0}")]
    Store(String),
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
