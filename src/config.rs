//! The configuration: one TOML file (plus `CALLPOOL_*` environment overrides for secrets and
//! URLs), parsed once into typed, validated fields and passed down. Nothing else reads the
//! environment.
//!
//! Every problem is reported at once, each naming the file, the site and the field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use callpool_pool::{NumberSpec, PhoneNumber, PoolSpec, SiteId, SiteRules};
use serde::Deserialize;

/// The built-in demo configuration `callpool serve` uses when there is no config file.
pub const DEMO_CONFIG: &str = include_str!("../deploy/demo.toml");

/// The environment variables that override the file, and what they override.
pub const ENV_LISTEN: &str = "CALLPOOL_LISTEN";
pub const ENV_ADMIN_TOKEN: &str = "CALLPOOL_ADMIN_TOKEN";
pub const ENV_STORE: &str = "CALLPOOL_STORE";
pub const ENV_DATA_DIR: &str = "CALLPOOL_DATA_DIR";
pub const ENV_REDIS_URL: &str = "CALLPOOL_REDIS_URL";
pub const ENV_REDIS_PREFIX: &str = "CALLPOOL_REDIS_PREFIX";
pub const ENV_BUS: &str = "CALLPOOL_BUS";
pub const ENV_AMQP_URL: &str = "CALLPOOL_AMQP_URL";
pub const ENV_NODE_ID: &str = "CALLPOOL_NODE_ID";
/// `CALLPOOL_PBX_SECRET_<PBX ID>` (upper case, '-' as '_'): that PBX's signing secret.
pub const ENV_PBX_SECRET_PREFIX: &str = "CALLPOOL_PBX_SECRET_";
pub const ENV_GA4_BASE_URL: &str = "CALLPOOL_GA4_BASE_URL";
pub const ENV_YANDEX_BASE_URL: &str = "CALLPOOL_YANDEX_BASE_URL";

/// No configured duration may exceed ten years (they are added to timestamps).
const LONGEST: Duration = Duration::from_secs(3650 * 86_400);

/// Where configuration values from the environment come from; tests pass a map.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a configuration was refused: every problem found, each naming where it is.
#[derive(Debug)]
pub struct ConfigError {
    pub source: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{}: {n} problem{} in the configuration:", self.source, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (or "built-in demo configuration").
    pub source: String,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub bus: BusConfig,
    pub pool: PoolConfig,
    pub sites: Vec<SiteConfig>,
    pub analytics: AnalyticsConfig,
    pub pbxs: Vec<PbxConfig>,
}

/// Where and how call events go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// `https://www.google-analytics.com` (or the EU host); tests point it at a local collector.
    pub ga4_base_url: String,
    /// The event each matched call sends (default `phone_call`).
    pub ga4_event_name: String,
    /// Send to GA4's validation endpoint instead and log its messages (nothing reaches reports).
    pub ga4_debug: bool,
    /// `https://api-metrika.yandex.net`.
    pub yandex_base_url: String,
    /// How often each site's Metrica calls are uploaded.
    pub yandex_upload_interval: Duration,
    /// A call the PBX never reports as final is sent this long after it started.
    pub finalize_after: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// The first retry waits this long; each further one twice as long (at most an hour).
    pub retry_base: Duration,
    /// Timeout of one request to GA or Metrica.
    pub request_timeout: Duration,
    /// Calls (with their deliveries) older than this are forgotten; reports reach back this far.
    pub calls_retention: Duration,
}

/// One PBX allowed to post call webhooks.
#[derive(Clone, PartialEq, Eq)]
pub struct PbxConfig {
    /// Named in the webhook URL (`?pbx=ID`) and prefixed to its call ids.
    pub id: String,
    /// Signing secrets; more than one while rotating.
    pub secrets: Vec<String>,
    /// Webhook posts allowed per second (a burst of the same size).
    pub requests_per_second: u32,
    /// A real Twilio account: its auth token checks `X-Twilio-Signature`, computed by Twilio over
    /// `twilio_url` (the webhook URL exactly as configured in Twilio) and the form fields.
    pub twilio: Option<TwilioAuth>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct TwilioAuth {
    pub auth_token: String,
    pub url: String,
}

impl fmt::Debug for PbxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PbxConfig")
            .field("id", &self.id)
            .field("secrets", &format!("{} hidden", self.secrets.len()))
            .field("requests_per_second", &self.requests_per_second)
            .field("twilio", &self.twilio.as_ref().map(|t| t.url.as_str()))
            .finish()
    }
}

/// A site's Google Analytics 4 web stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Ga4Site {
    /// `G-XXXXXXX`
    pub measurement_id: String,
    pub api_secret: String,
}

impl fmt::Debug for Ga4Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ga4Site").field("measurement_id", &self.measurement_id).finish_non_exhaustive()
    }
}

/// A site's Yandex Metrica counter.
#[derive(Clone, PartialEq, Eq)]
pub struct YandexSite {
    pub counter_id: u64,
    /// OAuth token with Metrica write access.
    pub token: String,
}

impl fmt::Debug for YandexSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YandexSite").field("counter_id", &self.counter_id).finish_non_exhaustive()
    }
}

