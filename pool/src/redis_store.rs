//! The Redis store: every pool operation is one atomic Lua script, so any number of callpool
//! nodes share one pool and the reaper may run on all of them at once.
//!
//! The scripts live in `pool/lua/` (keys documented in `pool/lua/README.md`); `lib.lua` is
//! prepended to each. Only this module and those scripts build Redis keys. Scripts are sent
//! by `EVALSHA` and loaded again on `NOSCRIPT` (after a Redis restart) by `redis::Script`.
//! The one `ConnectionManager` reconnects by itself; a command that fails because Redis is
//! away answers [`PoolError::Unavailable`], and the visitor keeps the default number.
//!
//! Behind Redis Sentinel ([`RedisPool::connect_sentinel`]) the sentinels name the primary
//! (redis's `sentinel` support, which also checks the node's `ROLE`), and a small follower
//! moves the connection to the new primary after a failover: when a command fails for want of
//! Redis (or answers `READONLY`/`MASTERDOWN`: a demoted primary), and every second anyway.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, Script, Value};

use crate::rules::{Due, Grant, PoolSpec, SiteStatus, Target, Viewed};
use crate::types::{millis, Lease, PhoneNumber, SessionAttrs, SiteId, Ts, Visit, VisitorId};
use crate::PoolError;

mod answers;

use answers::{array, bad, due_from, int, lease, opt_lease, text, visit_from};

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(include_str!("../lua/lib.lua"), "\n", include_str!(concat!("../lua/", $name, ".lua"))))
    };
}

/// How many leases one `reap` script ends at most, so that a backlog never blocks Redis for long.
const REAP_BATCH: usize = 500;

struct Scripts {
    configure: Script,
    acquire: Script,
    acquire_due: Script,
    view: Script,
    touch: Script,
    leave: Script,
    current: Script,
    current_visit: Script,
    reap: Script,
    shrink: Script,
    history: Script,
    status: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            configure: script!("configure"),
            acquire: script!("acquire"),
            acquire_due: script!("acquire_due"),
            view: script!("view"),
            touch: script!("touch"),
            leave: script!("leave"),
            current: script!("current"),
            current_visit: script!("current_visit"),
            reap: script!("reap"),
            shrink: script!("shrink"),
            history: script!("history"),
            status: script!("status"),
        }
    }
}

/// The pool in Redis. Cheap to clone: clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisPool {
    redis: SharedRedis,
    scripts: std::sync::Arc<Scripts>,
}

/// Connection settings for [`RedisPool::connect`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://host:port/db`, or `rediss://` for TLS (see [`RedisPool::connect_tls`])
    pub url: String,
    /// Every key starts with `{prefix}:`; the braces keep all keys in one cluster slot.
    pub prefix: String,
    /// How long one command may take before it answers `Unavailable`.
    pub response_timeout: Duration,
}

/// Where the sentinels are and what they call the primary (see [`RedisPool::connect_sentinel`]).
#[derive(Clone)]
pub struct SentinelOptions {
    /// `(host, port)` of each sentinel; they are asked in this order.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// The sentinels' own credentials (`requirepass`/ACL of the sentinels), if they want them.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelOptions")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Whether `e` means Redis cannot be reached now (as opposed to an answer that is wrong); a node
/// that is no longer the primary (`READONLY`, `MASTERDOWN`) counts as away too.
pub fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
}

/// A Redis error as the pool's error: connection trouble is `Unavailable`, the rest `Storage`.
/// A wrong or missing password (or user): retrying cannot help, so start-up stops and says so.
fn refused_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// A TLS handshake that failed on what it checks (the server's certificate, its name, the
/// client's certificate, a peer that does not speak TLS): retrying cannot help either.
fn refused_tls(e: &redis::RedisError) -> bool {
    use std::error::Error;
    let Some(inner) = e.source().and_then(|s| s.downcast_ref::<std::sync::Arc<dyn Error + Send + Sync>>()) else {
        return false;
    };
    let io = inner.downcast_ref::<std::io::Error>();
    io.and_then(|io| io.get_ref()).is_some_and(|tls| tls.downcast_ref::<rustls::Error>().is_some())
}

fn classify(e: redis::RedisError) -> PoolError {
    if is_unavailable(&e) {
        PoolError::Unavailable(e)
    } else {
        PoolError::Storage(format!("redis: {e}"))
    }
}

