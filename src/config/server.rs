//! `[server]`, `[store]` and `[bus]`: where this node listens, where the pool and the calls are
//! kept, and how the nodes of a cluster reach each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use callpool_pool::SiteId;
use serde::Deserialize;

use super::env::Env;
use super::env::*;
use super::validate::Validator;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/v1/admin/*`; without one the admin endpoints answer 401 to everyone.
    pub admin_token: Option<String>,
    /// Behind a reverse proxy: the header (e.g. X-Forwarded-For) whose rightmost address that is
    /// not one of `trusted_proxies` is the client's. Read only from a peer in `trusted_proxies`.
    pub trusted_proxy_header: Option<String>,
    /// The proxies' own addresses (default loopback: a proxy on the same machine).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Websocket connection attempts allowed per client address and minute.
    pub ws_connects_per_ip_per_minute: u32,
    /// How often the server pings each tab; a tab silent (no pong, no message) for
    /// `ws_dead_after` is dropped and counted as dead.
    pub ws_ping_interval: Duration,
    pub ws_dead_after: Duration,
    /// Serve a demo page for this site at `/` (the built-in demo does; production should not).
    pub demo_site: Option<SiteId>,
    /// This node's name in the cluster (its RabbitMQ queue); unique per running process.
    pub node_id: String,
    /// Connections served at once (websockets included); `None`: what the process's open-file
    /// limit allows, less a reserve for the store, the broker and outgoing requests.
    pub max_connections: Option<usize>,
    /// A connection that has not sent a whole request head this long after it opened, or after
    /// its last answer (an idle keep-alive), is closed.
    pub header_timeout: Duration,
    /// A second address serving only `/healthz`, `/readyz` and `/metrics`, with connections of
    /// its own: monitoring still gets answers when the public port is full.
    pub ops_listen: Option<SocketAddr>,
    /// Bearer token `/metrics` requires (on the public port and on `ops_listen`).
    pub metrics_token: Option<String>,
    /// How long a stop waits for open connections, then again for background work (a batch of
    /// deliveries being recorded), before the process ends anyway.
    pub shutdown_grace: Duration,
    /// Where people reach this service (`https://track.example.com`): the links in the reports
    /// sent by mail and Telegram.
    pub public_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded {
        data_dir: PathBuf,
    },
    /// `sentinel`: find the primary through Redis Sentinel; then `url`'s host and port are not
    /// used, only its scheme (TLS), credentials (the primary's) and database number.
    Redis {
        url: String,
        prefix: String,
        tls: TlsFiles,
        sentinel: Option<SentinelConfig>,
    },
}

/// `redis_sentinels` and `redis_master_name`: the sentinels to ask for the primary.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// `(host, port)` of each sentinel, in the order given.
    pub sentinels: Vec<(String, u16)>,
    pub master_name: String,
    /// The sentinels' own credentials (`redis_sentinel_username`, `redis_sentinel_password`).
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The files of a TLS connection to Redis or RabbitMQ (`rediss://`, `amqps://`), all PEM; read
/// when the node starts. Without `ca_file` the system's roots are trusted; the server's name
/// (or address) in the URL is checked against its certificate either way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificates that sign the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// For mutual TLS: this node's certificate (chain) and its private key.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
}

/// How the nodes tell each other what tabs show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusConfig {
    /// One node (the embedded default).
    InProcess,
    /// A cluster: every node connects to this RabbitMQ.
    RabbitMq { url: String, tls: TlsFiles },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    listen: Option<String>,
    admin_token: Option<String>,
    trusted_proxy_header: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    ws_connects_per_ip_per_minute: Option<u32>,
    ws_ping_interval: Option<String>,
    ws_dead_after: Option<String>,
    demo_site: Option<String>,
    node_id: Option<String>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
    ops_listen: Option<String>,
    metrics_token: Option<String>,
    shutdown_grace: Option<String>,
    public_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    kind: Option<String>,
    data_dir: Option<PathBuf>,
    redis_url: Option<String>,
    redis_username: Option<String>,
    redis_password: Option<String>,
    redis_prefix: Option<String>,
    redis_ca_file: Option<PathBuf>,
    redis_client_cert_file: Option<PathBuf>,
    redis_client_key_path: Option<PathBuf>,
    redis_sentinels: Option<Vec<String>>,
    redis_master_name: Option<String>,
    redis_sentinel_username: Option<String>,
    redis_sentinel_password: Option<String>,
    /// Only to say where the key's path goes: a `redis_client_key_file` is read as a secret
    /// (see `files.rs`) and arrives here as the key itself.
    redis_client_key: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBus {
    kind: Option<String>,
    amqp_url: Option<String>,
    amqp_username: Option<String>,
    amqp_password: Option<String>,
    amqp_ca_file: Option<PathBuf>,
    amqp_client_cert_file: Option<PathBuf>,
    amqp_client_key_path: Option<PathBuf>,
    /// As `redis_client_key` in `[store]`.
    amqp_client_key: Option<toml::Value>,
}

impl Validator {
    /// `[server]`; `demo_site` must name one of `sites`.
    pub(super) fn server(&mut self, raw: RawServer, sites: &[SiteId], env: &dyn Env) -> ServerConfig {
        let listen_text = env.var(ENV_LISTEN).or(raw.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.fail("[server] listen", format!("{listen_text:?} is not an address:port such as 127.0.0.1:8080"));
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let admin_token = env.var(ENV_ADMIN_TOKEN).or(raw.admin_token);
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            self.fail("[server] admin_token", "must be at least 16 characters");
        }
        let trusted_proxy_header = raw.trusted_proxy_header.filter(|h| !h.is_empty());
        if let Some(h) = &trusted_proxy_header {
            if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                self.fail("[server] trusted_proxy_header", format!("{h:?} is not a header name"));
            }
        }
        let proxies = raw.trusted_proxies.unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1/128".into()]);
        let trusted_proxies = self.networks("[server] trusted_proxies", &proxies);
        let ws_ping_interval =
            self.duration("[server] ws_ping_interval", raw.ws_ping_interval.as_deref(), "20s", false);
        let ws_dead_after = self.duration("[server] ws_dead_after", raw.ws_dead_after.as_deref(), "60s", false);
        if ws_dead_after <= ws_ping_interval {
            self.fail("[server] ws_dead_after", "must be longer than ws_ping_interval (a live tab answers each ping)");
        }
        let ws_connects_per_ip_per_minute = raw.ws_connects_per_ip_per_minute.unwrap_or(120);
        if ws_connects_per_ip_per_minute == 0 {
            self.fail("[server] ws_connects_per_ip_per_minute", "must be at least 1");
        }
        let demo_site = raw.demo_site.and_then(|d| match SiteId::new(d.clone()) {
            Ok(id) if sites.contains(&id) => Some(id),
            _ => {
                self.fail("[server] demo_site", format!("{d:?} is not the id of a configured site"));
                None
            }
        });
        let node_id = env.var(ENV_NODE_ID).or(raw.node_id).unwrap_or_else(default_node_id);
        if node_id.is_empty()
            || node_id.len() > 100
            || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            self.fail("[server] node_id", "must be 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
        }
        if raw.max_connections.is_some_and(|n| n < 16) {
            self.fail("[server] max_connections", "must be at least 16");
        }
        let header_timeout = self.duration("[server] header_timeout", raw.header_timeout.as_deref(), "15s", false);
        let ops_listen = raw.ops_listen.and_then(|text| match text.parse::<SocketAddr>() {
            Ok(a) if a == listen => {
                self.fail("[server] ops_listen", "must differ from listen");
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.fail("[server] ops_listen", format!("{text:?} is not an address:port such as 127.0.0.1:9090"));
                None
            }
        });
        let metrics_token = env.var(ENV_METRICS_TOKEN).or(raw.metrics_token).filter(|t| !t.is_empty());
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            self.fail("[server] metrics_token", "must be at least 16 characters");
        }
        let shutdown_grace = self.duration("[server] shutdown_grace", raw.shutdown_grace.as_deref(), "10s", true);
        let public_url = raw.public_url.map(|u| self.base_url("[server] public_url", u));
        ServerConfig {
            shutdown_grace,
            public_url,
            max_connections: raw.max_connections,
            header_timeout,
            ops_listen,
            metrics_token,
            listen,
            admin_token,
            trusted_proxy_header,
            trusted_proxies,
            ws_connects_per_ip_per_minute,
            ws_ping_interval,
            ws_dead_after,
            demo_site,
            node_id,
        }
    }

    pub(super) fn store(&mut self, raw: RawStore, env: &dyn Env) -> StoreConfig {
        let kind = env.var(ENV_STORE).or(raw.kind).unwrap_or_else(|| "embedded".into());
        match kind.as_str() {
            "embedded" => StoreConfig::Embedded {
                data_dir: env.var(ENV_DATA_DIR).map(PathBuf::from).or(raw.data_dir).unwrap_or_else(|| "data".into()),
            },
            "redis" => {
                let url = env.var(ENV_REDIS_URL).or(raw.redis_url).unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
                if let Err(why) = redis_url_ok(&url) {
                    self.fail("[store] redis_url", format!("{:?} {why}", redacted(&url)));
                }
                let url = with_credentials(&url, raw.redis_username, raw.redis_password).unwrap_or_else(|why| {
                    self.fail("[store] redis_password", why);
                    url
                });
                let prefix = env.var(ENV_REDIS_PREFIX).or(raw.redis_prefix).unwrap_or_else(|| "callpool".into());
                if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.contains(char::is_whitespace) {
                    self.fail("[store] redis_prefix", "must be non-empty, without braces or spaces");
                }
                let tls = TlsFiles {
                    ca_file: raw.redis_ca_file,
                    client_cert_file: raw.redis_client_cert_file,
                    client_key_path: raw.redis_client_key_path,
                };
                self.tls_files("[store] redis", url.starts_with("rediss://"), &tls, raw.redis_client_key.is_some());
                let sentinel = self.sentinel(
                    &url,
                    raw.redis_sentinels,
                    raw.redis_master_name,
                    raw.redis_sentinel_username,
                    raw.redis_sentinel_password,
                );
                StoreConfig::Redis { url, prefix, tls, sentinel }
            }
            other => {
                self.fail("[store] kind", format!("{other:?} is neither \"embedded\" nor \"redis\""));
                StoreConfig::Embedded { data_dir: "data".into() }
            }
        }
    }

    /// `redis_sentinels` with `redis_master_name` (both or neither), each sentinel a `host:port`;
    /// the sentinels' credentials only with them; a URL with a host and port (not a socket).
    fn sentinel(
        &mut self,
        url: &str,
        sentinels: Option<Vec<String>>,
        master_name: Option<String>,
        username: Option<String>,
        password: Option<String>,
    ) -> Option<SentinelConfig> {
        let Some(list) = sentinels else {
            if master_name.is_some() {
                self.fail("[store] redis_master_name", "needs redis_sentinels (the sentinels to ask for it)");
            }
            if username.is_some() || password.is_some() {
                self.fail("[store] redis_sentinel_password", "is for the sentinels: it needs redis_sentinels");
            }
            return None;
        };
        if list.is_empty() {
            self.fail("[store] redis_sentinels", "must name at least one sentinel (host:port); better three");
        }
        let mut addrs = Vec::with_capacity(list.len());
        for (i, text) in list.iter().enumerate() {
            let parsed = text.rsplit_once(':').and_then(|(host, port)| {
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                let ok_host = !host.is_empty() && !host.contains(['/', '@', ' ']);
                port.parse::<u16>().ok().filter(|p| *p != 0 && ok_host).map(|p| (host.to_owned(), p))
            });
            match parsed {
                Some(addr) => addrs.push(addr),
                None => self.fail(
                    &format!("[store] redis_sentinels[{i}]"),
                    format!("{text:?} is not a host:port such as 10.0.0.1:26379"),
                ),
            }
        }
        let master_name = master_name.unwrap_or_default();
        if master_name.is_empty() || master_name.contains(char::is_whitespace) {
            self.fail(
                "[store] redis_master_name",
                "must name the primary the sentinels monitor (sentinel monitor <name> ...), without spaces",
            );
        }
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            self.fail(
                "[store] redis_url",
                "with redis_sentinels it must be a redis:// or rediss:// URL (not a socket)",
            );
        }
        Some(SentinelConfig { sentinels: addrs, master_name, username, password })
    }

    /// `[bus]`; a cluster bus needs the cluster store.
    pub(super) fn bus(&mut self, raw: RawBus, store: &StoreConfig, env: &dyn Env) -> BusConfig {
        match env.var(ENV_BUS).or(raw.kind).as_deref().unwrap_or("in_process") {
            "in_process" => BusConfig::InProcess,
            "rabbitmq" => {
                let url = env.var(ENV_AMQP_URL).or(raw.amqp_url).unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".into());
                let url = with_credentials(&url, raw.amqp_username, raw.amqp_password).unwrap_or_else(|why| {
                    self.fail("[bus] amqp_password", why);
                    url
                });
                if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
                    self.fail("[bus] amqp_url", format!("{:?} is not an amqp:// or amqps:// URL", redacted(&url)));
                }
                let tls = TlsFiles {
                    ca_file: raw.amqp_ca_file,
                    client_cert_file: raw.amqp_client_cert_file,
                    client_key_path: raw.amqp_client_key_path,
                };
                self.tls_files("[bus] amqp", url.starts_with("amqps://"), &tls, raw.amqp_client_key.is_some());
                if matches!(store, StoreConfig::Embedded { .. }) {
                    self.fail(
                        "[bus] kind",
                        "\"rabbitmq\" joins nodes into a cluster, which needs [store] kind = \"redis\"",
                    );
                }
                BusConfig::RabbitMq { url, tls }
            }
            other => {
                self.fail("[bus] kind", format!("{other:?} is neither \"in_process\" nor \"rabbitmq\""));
                BusConfig::InProcess
            }
        }
    }
}

/// host-pid-time: unique per process, readable in RabbitMQ's queue list.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{nanos:x}", if host.is_empty() { "node" } else { &host }, std::process::id())
}

fn redis_url_ok(url: &str) -> Result<(), &'static str> {
    match url.split_once("://") {
        Some(("redis" | "rediss" | "redis+unix" | "unix", rest)) if !rest.is_empty() => Ok(()),
        _ => Err("is not a redis:// or rediss:// URL (or unix:// for a socket)"),
    }
}

impl Validator {
    /// The TLS files of `{at}_url` (`at` is "[store] redis" or "[bus] amqp"): only with a TLS
    /// URL, the certificate and key together, each a readable PEM file of the right kind.
    /// `key_given`: the configuration named `{at}_client_key` (or its `_file` form), which is
    /// not a setting.
    fn tls_files(&mut self, at: &str, tls_url: bool, files: &TlsFiles, key_given: bool) {
        let scheme = if at.ends_with("redis") { "rediss://" } else { "amqps://" };
        if key_given {
            let why = format!(
                "not a setting: give the path of the client's private key (a PEM file) as {at}_client_key_path"
            );
            self.fail(&format!("{at}_client_key"), why);
        }
        let named = [
            ("ca_file", &files.ca_file, "-----BEGIN CERTIFICATE-----", "certificate"),
            ("client_cert_file", &files.client_cert_file, "-----BEGIN CERTIFICATE-----", "certificate"),
            ("client_key_path", &files.client_key_path, "PRIVATE KEY-----", "private key"),
        ];
        for (name, path, marker, what) in named {
            let Some(path) = path else { continue };
            let setting = format!("{at}_{name}");
            if !tls_url {
                self.fail(&setting, format!("is for TLS: the URL must start with {scheme}"));
                continue;
            }
            // The key's text never goes into a message: only whether it holds a key.
            match std::fs::read_to_string(path) {
                Ok(text) if text.contains(marker) => {}
                Ok(_) => self.fail(&setting, format!("{}: no PEM {what} in it", path.display())),
                Err(e) => self.fail(&setting, format!("{}: cannot read it: {e}", path.display())),
            }
        }
        if files.client_cert_file.is_some() != files.client_key_path.is_some() {
            let why = format!("mutual TLS needs both {at}_client_cert_file and {at}_client_key_path");
            self.fail(&format!("{at}_client_cert_file"), why);
        }
    }
}

/// `url` with a user name and password given beside it (`redis_password`, `amqp_password`, or
/// their `_file` forms) written into it, percent-encoded; a URL that names a password already
/// takes no second one.
fn with_credentials(url: &str, user: Option<String>, password: Option<String>) -> Result<String, String> {
    if user.is_none() && password.is_none() {
        return Ok(url.to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else { return Ok(url.to_owned()) };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err("the URL names a user already: give the credentials in one place".into());
    }
    let user = user.as_deref().map(percent_encode).unwrap_or_default();
    let password = password.as_deref().map(|p| format!(":{}", percent_encode(p))).unwrap_or_default();
    Ok(format!("{scheme}://{user}{password}@{rest}"))
}

/// `s` with every byte but RFC 3986's unreserved characters (letters, digits, `-._~`)
/// percent-encoded: safe as a URL's user name, password or path segment.
pub fn percent_encode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `url` with its password (the part after `user:` before `@`) replaced by `***`, for output.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

impl std::fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Embedded { data_dir } => write!(f, "embedded in {}", data_dir.display()),
            StoreConfig::Redis { url, prefix, sentinel: None, .. } => {
                write!(f, "redis at {} (keys {{{prefix}}}:*)", redacted(url))
            }
            StoreConfig::Redis { url, prefix, sentinel: Some(s), .. } => {
                let scheme = url.split_once("://").map_or("redis", |(scheme, _)| scheme);
                let sentinels: Vec<String> = s.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                write!(
                    f,
                    "{scheme} primary {:?} of sentinels {} (keys {{{prefix}}}:*)",
                    s.master_name,
                    sentinels.join(", ")
                )
            }
        }
    }
}

impl std::fmt::Display for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusConfig::InProcess => f.write_str("in process (one node)"),
            BusConfig::RabbitMq { url, .. } => write!(f, "rabbitmq at {}", redacted(url)),
        }
    }
}