/// How the nodes tell each other what tabs show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusConfig {
    /// One node (the embedded default).
    InProcess,
    /// A cluster: every node connects to this RabbitMQ.
    RabbitMq { url: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/v1/admin/*`; without one the admin endpoints answer 401 to everyone.
    pub admin_token: Option<String>,
    /// Behind a reverse proxy: the header whose rightmost address is the client's (e.g. X-Forwarded-For).
    pub trusted_proxy_header: Option<String>,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    Embedded { data_dir: PathBuf },
    Redis { url: String, prefix: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The shared inventory any site may draw from.
    pub numbers: Vec<PhoneNumber>,
    /// How long ended leases are kept for call matching.
    pub history: Duration,
    /// How often the reaper ends expired leases and shrinks working sets.
    pub reaper_interval: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteConfig {
    pub id: SiteId,
    /// The public key the snippet sends (`data-site`).
    pub key: String,
    pub allowed_origins: Vec<String>,
    pub timezone: chrono_tz::Tz,
    pub default_before: PhoneNumber,
    pub default_after: PhoneNumber,
    /// Numbers dedicated to this site.
    pub numbers: Vec<PhoneNumber>,
    /// Shown to traffic the filters do not track (default: `default_before`).
    pub static_number: PhoneNumber,
    /// Which traffic is tracked.
    pub track: TrackFilter,
    pub delay_to_show: Duration,
    pub rules: SiteRules,
    /// How calls are matched to the site's visitors.
    pub windows: crate::calls::matcher::MatchRules,
    pub ga4: Option<Ga4Site>,
    pub yandex: Option<YandexSite>,
    /// Bearer token for the site's reports (callers masked).
    pub report_token: Option<String>,
    /// Bearer token for the site's reports with callers in full.
    pub admin_token: Option<String>,
    /// The callback widget, when the site has one.
    pub callback: Option<CallbackConfig>,
}

/// A site's callback widget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackConfig {
    /// The region a number typed without its country code is read in (`RU`).
    pub region: phonenumber::country::Id,
    pub texts: crate::callback::text::Texts,
    /// In the site's time zone; a request outside them is scheduled for the next opening.
    pub hours: crate::callback::hours::WorkingHours,
    pub blocklist: crate::callback::number::Blocklist,
    /// How long a visitor must have been on the site before the form may be used.
    pub min_time_on_site: Duration,
    pub limits: crate::callback::limits::Limits,
    /// The number the PBX rings first: the site's operator line.
    pub operator: PhoneNumber,
    /// The `[[pbx]]` whose call webhooks report the callbacks' outcomes.
    pub pbx: String,
    pub trigger: TriggerConfig,
    /// Trigger attempts before the callback is given up as failed.
    pub attempts: u32,
    /// The first retry waits this long, each further one twice as long.
    pub retry_base: Duration,
    pub telegram: Option<TelegramConfig>,
    pub notify: Option<NotifyHook>,
}

/// How callpool asks the PBX to place a callback.
#[derive(Clone, PartialEq, Eq)]
pub enum TriggerConfig {
    /// A JSON POST to `url`, signed like the inbound webhook (`Callpool-Signature`).
    Generic { url: String, secret: String },
    /// VoxImplant's HTTP API `StartScenarios` (form POST to `<base_url>/platform_api/StartScenarios/`).
    VoxImplant { base_url: String, account_id: String, api_key: String, rule_id: u64 },
    /// Twilio's create-call (`<base_url>/2010-04-01/Accounts/<sid>/Calls.json`, basic auth).
    Twilio { base_url: String, account_sid: String, auth_token: String, from: PhoneNumber, status_url: String },
}

impl TriggerConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            TriggerConfig::Generic { .. } => "generic",
            TriggerConfig::VoxImplant { .. } => "voximplant",
            TriggerConfig::Twilio { .. } => "twilio",
        }
    }
}

impl fmt::Debug for TriggerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TriggerConfig::Generic { url, .. } => f.debug_struct("Generic").field("url", url).finish_non_exhaustive(),
            TriggerConfig::VoxImplant { base_url, account_id, rule_id, .. } => f
                .debug_struct("VoxImplant")
                .field("base_url", base_url)
                .field("account_id", account_id)
                .field("rule_id", rule_id)
                .finish_non_exhaustive(),
            TriggerConfig::Twilio { base_url, account_sid, .. } => f
                .debug_struct("Twilio")
                .field("base_url", base_url)
                .field("account_sid", account_sid)
                .finish_non_exhaustive(),
        }
    }
}

/// Telegram Bot API `sendMessage` to the site's team chat.
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    pub base_url: String,
    pub bot_token: String,
    pub chat_id: String,
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("base_url", &self.base_url)
            .field("chat_id", &self.chat_id)
            .finish_non_exhaustive()
    }
}

/// A generic notification webhook: signed JSON POSTs.
#[derive(Clone, PartialEq, Eq)]
pub struct NotifyHook {
    pub url: String,
    pub secret: String,
}

impl fmt::Debug for NotifyHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyHook").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Which visitors get tracking numbers: every non-empty list must match (case-insensitively);
/// the rest are shown the static number and use no lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackFilter {
    /// utm_source values (e.g. "google", "yandex").
    #[serde(default)]
    pub utm_source: Vec<String>,
    #[serde(default)]
    pub utm_medium: Vec<String>,
    /// Referrer host names; a subdomain matches its domain ("google.com" matches "www.google.com").
    #[serde(default)]
    pub referrer_domain: Vec<String>,
    /// Only visits that arrived with a gclid or yclid.
    #[serde(default)]
    pub click_id: bool,
}

impl TrackFilter {
    /// Whether a visit with these attributes is tracked.
    pub fn tracks(&self, attrs: &callpool_pool::SessionAttrs) -> bool {
        let one_of = |list: &[String], value: &Option<String>| {
            list.is_empty() || value.as_deref().is_some_and(|v| list.iter().any(|l| l.eq_ignore_ascii_case(v)))
        };
        let host = attrs.referrer.as_deref().and_then(referrer_host);
        let referrer_ok = self.referrer_domain.is_empty()
            || host.is_some_and(|h| {
                self.referrer_domain.iter().any(|d| {
                    h.eq_ignore_ascii_case(d)
                        || (h.len() > d.len()
                            && h[h.len() - d.len()..].eq_ignore_ascii_case(d)
                            && h.as_bytes()[h.len() - d.len() - 1] == b'.')
                })
            });
        one_of(&self.utm_source, &attrs.utm_source)
            && one_of(&self.utm_medium, &attrs.utm_medium)
            && referrer_ok
            && (!self.click_id || attrs.gclid.is_some() || attrs.yclid.is_some())
    }
}

/// The host of an http(s) URL.
pub(crate) fn referrer_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host)).filter(|h| !h.is_empty())
}

impl Config {
    /// Reads and validates `path`, then applies the environment overrides.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source: source.clone(),
            problems: vec![format!("cannot read the file: {e}")],
        })?;
        Config::parse(&text, &source, env)
    }

    /// The built-in demo configuration, with the environment overrides.
    pub fn demo(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::parse(DEMO_CONFIG, "built-in demo configuration", env)
    }

    /// Parses and validates TOML text; `source` names it in errors.
    pub fn parse(text: &str, source: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            source: source.to_owned(),
            problems: vec![e.to_string().trim_end().to_owned()],
        })?;
        let mut v = Validator { problems: Vec::new() };
        let config = v.config(raw, source, env);
        match config {
            Some(c) if v.problems.is_empty() => Ok(c),
            _ => Err(ConfigError { source: source.to_owned(), problems: v.problems }),
        }
    }

    /// What the pool needs: every number with its placement, every site's rules.
    pub fn pool_spec(&self) -> PoolSpec {
        let mut numbers: Vec<NumberSpec> =
            self.pool.numbers.iter().map(|n| NumberSpec { number: n.clone(), dedicated_to: None }).collect();
        for s in &self.sites {
            numbers
                .extend(s.numbers.iter().map(|n| NumberSpec { number: n.clone(), dedicated_to: Some(s.id.clone()) }));
        }
        PoolSpec {
            numbers,
            sites: self.sites.iter().map(|s| (s.id.clone(), s.rules.clone())).collect(),
            history_for: self.pool.history,
        }
    }

    pub fn site(&self, id: &SiteId) -> Option<&SiteConfig> {
        self.sites.iter().find(|s| &s.id == id)
    }

    pub fn pbx(&self, id: &str) -> Option<&PbxConfig> {
        self.pbxs.iter().find(|p| p.id == id)
    }

    /// Which number belongs where, for the call matcher.
    pub fn directory(&self) -> crate::calls::matcher::Directory {
        let sites: Vec<_> = self
            .sites
            .iter()
            .map(|s| crate::calls::matcher::SiteNumbers {
                site: s.id.clone(),
                default_before: s.default_before.clone(),
                default_after: s.default_after.clone(),
                static_number: s.static_number.clone(),
                dedicated: s.numbers.clone(),
                windows: s.windows,
            })
            .collect();
        crate::calls::matcher::Directory::new(&sites, &self.pool.numbers)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    bus: RawBus,
    #[serde(default)]
    pool: RawPool,
    #[serde(default, rename = "site")]
    sites: Vec<RawSite>,
    #[serde(default)]
    analytics: RawAnalytics,
    #[serde(default)]
    pbx: Vec<RawPbx>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAnalytics {
    ga4_base_url: Option<String>,
    ga4_event_name: Option<String>,
    ga4_debug: Option<bool>,
    yandex_base_url: Option<String>,
    yandex_upload_interval: Option<String>,
    finalize_after: Option<String>,
    max_attempts: Option<u32>,
    retry_base: Option<String>,
    request_timeout: Option<String>,
    calls_retention: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPbx {
    id: String,
    #[serde(default)]
    secrets: Vec<String>,
    requests_per_second: Option<u32>,
    twilio_auth_token: Option<String>,
    twilio_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGa4 {
    measurement_id: String,
    api_secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYandex {
    counter_id: u64,
    token: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_token: Option<String>,
    trusted_proxy_header: Option<String>,
    ws_connects_per_ip_per_minute: Option<u32>,
    ws_ping_interval: Option<String>,
    ws_dead_after: Option<String>,
    demo_site: Option<String>,
    node_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBus {
    kind: Option<String>,
    amqp_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: Option<String>,
    data_dir: Option<PathBuf>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPool {
    #[serde(default)]
    numbers: Vec<String>,
    history: Option<String>,
    reaper_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    id: String,
    key: String,
    #[serde(default)]
    allowed_origins: Vec<String>,
    timezone: Option<String>,
    default_before: String,
    default_after: String,
    #[serde(default)]
    numbers: Vec<String>,
    max_numbers: Option<u32>,
    delay_to_show: Option<String>,
    reclaim_after_idle: Option<String>,
    max_hold: Option<String>,
    release_grace: Option<String>,
    shrink_after: Option<String>,
    cooldown: Option<String>,
    static_number: Option<String>,
    #[serde(default)]
    track: TrackFilter,
    recent_window: Option<String>,
    repeat_window: Option<String>,
    repeat_first: Option<bool>,
    ga4: Option<RawGa4>,
    yandex: Option<RawYandex>,
    report_token: Option<String>,
    admin_token: Option<String>,
    callback: Option<RawCallback>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallback {
    enabled: Option<bool>,
    region: Option<String>,
    language: Option<String>,
    #[serde(default)]
    texts: BTreeMap<String, String>,
    #[serde(default)]
    hours: BTreeMap<String, String>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    blocklist: Vec<String>,
    min_time_on_site: Option<String>,
    operator: String,
    pbx: Option<String>,
    trigger: RawTrigger,
    attempts: Option<u32>,
    retry_base: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    telegram: Option<RawTelegram>,
    notify: Option<RawNotify>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    kind: String,
    url: Option<String>,
    secret: Option<String>,
    account_id: Option<String>,
    api_key: Option<String>,
    rule_id: Option<u64>,
    account_sid: Option<String>,
    auth_token: Option<String>,
    from: Option<String>,
    status_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    per_number: Option<Vec<String>>,
    number_ban: Option<String>,
    per_site: Option<Vec<String>>,
    per_ip: Option<Vec<String>>,
    per_visitor: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegram {
    base_url: Option<String>,
    bot_token: String,
    chat_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    url: String,
    secret: String,
}

fn http_url_ok(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://")) && u.len() > 8 && !u.contains(char::is_whitespace)
}

struct Validator {
    problems: Vec<String>,
}

impl Validator {
    fn fail(&mut self, at: &str, msg: impl fmt::Display) {
        self.problems.push(format!("{at}: {msg}"));
    }

    fn duration(&mut self, at: &str, raw: Option<&str>, default: &str, allow_zero: bool) -> Duration {
        let text = raw.unwrap_or(default);
        match humantime::parse_duration(text) {
            Ok(d) if d > LONGEST => {
                self.fail(at, format!("{text:?} is longer than ten years"));
                Duration::ZERO
            }
            Ok(d) if d.is_zero() && !allow_zero => {
                self.fail(at, "must be longer than zero");
                Duration::ZERO
            }
            Ok(d) => d,
            Err(e) => {
                self.fail(at, format!("{text:?} is not a duration ({e}); write e.g. \"50s\", \"30m\", \"4h\", \"7d\""));
                Duration::ZERO
            }
        }
    }

    fn number(&mut self, at: &str, raw: &str) -> Option<PhoneNumber> {
        match PhoneNumber::parse(raw) {
            Ok(n) => Some(n),
            Err(e) => {
                self.fail(at, e);
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig, source: &str, env: &dyn Env) -> Option<Config> {
        let listen_text = env.var(ENV_LISTEN).or(raw.server.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.fail("[server] listen", format!("{listen_text:?} is not an address:port such as 127.0.0.1:8080"));
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let admin_token = env.var(ENV_ADMIN_TOKEN).or(raw.server.admin_token);
        if let Some(t) = &admin_token {
            if t.len() < 16 {
                self.fail("[server] admin_token", "must be at least 16 characters");
            }
        }
        let kind = env.var(ENV_STORE).or(raw.store.kind).unwrap_or_else(|| "embedded".into());
        let store = match kind.as_str() {
            "embedded" => StoreConfig::Embedded {
                data_dir: env
                    .var(ENV_DATA_DIR)
                    .map(PathBuf::from)
                    .or(raw.store.data_dir)
                    .unwrap_or_else(|| "data".into()),
            },
            "redis" => {
                let url =
                    env.var(ENV_REDIS_URL).or(raw.store.redis_url).unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
                if redis_url_ok(&url).is_err() {
                    self.fail("[store] redis_url", format!("{url:?} is not a redis:// or rediss:// URL"));
                }
                let prefix = env.var(ENV_REDIS_PREFIX).or(raw.store.redis_prefix).unwrap_or_else(|| "callpool".into());
                if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.contains(char::is_whitespace) {
                    self.fail("[store] redis_prefix", "must be non-empty, without braces or spaces");
                }
                StoreConfig::Redis { url, prefix }
            }
            other => {
                self.fail("[store] kind", format!("{other:?} is neither \"embedded\" nor \"redis\""));
                StoreConfig::Embedded { data_dir: "data".into() }
            }
        };

        // Where each number is used, to catch a number used twice.
        let mut owners: BTreeMap<PhoneNumber, String> = BTreeMap::new();
        let mut claim = |v: &mut Validator, n: &PhoneNumber, at: String| match owners.get(n) {
            Some(first) => v.fail(&at, format!("{n} is already used at {first}; a number belongs to one place")),
            None => {
                owners.insert(n.clone(), at);
            }
        };
        let mut shared = Vec::new();
        for (i, raw_n) in raw.pool.numbers.iter().enumerate() {
            let at = format!("[pool] numbers[{i}]");
            if let Some(n) = self.number(&at, raw_n) {
                claim(self, &n, at);
                shared.push(n);
            }
        }
        let pool = PoolConfig {
            history: self.duration("[pool] history", raw.pool.history.as_deref(), "35d", false),
            reaper_interval: self.duration("[pool] reaper_interval", raw.pool.reaper_interval.as_deref(), "1s", false),
            numbers: shared.clone(),
        };

        let mut sites = Vec::new();
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        let mut defaults = Vec::new();
        for (i, rs) in raw.sites.into_iter().enumerate() {
            let name = format!("[[site]] #{} ({:?})", i + 1, rs.id);
            let id = match SiteId::new(rs.id.clone()) {
                Ok(id) => id,
                Err(e) => {
                    self.fail(&format!("{name} id"), e);
                    continue;
                }
            };
            let at = |field: &str| format!("site {:?}: {field}", rs.id);
            if !ids.insert(id.clone()) {
                self.fail(&at("id"), "another site has the same id");
            }
            let key_ok = (8..=64).contains(&rs.key.len())
                && rs.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !key_ok {
                self.fail(&at("key"), "must be 8 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
            } else if !keys.insert(rs.key.clone()) {
                self.fail(&at("key"), "another site has the same key");
            }
            if rs.allowed_origins.is_empty() {
                self.fail(
                    &at("allowed_origins"),
                    "list the origins the snippet runs on, e.g. [\"https://example.com\"]",
                );
            }
            for (j, o) in rs.allowed_origins.iter().enumerate() {
                if let Err(why) = origin_ok(o) {
                    self.fail(&at(&format!("allowed_origins[{j}]")), format!("{o:?} {why}"));
                }
            }
            let timezone = match rs.timezone.as_deref().unwrap_or("UTC").parse::<chrono_tz::Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    self.fail(
                        &at("timezone"),
                        format!("{:?} is not an IANA time zone such as Europe/Moscow", rs.timezone),
                    );
                    chrono_tz::UTC
                }
            };
            let default_before = self.number(&at("default_before"), &rs.default_before);
            let static_number = match &rs.static_number {
                Some(raw_n) => self.number(&at("static_number"), raw_n),
                None => default_before.clone(),
            };
            let default_after = self.number(&at("default_after"), &rs.default_after);
            for (field, n) in [
                ("default_before", &default_before),
                ("default_after", &default_after),
                ("static_number", &static_number),
            ] {
                if let Some(n) = n {
                    defaults.push((n.clone(), at(field)));
                }
            }
            let mut dedicated = Vec::new();
            for (j, raw_n) in rs.numbers.iter().enumerate() {
                let where_ = at(&format!("numbers[{j}]"));
                if let Some(n) = self.number(&where_, raw_n) {
                    claim(self, &n, where_);
                    dedicated.push(n);
                }
            }
            let max_numbers = rs.max_numbers.unwrap_or(dedicated.len() as u32);
            if max_numbers == 0 {
                self.fail(
                    &at("max_numbers"),
                    "the site has no numbers: list `numbers`, or set `max_numbers` to draw from [pool] numbers",
                );
            } else if (max_numbers as usize) < dedicated.len() {
                self.fail(
                    &at("max_numbers"),
                    format!("{max_numbers} is fewer than the {} dedicated numbers", dedicated.len()),
                );
            } else if max_numbers as usize > dedicated.len() && shared.is_empty() {
                self.fail(&at("max_numbers"), "is more than the dedicated numbers, but [pool] numbers is empty");
            }
            let delay_to_show = self.duration(&at("delay_to_show"), rs.delay_to_show.as_deref(), "50s", true);
            let rules = SiteRules {
                max_numbers,
                reclaim_after_idle: self.duration(
                    &at("reclaim_after_idle"),
                    rs.reclaim_after_idle.as_deref(),
                    "30m",
                    false,
                ),
                max_hold: self.duration(&at("max_hold"), rs.max_hold.as_deref(), "4h", false),
                release_grace: self.duration(&at("release_grace"), rs.release_grace.as_deref(), "2m", true),
                shrink_after: self.duration(&at("shrink_after"), rs.shrink_after.as_deref(), "24h", false),
                cooldown: self.duration(&at("cooldown"), rs.cooldown.as_deref(), "7d", true),
            };
            if !rules.max_hold.is_zero() && delay_to_show >= rules.max_hold {
                self.fail(
                    &at("delay_to_show"),
                    format!(
                        "{} is not shorter than max_hold ({}): visitors would never see a tracking number",
                        humantime::format_duration(delay_to_show),
                        humantime::format_duration(rules.max_hold)
                    ),
                );
            }
            let windows = crate::calls::matcher::MatchRules {
                recent: self.duration(&at("recent_window"), rs.recent_window.as_deref(), "24h", true),
                repeat: self.duration(&at("repeat_window"), rs.repeat_window.as_deref(), "30d", true),
                repeat_first: rs.repeat_first.unwrap_or(false),
            };
            for (field, w) in [("recent_window", windows.recent), ("repeat_window", windows.repeat)] {
                if w > pool.history {
                    self.fail(
                        &at(field),
                        format!(
                            "{} is longer than [pool] history ({}): the leases it needs would be gone",
                            humantime::format_duration(w),
                            humantime::format_duration(pool.history)
                        ),
                    );
                }
            }
            let ga4 = rs.ga4.and_then(|g| {
                let id_ok = g.measurement_id.starts_with("G-")
                    && g.measurement_id.len() > 2
                    && g.measurement_id[2..].bytes().all(|b| b.is_ascii_alphanumeric());
                if !id_ok {
                    self.fail(
                        &at("ga4.measurement_id"),
                        format!("{:?} is not a GA4 measurement id such as G-ABC123", g.measurement_id),
                    );
                }
                if g.api_secret.is_empty() {
                    self.fail(
                        &at("ga4.api_secret"),
                        "is empty (Admin > Data streams > Measurement Protocol API secrets)",
                    );
                }
                id_ok.then_some(Ga4Site { measurement_id: g.measurement_id, api_secret: g.api_secret })
            });
            let yandex = rs.yandex.and_then(|y| {
                if y.token.is_empty() {
                    self.fail(&at("yandex.token"), "is empty (an OAuth token with Metrica write access)");
                    return None;
                }
                Some(YandexSite { counter_id: y.counter_id, token: y.token })
            });
            for (field, t) in [("report_token", &rs.report_token), ("admin_token", &rs.admin_token)] {
                if t.as_ref().is_some_and(|t| t.len() < 16) {
                    self.fail(&at(field), "must be at least 16 characters");
                }
            }
            let callback = rs.callback.and_then(|rc| self.callback(&rs.id, rc, timezone));
            if let (Some(default_before), Some(default_after), Some(static_number)) =
                (default_before, default_after, static_number)
            {
                sites.push(SiteConfig {
                    id,
                    key: rs.key,
                    allowed_origins: rs.allowed_origins,
                    timezone,
                    default_before,
                    default_after,
                    numbers: dedicated,
                    static_number,
                    track: rs.track,
                    delay_to_show,
                    rules,
                    windows,
                    ga4,
                    yandex,
                    report_token: rs.report_token,
                    admin_token: rs.admin_token,
                    callback,
                });
            }
        }
        let mut default_owner: BTreeMap<PhoneNumber, String> = BTreeMap::new();
        for (n, at) in &defaults {
            let site_of = |place: &str| place.split(':').next().unwrap_or_default().to_owned();
            match default_owner.get(n) {
                Some(first) if site_of(first) != site_of(at) => self.fail(
                    at,
                    format!("{n} is also a default number at {first}; calls to it could not be told apart by site"),
                ),
                Some(_) => {}
                None => {
                    default_owner.insert(n.clone(), at.clone());
                }
            }
        }
        for (n, at) in defaults {
            if let Some(pool_at) = owners.get(&n) {
                self.fail(
                    &at,
                    format!("{n} is also a pool number (at {pool_at}); a default number must not be handed out"),
                );
            }
        }
        let trusted_proxy_header = raw.server.trusted_proxy_header.filter(|h| !h.is_empty());
        if let Some(h) = &trusted_proxy_header {
            if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                self.fail("[server] trusted_proxy_header", format!("{h:?} is not a header name"));
            }
        }
        let ws_ping_interval =
            self.duration("[server] ws_ping_interval", raw.server.ws_ping_interval.as_deref(), "20s", false);
        let ws_dead_after = self.duration("[server] ws_dead_after", raw.server.ws_dead_after.as_deref(), "60s", false);
        if ws_dead_after <= ws_ping_interval {
            self.fail("[server] ws_dead_after", "must be longer than ws_ping_interval (a live tab answers each ping)");
        }
        let ws_connects_per_ip_per_minute = raw.server.ws_connects_per_ip_per_minute.unwrap_or(120);
        if ws_connects_per_ip_per_minute == 0 {
            self.fail("[server] ws_connects_per_ip_per_minute", "must be at least 1");
        }
        let demo_site = raw.server.demo_site.and_then(|d| match SiteId::new(d.clone()) {
            Ok(id) if sites.iter().any(|s: &SiteConfig| s.id == id) => Some(id),
            _ => {
                self.fail("[server] demo_site", format!("{d:?} is not the id of a configured site"));
                None
            }
        });
        let node_id = env.var(ENV_NODE_ID).or(raw.server.node_id).unwrap_or_else(default_node_id);
        if node_id.is_empty()
            || node_id.len() > 100
            || !node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            self.fail("[server] node_id", "must be 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
        }
        let server = ServerConfig {
            listen,
            admin_token,
            trusted_proxy_header,
            ws_connects_per_ip_per_minute,
            ws_ping_interval,
            ws_dead_after,
            demo_site,
            node_id,
        };
        let bus = match env.var(ENV_BUS).or(raw.bus.kind).as_deref().unwrap_or("in_process") {
            "in_process" => BusConfig::InProcess,
            "rabbitmq" => {
                let url =
                    env.var(ENV_AMQP_URL).or(raw.bus.amqp_url).unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".into());
                if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                    self.fail("[bus] amqp_url", format!("{url:?} is not an amqp:// URL"));
                }
                if matches!(store, StoreConfig::Embedded { .. }) {
                    self.fail(
                        "[bus] kind",
                        "\"rabbitmq\" joins nodes into a cluster, which needs [store] kind = \"redis\"",
                    );
                }
                BusConfig::RabbitMq { url }
            }
            other => {
                self.fail("[bus] kind", format!("{other:?} is neither \"in_process\" nor \"rabbitmq\""));
                BusConfig::InProcess
            }
        };
        let analytics = self.analytics(raw.analytics, env);
        let pbxs = self.pbxs(raw.pbx, env);
        for site in &mut sites {
            let Some(cb) = &mut site.callback else { continue };
            if cb.pbx.is_empty() && pbxs.len() == 1 {
                cb.pbx = pbxs[0].id.clone();
            }
            if !pbxs.iter().any(|p| p.id == cb.pbx) {
                self.fail(
                    &format!("site {:?}: callback.pbx", site.id.as_str()),
                    "name the [[pbx]] whose call webhooks report the callbacks (needed when there is not exactly one)",
                );
            }
        }
        Some(Config { source: source.to_owned(), server, store, bus, pool, sites, analytics, pbxs })
    }

    fn windows(
        &mut self,
        at: &str,
        raw: Option<Vec<String>>,
        default: &[&str],
    ) -> Vec<crate::callback::limits::Window> {
        let raw = raw.unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
        raw.iter()
            .filter_map(|w| crate::callback::limits::Window::parse(w).map_err(|e| self.fail(at, e)).ok())
            .collect()
    }

    fn callback(&mut self, site: &str, rc: RawCallback, tz: chrono_tz::Tz) -> Option<CallbackConfig> {
        use crate::callback::{hours::WorkingHours, limits::Limits, number::Blocklist, text};
        if rc.enabled == Some(false) {
            return None;
        }
        let at = |field: &str| format!("site {site:?}: callback.{field}");
        let region_text = rc.region.unwrap_or_else(|| "RU".into());
        let region = region_text.to_ascii_uppercase().parse::<phonenumber::country::Id>().ok();
        if region.is_none() {
            self.fail(&at("region"), format!("{region_text:?} is not an ISO 3166 country code such as \"RU\""));
        }
        let lang = match rc.language.as_deref().unwrap_or("ru") {
            "ru" => text::Lang::Ru,
            "en" => text::Lang::En,
            other => {
                self.fail(&at("language"), format!("{other:?} is neither \"ru\" nor \"en\""));
                text::Lang::En
            }
        };
        let texts = text::Texts::new(lang, &rc.texts).map_err(|e| self.fail(&at("texts"), e)).ok();
        let hours = if rc.hours.is_empty() && rc.holidays.is_empty() {
            Some(WorkingHours::always(tz))
        } else {
            WorkingHours::parse(tz, &rc.hours, &rc.holidays)
                .map_err(|problems| problems.into_iter().for_each(|p| self.fail(&at("hours"), p)))
                .ok()
        };
        let blocklist = Blocklist::parse(&rc.blocklist)
            .map_err(|problems| problems.into_iter().for_each(|p| self.fail(&at("blocklist"), p)))
            .ok();
        let operator = self.number(&at("operator"), &rc.operator);
        let l = rc.limits;
        let limits = Limits {
            per_number: self.windows(&at("limits.per_number"), l.per_number, &["7/15m", "9/1h", "15/24h"]),
            number_ban: self.duration(&at("limits.number_ban"), l.number_ban.as_deref(), "24h", true),
            per_site: self.windows(&at("limits.per_site"), l.per_site, &["100/1h"]),
            per_ip: self.windows(&at("limits.per_ip"), l.per_ip, &["5/15m", "20/24h"]),
            per_visitor: self.windows(&at("limits.per_visitor"), l.per_visitor, &["3/15m", "10/24h"]),
        };
        let t = rc.trigger;
        let need = |v: &mut Validator, field: &str, value: Option<String>| -> String {
            match value.filter(|s| !s.is_empty()) {
                Some(s) => s,
                None => {
                    v.fail(&at(&format!("trigger.{field}")), format!("required for kind = {:?}", t.kind));
                    String::new()
                }
            }
        };
        let url = |v: &mut Validator, field: &str, value: Option<String>, default: Option<&str>| -> String {
            let u = value.or(default.map(str::to_owned));
            let u = need(v, field, u).trim_end_matches('/').to_owned();
            if !u.is_empty() && !http_url_ok(&u) {
                v.fail(&at(&format!("trigger.{field}")), format!("{u:?} is not an http(s) URL"));
            }
            u
        };
        let trigger = match t.kind.as_str() {
            "generic" => {
                let url = url(self, "url", t.url.clone(), None);
                let secret = need(self, "secret", t.secret.clone());
                if !secret.is_empty() && secret.len() < 16 {
                    self.fail(&at("trigger.secret"), "must be at least 16 characters");
                }
                Some(TriggerConfig::Generic { url, secret })
            }
            "voximplant" => Some(TriggerConfig::VoxImplant {
                base_url: url(self, "url", t.url.clone(), Some("https://api.voximplant.com")),
                account_id: need(self, "account_id", t.account_id.clone()),
                api_key: need(self, "api_key", t.api_key.clone()),
                rule_id: t.rule_id.unwrap_or_else(|| {
                    self.fail(
                        &at("trigger.rule_id"),
                        "required for kind = \"voximplant\" (the rule that runs the scenario)",
                    );
                    0
                }),
            }),
            "twilio" => {
                let from = need(self, "from", t.from.clone());
                let from = if from.is_empty() { None } else { self.number(&at("trigger.from"), &from) };
                let base_url = url(self, "url", t.url.clone(), Some("https://api.twilio.com"));
                let status_url = url(self, "status_url", t.status_url.clone(), None);
                from.map(|from| TriggerConfig::Twilio {
                    base_url,
                    account_sid: need(self, "account_sid", t.account_sid.clone()),
                    auth_token: need(self, "auth_token", t.auth_token.clone()),
                    from,
                    status_url,
                })
            }
            other => {
                self.fail(
                    &at("trigger.kind"),
                    format!("{other:?} is not one of \"generic\", \"voximplant\", \"twilio\""),
                );
                None
            }
        };
        let attempts = rc.attempts.unwrap_or(5);
        if attempts == 0 {
            self.fail(&at("attempts"), "must be at least 1");
        }
        let telegram = rc.telegram.map(|tg| {
            let base_url =
                tg.base_url.unwrap_or_else(|| "https://api.telegram.org".into()).trim_end_matches('/').to_owned();
            if !http_url_ok(&base_url) {
                self.fail(&at("telegram.base_url"), format!("{base_url:?} is not an http(s) URL"));
            }
            if tg.bot_token.is_empty() || tg.chat_id.is_empty() {
                self.fail(&at("telegram"), "bot_token and chat_id are required");
            }
            TelegramConfig { base_url, bot_token: tg.bot_token, chat_id: tg.chat_id }
        });
        let notify = rc.notify.map(|n| {
            if !http_url_ok(&n.url) {
                self.fail(&at("notify.url"), format!("{:?} is not an http(s) URL", n.url));
            }
            if n.secret.len() < 16 {
                self.fail(&at("notify.secret"), "must be at least 16 characters");
            }
            NotifyHook { url: n.url, secret: n.secret }
        });
        let min_time_on_site = self.duration(&at("min_time_on_site"), rc.min_time_on_site.as_deref(), "0s", true);
        let retry_base = self.duration(&at("retry_base"), rc.retry_base.as_deref(), "15s", false);
        Some(CallbackConfig {
            region: region?,
            texts: texts?,
            hours: hours?,
            blocklist: blocklist?,
            min_time_on_site,
            limits,
            operator: operator?,
            pbx: rc.pbx.unwrap_or_default(),
            trigger: trigger?,
            attempts,
            retry_base,
            telegram,
            notify,
        })
    }

    fn analytics(&mut self, raw: RawAnalytics, env: &dyn Env) -> AnalyticsConfig {
        let mut url = |field: &str, value: Option<String>, default: &str| {
            let u = value.unwrap_or_else(|| default.into()).trim_end_matches('/').to_owned();
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                self.fail(&format!("[analytics] {field}"), format!("{u:?} is not an http(s) URL"));
            }
            u
        };
        let ga4_base_url =
            url("ga4_base_url", env.var(ENV_GA4_BASE_URL).or(raw.ga4_base_url), "https://www.google-analytics.com");
        let yandex_base_url = url(
            "yandex_base_url",
            env.var(ENV_YANDEX_BASE_URL).or(raw.yandex_base_url),
            "https://api-metrika.yandex.net",
        );
        let ga4_event_name = raw.ga4_event_name.unwrap_or_else(|| "phone_call".into());
        if let Err(why) = crate::analytics::ga4_name_ok(&ga4_event_name) {
            self.fail("[analytics] ga4_event_name", format!("{ga4_event_name:?} {why}"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(12);
        if max_attempts == 0 {
            self.fail("[analytics] max_attempts", "must be at least 1");
        }
        AnalyticsConfig {
            ga4_base_url,
            ga4_event_name,
            ga4_debug: raw.ga4_debug.unwrap_or(false),
            yandex_base_url,
            yandex_upload_interval: self.duration(
                "[analytics] yandex_upload_interval",
                raw.yandex_upload_interval.as_deref(),
                "10m",
                false,
            ),
            finalize_after: self.duration("[analytics] finalize_after", raw.finalize_after.as_deref(), "1h", true),
            max_attempts,
            retry_base: self.duration("[analytics] retry_base", raw.retry_base.as_deref(), "10s", false),
            request_timeout: self.duration("[analytics] request_timeout", raw.request_timeout.as_deref(), "10s", false),
            calls_retention: self.duration(
                "[analytics] calls_retention",
                raw.calls_retention.as_deref(),
                "400d",
                false,
            ),
        }
    }

    fn pbxs(&mut self, raw: Vec<RawPbx>, env: &dyn Env) -> Vec<PbxConfig> {
        let mut out: Vec<PbxConfig> = Vec::new();
        for (i, p) in raw.into_iter().enumerate() {
            let at = |field: &str| format!("[[pbx]] #{} ({:?}) {field}", i + 1, p.id);
            let id_ok = !p.id.is_empty()
                && p.id.len() <= 32
                && p.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !id_ok {
                self.fail(&at("id"), "must be 1 to 32 characters of a-z, 0-9, '-' and '_'");
            } else if out.iter().any(|o| o.id == p.id) {
                self.fail(&at("id"), "another PBX has the same id");
            }
            let env_name = format!("{ENV_PBX_SECRET_PREFIX}{}", p.id.to_ascii_uppercase().replace('-', "_"));
            let secrets = match env.var(&env_name) {
                Some(s) => s.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
                None => p.secrets,
            };
            let twilio = match (p.twilio_auth_token.filter(|t| !t.is_empty()), p.twilio_url) {
                (Some(auth_token), Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
                    Some(TwilioAuth { auth_token, url })
                }
                (Some(_), _) => {
                    self.fail(
                        &at("twilio_url"),
                        "give the webhook URL exactly as configured in Twilio (https://host/v1/pbx/calls?pbx=ID)",
                    );
                    None
                }
                (None, Some(_)) => {
                    self.fail(&at("twilio_auth_token"), "twilio_url needs the account's auth token");
                    None
                }
                (None, None) => None,
            };
            if secrets.is_empty() && twilio.is_none() {
                self.fail(&at("secrets"), format!("list at least one signing secret (or set {env_name})"));
            }
            if secrets.iter().any(|s| s.len() < 16) {
                self.fail(&at("secrets"), "each secret must be at least 16 characters");
            }
            let requests_per_second = p.requests_per_second.unwrap_or(1000);
            if requests_per_second == 0 {
                self.fail(&at("requests_per_second"), "must be at least 1");
            }
            out.push(PbxConfig { id: p.id, secrets, requests_per_second, twilio });
        }
        out
    }
}

/// host-pid-time: unique per process, readable in RabbitMQ's queue list.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{nanos:x}", if host.is_empty() { "node" } else { &host }, std::process::id())
}

fn redis_url_ok(url: &str) -> Result<(), ()> {
    match url.split_once("://") {
        Some(("redis" | "rediss" | "redis+unix" | "unix", rest)) if !rest.is_empty() => Ok(()),
        _ => Err(()),
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn origin_ok(o: &str) -> Result<(), &'static str> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("must start with http:// or https:// and name a host")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err("must be scheme://host[:port] with no path, not even '/'");
    }
    rest.parse::<axum::http::uri::Authority>().map(|_| ()).map_err(|_| "does not name a valid host[:port]")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [pool]
        numbers = ["+74951230001", "+74951230002"]

        [[site]]
        id = "shop"
        key = "shop-public-key"
        allowed_origins = ["https://shop.example"]
        timezone = "Europe/Moscow"
        default_before = "+74951234567"
        default_after = "+74951234568"
        numbers = ["+74951230003"]
        max_numbers = 3
        delay_to_show = "50s"
    "#;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Parses `text` and checks that it fails with exactly the problems that contain `expected`.
    fn check(text: &str, expected: &[&str]) {
        match Config::parse(text, "test.toml", &env(&[])) {
            Ok(_) if expected.is_empty() => {}
            Ok(_) => panic!("expected problems {expected:?}, the config was accepted"),
            Err(e) => {
                assert_eq!(e.problems.len(), expected.len(), "problems: {:#?}", e.problems);
                for (p, want) in e.problems.iter().zip(expected) {
                    assert!(p.contains(want), "{p:?} does not contain {want:?}");
                }
            }
        }
    }

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(GOOD, "test.toml", &env(&[])).unwrap();
        let s = &c.sites[0];
        assert_eq!(s.rules.cooldown, Duration::from_secs(7 * 86_400));
        assert_eq!(s.rules.reclaim_after_idle, Duration::from_secs(1800));
        assert_eq!(s.timezone, chrono_tz::Europe::Moscow);
        assert_eq!(c.store, StoreConfig::Embedded { data_dir: "data".into() });
        let spec = c.pool_spec();
        assert_eq!(spec.numbers.len(), 3);
        assert_eq!(spec.numbers[2].dedicated_to, Some(s.id.clone()));
    }

    #[test]
    fn environment_overrides_secrets_and_urls() {
        let e = env(&[
            (ENV_STORE, "redis"),
            (ENV_REDIS_URL, "redis://10.0.0.1:6380/2"),
            (ENV_ADMIN_TOKEN, "0123456789abcdef"),
            (ENV_LISTEN, "0.0.0.0:9000"),
        ]);
        let c = Config::parse(GOOD, "test.toml", &e).unwrap();
        assert_eq!(c.store, StoreConfig::Redis { url: "redis://10.0.0.1:6380/2".into(), prefix: "callpool".into() });
        assert_eq!(c.server.admin_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(c.server.listen, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn bad_configs_name_the_site_and_field() {
        check(&GOOD.replace("+74951230002", "84951230002"), &["[pool] numbers[1]: \"84951230002\" is not an E.164"]);
        check(
            &GOOD.replace("default_after = \"+74951234568\"", "default_after = \"+74951230001\""),
            &["site \"shop\": default_after: +74951230001 is also a pool number"],
        );
        check(
            &GOOD.replace("numbers = [\"+74951230003\"]", "numbers = [\"+74951230002\"]"),
            &["site \"shop\": numbers[0]: +74951230002 is already used at [pool] numbers[1]"],
        );
        check(
            &GOOD.replace("delay_to_show = \"50s\"", "delay_to_show = \"5h\""),
            &["site \"shop\": delay_to_show: 5h is not shorter than max_hold"],
        );
        check(&GOOD.replace("timezone", "time_zone"), &["unknown field `time_zone`"]);
        check(&GOOD.replace("\"Europe/Moscow\"", "\"Mars/Olympus\""), &["site \"shop\": timezone"]);
        check(&GOOD.replace("\"50s\"", "\"fifty\""), &["site \"shop\": delay_to_show: \"fifty\" is not a duration"]);
        check(&GOOD.replace("https://shop.example", "shop.example/path"), &["allowed_origins[0]"]);
        check(
            &GOOD.replace("max_numbers = 3", "max_numbers = 0"),
            &["site \"shop\": max_numbers: the site has no numbers"],
        );
        check(
            &format!("{GOOD}\n{}", &GOOD[GOOD.find("[[site]]").unwrap()..].replace("+7495123000", "+7495124000")),
            &["site \"shop\": id: another site has the same id", "site \"shop\": key: another site has the same key"],
        );
    }

    #[test]
    fn callback_configs_are_checked_field_by_field() {
        let pbx = "\n[[pbx]]\nid = \"office\"\nsecrets = [\"office-secret-0123456789\"]\n";
        let with = |cb: &str| format!("{GOOD}\n[site.callback]\n{cb}\n{pbx}");
        let generic =
            "trigger = { kind = \"generic\", url = \"https://pbx.example/cb\", secret = \"trigger-secret-0123456\" }";
        let good = with(&format!("operator = \"+74951230099\"\n{generic}"));
        let c = Config::parse(&good, "test.toml", &env(&[])).unwrap();
        let cb = c.sites[0].callback.as_ref().unwrap();
        assert_eq!((cb.pbx.as_str(), cb.attempts, cb.trigger.kind()), ("office", 5, "generic"));
        assert_eq!(cb.limits.per_number.len(), 3, "the telecom defaults: 7/15m, 9/1h, 15/24h");
        assert_eq!(cb.limits.number_ban, Duration::from_secs(86_400));
        check(&with(&format!("operator = \"+7\"\n{generic}")), &["site \"shop\": callback.operator"]);
        check(
            &with(&format!("operator = \"+74951230099\"\nregion = \"XX\"\nlanguage = \"de\"\n{generic}")),
            &["callback.region: \"XX\"", "callback.language: \"de\""],
        );
        check(
            &with("operator = \"+74951230099\"\ntrigger = { kind = \"voximplant\", account_id = \"1\" }"),
            &["callback.trigger.api_key: required", "callback.trigger.rule_id: required"],
        );
        check(
            &with(&format!(
                "operator = \"+74951230099\"\nhours = {{ mon = \"9-18\" }}\nlimits = {{ per_ip = [\"5\"] }}\n{generic}"
            )),
            &["callback.hours: mon: \"9-18\" is not HH:MM-HH:MM", "callback.limits.per_ip: \"5\" is not N/period"],
        );
        check(
            &with(&format!(
                "operator = \"+74951230099\"\ntexts = {{ buton = \"x\" }}\nblocklist = [\"7916\"]\n{generic}"
            )),
            &["callback.texts: \"buton\" is not a text key", "callback.blocklist: \"7916\""],
        );
        check(
            &with(&format!("operator = \"+74951230099\"\npbx = \"nope\"\n{generic}")),
            &["site \"shop\": callback.pbx: name the [[pbx]]"],
        );
    }

    #[test]
    fn the_demo_config_is_valid() {
        let c = Config::demo(&env(&[])).unwrap();
        assert_eq!(c.sites.len(), 1);
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../callpool.example.toml");
        Config::parse(text, "callpool.example.toml", &env(&[])).unwrap();
    }

    #[test]
    fn track_filters_match_every_non_empty_list() {
        let f = TrackFilter {
            utm_source: vec!["Google".into()],
            referrer_domain: vec!["google.com".into()],
            ..Default::default()
        };
        let attrs = |src: Option<&str>, referrer: Option<&str>| callpool_pool::SessionAttrs {
            utm_source: src.map(Into::into),
            referrer: referrer.map(Into::into),
            ..Default::default()
        };
        assert!(f.tracks(&attrs(Some("google"), Some("https://www.google.com/search?q=x"))));
        assert!(f.tracks(&attrs(Some("google"), Some("https://google.com"))));
        assert!(!f.tracks(&attrs(Some("google"), Some("https://notgoogle.com/"))));
        assert!(!f.tracks(&attrs(Some("yandex"), Some("https://google.com/"))));
        assert!(!f.tracks(&attrs(None, Some("https://google.com/"))));
        assert!(TrackFilter::default().tracks(&attrs(None, None)));
        let clicks = TrackFilter { click_id: true, ..Default::default() };
        assert!(!clicks.tracks(&attrs(None, None)));
        assert!(clicks.tracks(&callpool_pool::SessionAttrs { yclid: Some("1".into()), ..Default::default() }));
    }

    #[test]
    fn origins() {
        assert!(origin_ok("https://example.com").is_ok());
        assert!(origin_ok("http://127.0.0.1:8080").is_ok());
        assert!(origin_ok("https://example.com/").is_err());
        assert!(origin_ok("example.com").is_err());
        assert!(origin_ok("ftp://example.com").is_err());
    }
}