/// What the service may share of the pool's Redis for its own data (calls, callbacks, jobs,
/// visits): the one multiplexed connection and the key prefix. Its keys live under the same
/// `{prefix}` (one cluster slot, so a script may touch the pool's and its own keys alike) in
/// names the pool does not use. Cheap to clone.
#[derive(Clone)]
pub struct SharedRedis {
    conn: Conn,
    prefix: String,
}

/// The connection: to one address, or to whichever node the sentinels name the primary.
#[derive(Clone)]
enum Conn {
    Direct(ConnectionManager),
    Sentinel(Arc<Follower>),
}

/// At most one look-up this often (commands failing together ask once).
const LOOKUP_GAP: Duration = Duration::from_millis(200);
/// How long one look-up (every sentinel, then the named node's `ROLE`) may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the sentinels are asked anyway (a demoted primary may still answer reads).
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Follows the primary the sentinels name.
struct Follower {
    /// The primary's address and the connection to it.
    current: std::sync::RwLock<(ConnectionAddr, ConnectionManager)>,
    /// Asks the sentinels; one look-up at a time, and when the last one ended.
    sentinel: tokio::sync::Mutex<(SentinelClient, Option<Instant>)>,
    config: ConnectionManagerConfig,
    master_name: String,
}

impl Conn {
    fn get(&self) -> ConnectionManager {
        match self {
            Conn::Direct(c) => c.clone(),
            Conn::Sentinel(f) => f.current.read().unwrap_or_else(|p| p.into_inner()).1.clone(),
        }
    }

    /// After `e`: behind Sentinel, when the primary is away or demoted, asks (in the background)
    /// which node is the primary now; the next command goes there.
    fn after(&self, e: &redis::RedisError) {
        if let Conn::Sentinel(f) = self {
            if is_unavailable(e) {
                let f = f.clone();
                tokio::spawn(async move { f.follow().await });
            }
        }
    }
}

impl Follower {
    /// Asks the sentinels for the primary and moves the connection to it if it is another node.
    async fn follow(&self) {
        let Ok(mut sentinel) = self.sentinel.try_lock() else { return };
        if sentinel.1.is_some_and(|t| t.elapsed() < LOOKUP_GAP) {
            return;
        }
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, sentinel.0.async_get_client()).await;
        sentinel.1 = Some(Instant::now());
        let client = match found {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, master = %self.master_name, "The sentinels name no usable primary now.");
                return;
            }
            Err(_) => {
                tracing::debug!(master = %self.master_name, "The sentinels did not answer in time.");
                return;
            }
        };
        let addr = client.get_connection_info().addr().clone();
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == addr {
            return;
        }
        match tokio::time::timeout(LOOKUP_TIMEOUT, ConnectionManager::new_with_config(client, self.config.clone()))
            .await
        {
            Ok(Ok(conn)) => {
                tracing::warn!(master = %self.master_name, primary = %addr, "Redis Sentinel names another primary; following it.");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (addr, conn);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, primary = %addr, "Cannot reach the primary the sentinels name yet.")
            }
            Err(_) => tracing::warn!(primary = %addr, "Cannot reach the primary the sentinels name yet (timed out)."),
        }
    }

    /// Asks the sentinels every [`WATCH_EVERY`] for as long as the pool is in use.
    fn watch(me: Weak<Follower>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(f) = me.upgrade() else { break };
                f.follow().await;
            }
        });
    }
}

impl SharedRedis {
    /// `{prefix}:part:part...`
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// Runs `script` with `KEYS[1]` = the prefix and `args` (by `EVALSHA`, loading it again
    /// after a Redis restart).
    pub async fn eval(&self, script: &Script, args: &[String]) -> Result<Value, redis::RedisError> {
        let mut inv = script.key(&self.prefix);
        for a in args {
            inv.arg(a);
        }
        let mut c = self.conn.get();
        let out = inv.invoke_async::<Value>(&mut c).await;
        self.checked(out)
    }

    /// `out`, having started a look-up of the primary if it failed for want of one.
    fn checked<T>(&self, out: Result<T, redis::RedisError>) -> Result<T, redis::RedisError> {
        if let Err(e) = &out {
            self.conn.after(e);
        }
        out
    }

    /// One command on the shared connection.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, redis::RedisError> {
        let mut c = self.conn.get();
        let out = cmd.query_async(&mut c).await;
        self.checked(out)
    }

    /// A pipeline on the shared connection.
    pub async fn query_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, redis::RedisError> {
        let mut c = self.conn.get();
        let out = pipe.query_async(&mut c).await;
        self.checked(out)
    }
}

/// Few, short reconnect attempts per command: while Redis is away a lease answers
/// `Unavailable` within about a second (the visitor keeps the default number) instead of
/// waiting through a long backoff; the next command tries again.
fn manager_config(opts: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(opts.response_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
}

/// After a failed first connection: refused credentials or a failed TLS handshake stop the
/// start (`at`: the settings to check); anything else waits `delay` (longer each time) and says so.
async fn retry_or_stop(at: &str, e: redis::RedisError, delay: &mut Duration) -> Result<(), PoolError> {
    if refused_credentials(&e) {
        return Err(PoolError::Invalid(format!(
            "Redis refused the credentials of {at} ({e}); check the user and password"
        )));
    }
    if refused_tls(&e) {
        return Err(PoolError::Invalid(format!(
            "the TLS connection to {at} failed ({e}); check that a CA of \
             redis_ca_file (or of the system, without it) signs the server's certificate, that \
             the certificate names the URL's host, and, if Redis asks for one, the client \
             certificate (redis_client_cert_file, redis_client_key_path)"
        )));
    }
    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Redis is not reachable yet; retrying.");
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(Duration::from_secs(5));
    Ok(())
}

impl RedisPool {
    /// Connects, retrying with backoff (and saying so in the log) until Redis answers.
    pub async fn connect(opts: &RedisOptions) -> Result<RedisPool, PoolError> {
        RedisPool::connect_tls(opts, None).await
    }

    /// As [`RedisPool::connect`]; a `rediss://` URL trusts `tls`'s CA instead of the system's
    /// roots and presents its client certificate, if it has them. A TLS handshake that fails
    /// (a certificate the CA did not sign, another host name) stops the start.
    pub async fn connect_tls(opts: &RedisOptions, tls: Option<redis::TlsCertificates>) -> Result<RedisPool, PoolError> {
        // The URL may hold a password: it never goes into a message.
        let client = match tls {
            Some(certs) => redis::Client::build_with_tls(opts.url.as_str(), certs),
            None => redis::Client::open(opts.url.as_str()),
        }
        .map_err(|e| PoolError::Invalid(format!("[store] redis_url: {e}")))?;
        let config = manager_config(opts);
        let mut delay = Duration::from_millis(100);
        let conn = loop {
            let connected = match client.get_connection_manager_with_config(config.clone()).await {
                // A server that wants a password the URL does not give answers the first command.
                Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.map(|_| c),
                Err(e) => Err(e),
            };
            match connected {
                Ok(c) => break c,
                Err(e) => retry_or_stop("[store] redis_url", e, &mut delay).await?,
            }
        };
        Ok(RedisPool::with(Conn::Direct(conn), opts))
    }

    /// As [`RedisPool::connect_tls`], through Redis Sentinel: the sentinels name the primary of
    /// `sentinel.master_name`, and the pool follows it to another node after a failover. Of
    /// `opts.url` only the scheme (`rediss://`: TLS to the nodes and to the sentinels, with
    /// `tls`), the credentials (the primary's) and the database number count; its host and
    /// port are not used.
    pub async fn connect_sentinel(
        opts: &RedisOptions,
        sentinel: &SentinelOptions,
        tls: Option<redis::TlsCertificates>,
    ) -> Result<RedisPool, PoolError> {
        use redis::IntoConnectionInfo;
        let info = opts
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| PoolError::Invalid(format!("[store] redis_url: {e}")))?;
        let secure = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let node = info.redis_settings();
        let addrs = sentinel.sentinels.iter().map(|(host, port)| {
            if secure {
                ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let invalid = |e: redis::RedisError| PoolError::Invalid(format!("[store] redis_sentinels: {e}"));
        let mut b = SentinelClientBuilder::new(addrs, &sentinel.master_name, SentinelServerType::Master)
            .map_err(invalid)?
            .set_client_to_redis_db(node.db());
        if let Some(user) = node.username() {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(password) = node.password() {
            b = b.set_client_to_redis_password(password);
        }
        if let Some(user) = &sentinel.username {
            b = b.set_client_to_sentinel_username(user);
        }
        if let Some(password) = &sentinel.password {
            b = b.set_client_to_sentinel_password(password);
        }
        if secure {
            b = b
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
            if let Some(certs) = tls {
                b = b.set_client_to_redis_certificates(certs.clone()).set_client_to_sentinel_certificates(certs);
            }
        }
        let mut client = b.build().map_err(invalid)?;
        let config = manager_config(opts);
        let at = "[store] redis_sentinels (or the primary they name)";
        let mut delay = Duration::from_millis(100);
        let (addr, conn) = loop {
            let connected = match tokio::time::timeout(LOOKUP_TIMEOUT, client.async_get_client()).await {
                Ok(Ok(node)) => {
                    let addr = node.get_connection_info().addr().clone();
                    match node.get_connection_manager_with_config(config.clone()).await {
                        Ok(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await.map(|_| (addr, c)),
                        Err(e) => Err(e),
                    }
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))),
            };
            match connected {
                Ok(c) => break c,
                Err(e) => retry_or_stop(at, e, &mut delay).await?,
            }
        };
        tracing::info!(master = %sentinel.master_name, primary = %addr, "Redis Sentinel names the primary.");
        let follower = Arc::new(Follower {
            current: std::sync::RwLock::new((addr, conn)),
            sentinel: tokio::sync::Mutex::new((client, Some(Instant::now()))),
            config,
            master_name: sentinel.master_name.clone(),
        });
        Follower::watch(Arc::downgrade(&follower));
        Ok(RedisPool::with(Conn::Sentinel(follower), opts))
    }

    fn with(conn: Conn, opts: &RedisOptions) -> RedisPool {
        let redis = SharedRedis { conn, prefix: format!("{{{}}}", opts.prefix) };
        RedisPool { redis, scripts: std::sync::Arc::new(Scripts::new()) }
    }

    /// The connection and key prefix, for the service's own data beside the pool.
    pub fn shared(&self) -> SharedRedis {
        self.redis.clone()
    }

    /// Whether Redis answers now.
    pub async fn ping(&self) -> Result<(), PoolError> {
        self.redis.query::<String>(&redis::cmd("PING")).await.map(|_| ()).map_err(classify)
    }

    async fn run(&self, script: &Script, args: &[String]) -> Result<Value, PoolError> {
        self.redis.eval(script, args).await.map_err(classify)
    }

    pub async fn configure(&self, spec: &PoolSpec, now: Ts) -> Result<(), PoolError> {
        let mut args =
            vec![now.as_millis().to_string(), millis(spec.history_for).to_string(), spec.sites.len().to_string()];
        for (site, r) in &spec.sites {
            args.push(site.to_string());
            args.push(r.max_numbers.to_string());
            for d in [r.reclaim_after_idle, r.max_hold, r.release_grace, r.shrink_after, r.cooldown] {
                args.push(millis(d).to_string());
            }
        }
        for n in &spec.numbers {
            args.push(n.number.to_string());
            let target = n.dedicated_to.clone().map_or(Target::Shared, Target::Dedicated);
            match target {
                Target::Dedicated(s) => args.extend(["dedicated".to_string(), s.to_string()]),
                _ => args.extend(["shared".to_string(), String::new()]),
            }
        }
        self.run(&self.scripts.configure, &args).await.map(|_| ())
    }

    pub async fn acquire(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
    ) -> Result<Grant, PoolError> {
        let attrs = serde_json::to_string(attrs).map_err(|e| PoolError::Invalid(e.to_string()))?;
        let args = [site.to_string(), visitor.to_string(), attrs, now.as_millis().to_string()];
        match due_from(site, self.run(&self.scripts.acquire, &args).await?)? {
            Due::Granted(g) => Ok(g),
            other => Err(bad(&format!("acquire answered {other:?}"))),
        }
    }

    pub async fn acquire_due(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
        delay: Duration,
    ) -> Result<Due, PoolError> {
        let attrs = serde_json::to_string(attrs).map_err(|e| PoolError::Invalid(e.to_string()))?;
        let args =
            [site.to_string(), visitor.to_string(), attrs, now.as_millis().to_string(), millis(delay).to_string()];
        due_from(site, self.run(&self.scripts.acquire_due, &args).await?)
    }

    pub async fn view(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Viewed, PoolError> {
        let args = [site.to_string(), visitor.to_string(), now.as_millis().to_string()];
        let mut out = array(self.run(&self.scripts.view, &args).await?)?;
        if out.len() < 4 {
            return Err(PoolError::UnknownSite(site.clone()));
        }
        let lease = if out.len() == 5 { out.pop().map(lease).transpose()? } else { None };
        let began = out.pop().map(text).transpose()?.is_some_and(|b| b == "1");
        let visit = visit_from(out)?.ok_or_else(|| PoolError::UnknownSite(site.clone()))?;
        Ok(Viewed { visit, began, lease })
    }

    async fn visitor_op(
        &self,
        script: &Script,
        site: &SiteId,
        visitor: &VisitorId,
        now: Ts,
    ) -> Result<Option<Lease>, PoolError> {
        let args = [site.to_string(), visitor.to_string(), now.as_millis().to_string()];
        opt_lease(self.run(script, &args).await?)
    }

    pub async fn touch(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        self.visitor_op(&self.scripts.touch, site, visitor, now).await
    }

    pub async fn leave(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        self.visitor_op(&self.scripts.leave, site, visitor, now).await
    }

    pub async fn current(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        self.visitor_op(&self.scripts.current, site, visitor, now).await
    }

    pub async fn current_visit(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Visit>, PoolError> {
        let args = [site.to_string(), visitor.to_string(), now.as_millis().to_string()];
        visit_from(array(self.run(&self.scripts.current_visit, &args).await?)?)
    }

    pub async fn reap(&self, now: Ts) -> Result<Vec<Lease>, PoolError> {
        let args = [now.as_millis().to_string(), REAP_BATCH.to_string()];
        let mut ended = Vec::new();
        loop {
            let mut batch = array(self.run(&self.scripts.reap, &args).await?)?.into_iter();
            let more = text(batch.next().ok_or_else(|| bad("empty reap answer"))?)? == "1";
            for v in batch {
                ended.push(lease(v)?);
            }
            if !more {
                break;
            }
        }
        ended.sort_by_key(|l| (l.end(), l.id));
        Ok(ended)
    }

    pub async fn shrink(&self, now: Ts) -> Result<Vec<(SiteId, PhoneNumber)>, PoolError> {
        let flat = array(self.run(&self.scripts.shrink, &[now.as_millis().to_string()]).await?)?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(s), Some(n)) = (it.next(), it.next()) {
            out.push((SiteId::new(text(s)?)?, PhoneNumber::parse(&text(n)?)?));
        }
        out.sort();
        Ok(out)
    }

    async fn history(&self, number: &PhoneNumber, before: Ts, from: Ts) -> Result<Vec<Lease>, PoolError> {
        let args = [number.to_string(), before.as_millis().to_string(), from.as_millis().to_string()];
        array(self.run(&self.scripts.history, &args).await?)?.into_iter().map(lease).collect()
    }

    pub async fn holder_at(&self, number: &PhoneNumber, t: Ts) -> Result<Option<Lease>, PoolError> {
        Ok(self.history(number, t, t).await?.into_iter().find(|l| l.covers(t)))
    }

    pub async fn last_holders(
        &self,
        number: &PhoneNumber,
        before: Ts,
        window: Duration,
    ) -> Result<Vec<Lease>, PoolError> {
        let from = before.minus(window);
        let mut found: Vec<Lease> =
            self.history(number, before, from).await?.into_iter().filter(|l| l.ended_within(from, before)).collect();
        found.sort_by(|a, b| b.end().cmp(&a.end()).then(b.id.cmp(&a.id)));
        Ok(found)
    }

    pub async fn leases_before(&self, number: &PhoneNumber, at: Ts, window: Duration) -> Result<Vec<Lease>, PoolError> {
        self.history(number, at, at.minus(window)).await
    }

    pub async fn knows_site(&self, site: &SiteId) -> Result<bool, PoolError> {
        self.redis.query(redis::cmd("EXISTS").arg(self.redis.key(&["site", site.as_str()]))).await.map_err(classify)
    }

    pub async fn sites(&self) -> Result<Vec<SiteId>, PoolError> {
        let ids: Vec<String> =
            self.redis.query(redis::cmd("SMEMBERS").arg(self.redis.key(&["sites"]))).await.map_err(classify)?;
        ids.into_iter().map(|s| SiteId::new(s).map_err(|e| bad(&format!("a stored site id: {e}")))).collect()
    }

    pub async fn status(&self, site: &SiteId, now: Ts) -> Result<Option<SiteStatus>, PoolError> {
        let args = [site.to_string(), now.as_millis().to_string()];
        let v: Vec<String> =
            array(self.run(&self.scripts.status, &args).await?)?.into_iter().map(text).collect::<Result<_, _>>()?;
        let [max, working, dedicated, free, cooling, exhausted] = v.as_slice() else {
            return if v.is_empty() { Ok(None) } else { Err(bad("status answer of the wrong length")) };
        };
        let n = |s: &str, f: &str| int(s, f).map(|v| v as u32);
        let (working, free) = (n(working, "working")?, n(free, "free")?);
        Ok(Some(SiteStatus {
            max_numbers: n(max, "max")?,
            working,
            dedicated: n(dedicated, "dedicated")?,
            leased: working.saturating_sub(free),
            free,
            cooling: n(cooling, "cooling")?,
            exhausted_total: int(exhausted, "exhausted")? as u64,
        }))
    }
}
