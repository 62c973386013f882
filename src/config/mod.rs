//! The configuration: one TOML file (plus `CALLPOOL_*` environment overrides for secrets and
//! URLs), parsed once into typed, validated fields and passed down. Nothing else reads the
//! environment.
//!
//! One file per section holds its schema and its validation (`server.rs`: `[server]`, `[store]`,
//! `[bus]`; `pool.rs`; `site.rs`; `callback.rs`; `analytics.rs`; `pbx.rs`); `validate.rs` what
//! they share. Every problem is reported at once, each naming the file, the site and the field.

mod analytics;
mod callback;
mod env;
mod files;
mod mail;
mod pbx;
mod pool;
pub mod section;
mod server;
mod site;
mod validate;

use std::fmt;
use std::path::Path;

use callpool_pool::{NumberSpec, PoolSpec, SiteId};
use serde::Deserialize;

pub use analytics::AnalyticsConfig;
pub use callback::{CallbackConfig, Hunt, Operators};
pub use env::*;
pub use mail::{DigestConfig, Every, MailConfig, Security, TelegramChat};
pub use pbx::PbxConfig;
pub use pool::PoolConfig;
pub use section::{Fields, Place, Reader, Section, Sections};
pub use server::{percent_encode, BusConfig, SentinelConfig, ServerConfig, StoreConfig, TlsFiles};
pub use site::{referrer_host, Price, SiteConfig, TrackFilter};

/// The built-in demo configuration `callpool serve` uses when there is no config file.
pub const DEMO_CONFIG: &str = include_str!("../../deploy/demo.toml");

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

#[derive(Clone, Debug)]
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
    /// The SMTP server the digests go out through.
    pub mail: Option<MailConfig>,
    /// A fingerprint of the text read (the file and its site files): nodes that read the same
    /// files run the same version.
    pub version: String,
}

/// The directory beside the configuration file that holds one file per site.
pub const SITES_DIR: &str = "sites.d";

/// The `*.toml` files of `dir` (none when it does not exist), by name, each with its text.
fn site_files(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: cannot read the directory: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: cannot read the directory: {e}", dir.display()))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        // Editors' backups and hidden files are not sites.
        if path.extension().is_none_or(|x| x != "toml") || name.starts_with('.') {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read the file: {e}", path.display()))?;
        files.push((name, text));
    }
    files.sort();
    Ok(files)
}

/// Reads TOML text into `T`, with the secrets given as files read in (`at` names where the text
/// came from in problems; each file's content goes to `secrets`, for the version). Without any,
/// the text is read as it is, so its errors point at lines.
fn read_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    at: &str,
    secrets: &mut Vec<String>,
) -> Result<T, Vec<String>> {
    let named = |e: toml::de::Error| vec![toml_problem(text, at, &e)];
    let mut table: toml::Table = toml::from_str(text).map_err(named)?;
    let mut problems = Vec::new();
    if !files::expand(&mut table, at, &mut problems, secrets) {
        return toml::from_str(text).map_err(named);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    T::deserialize(toml::Value::Table(table)).map_err(named)
}

/// A TOML error as a problem: where (the line and column) and what, without the line itself,
/// which may hold a secret (`admin_tokn = "..."` is an unknown field).
fn toml_problem(text: &str, at: &str, e: &toml::de::Error) -> String {
    let place = e.span().map_or_else(String::new, |span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}: ")
    });
    let file = if at.is_empty() { String::new() } else { format!("{at}: ") };
    format!("{file}{place}{}", e.message().trim_end())
}

/// The version of a configuration: the first 12 hex digits of the SHA-256 of its texts and of
/// the secrets read from files (a rotated secret file is a new version; the digest does not
/// reveal it).
fn version(text: &str, site_files: &[(String, String)], secrets: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(text);
    for (name, text) in site_files {
        h.update([0]);
        h.update(name);
        h.update([0]);
        h.update(text);
    }
    for secret in secrets {
        h.update([1]);
        h.update(secret);
    }
    hex::encode(&h.finalize()[..6])
}

/// The readers of the vendors' and destinations' own sections.
pub type Readers = [&'static dyn Reader];

impl Config {
    /// Reads and validates `path` and the site files in the `sites.d` directory beside it (with
    /// `readers` for the sections they own), then applies the environment overrides.
    /// (`Config::load` passes every reader callpool has.)
    pub fn load_with(path: &Path, env: &dyn Env, readers: &Readers) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let refuse = |problem: String| ConfigError { source: source.clone(), problems: vec![problem] };
        let text = std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read the file: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new(".")).join(SITES_DIR);
        let site_files = site_files(&dir).map_err(refuse)?;
        Config::parse_files(&text, &source, &site_files, env, readers)
    }

    /// Parses and validates TOML text; `source` names it in errors.
    pub fn parse_with(text: &str, source: &str, env: &dyn Env, readers: &Readers) -> Result<Config, ConfigError> {
        Config::parse_files(text, source, &[], env, readers)
    }

    /// The main file's text and each site file's (its name in `sites.d`, its text), parsed and
    /// validated together: a site file holds one site's settings, as a `[[site]]` table would.
    fn parse_files(
        text: &str,
        source: &str,
        site_files: &[(String, String)],
        env: &dyn Env,
        readers: &Readers,
    ) -> Result<Config, ConfigError> {
        let refused = |problems| ConfigError { source: source.to_owned(), problems };
        let mut secrets = Vec::new();
        let mut raw: RawConfig = read_toml(text, "", &mut secrets).map_err(refused)?;
        let mut problems = Vec::new();
        for (name, text) in site_files {
            let at = format!("{SITES_DIR}/{name}");
            match read_toml::<site::RawSite>(text, &at, &mut secrets) {
                Ok(mut site) => {
                    site.file = Some(at);
                    raw.sites.push(site);
                }
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            return Err(refused(problems));
        }
        let mut v = validate::Validator { problems: Vec::new(), readers: readers.to_vec() };
        let mut config = v.config(raw, source, env);
        if !v.problems.is_empty() {
            return Err(refused(v.problems));
        }
        config.version = version(text, site_files, &secrets);
        Ok(config)
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
    server: server::RawServer,
    #[serde(default)]
    store: server::RawStore,
    #[serde(default)]
    bus: server::RawBus,
    #[serde(default)]
    pool: pool::RawPool,
    #[serde(default, rename = "site")]
    sites: Vec<site::RawSite>,
    #[serde(default)]
    analytics: analytics::RawAnalytics,
    #[serde(default)]
    pbx: Vec<pbx::RawPbx>,
    mail: Option<mail::RawMail>,
}

impl validate::Validator {
    /// The whole file, section by section; the cross-section rules come last.
    fn config(&mut self, raw: RawConfig, source: &str, env: &dyn Env) -> Config {
        let store = self.store(raw.store, env);
        let mut placements = pool::Placements::default();
        let pool = self.pool(raw.pool, &mut placements);
        let mut seen = site::Seen::default();
        let mut sites: Vec<SiteConfig> = Vec::new();
        for (i, rs) in raw.sites.into_iter().enumerate() {
            sites.extend(self.site(i, rs, &pool, &mut placements, &mut seen, env));
        }
        placements.check_defaults(self);
        let ids: Vec<SiteId> = sites.iter().map(|s| s.id.clone()).collect();
        let server = self.server(raw.server, &ids, env);
        let bus = self.bus(raw.bus, &store, env);
        let analytics = self.analytics(raw.analytics, env);
        let declared: Vec<String> = raw.pbx.iter().map(|p| p.id.clone()).collect();
        let pbxs = self.pbxs(raw.pbx, env);
        self.callback_pbxs(&mut sites, &declared);
        let mail = raw.mail.map(|m| self.mail(m));
        self.digests(&sites, mail.as_ref(), server.public_url.as_deref());
        Config {
            source: source.to_owned(),
            server,
            store,
            bus,
            pool,
            sites,
            analytics,
            pbxs,
            mail,
            version: String::new(),
        }
    }

    /// A digest by email needs `[mail]`, and every digest `[server] public_url` (its link).
    fn digests(&mut self, sites: &[SiteConfig], mail: Option<&MailConfig>, public_url: Option<&str>) {
        for site in sites {
            let Some(d) = &site.digest else { continue };
            let at = format!("site {:?}: digest", site.id.as_str());
            if !d.email.is_empty() && mail.is_none() {
                self.fail(&format!("{at}.email"), "sending mail needs the SMTP server: add a [mail] section");
            }
            if public_url.is_none() {
                self.fail(&at, "its link needs [server] public_url (where people reach callpool)");
            }
        }
    }

    /// Each callback form names the `[[pbx]]` that reports its calls (the only one, by default).
    pub(super) fn callback_pbxs(&mut self, sites: &mut [SiteConfig], pbxs: &[String]) {
        for site in sites {
            let Some(cb) = &mut site.callback else { continue };
            if cb.pbx.is_empty() && pbxs.len() == 1 {
                cb.pbx = pbxs[0].clone();
            }
            if !pbxs.contains(&cb.pbx) {
                self.fail(
                    &format!("site {:?}: callback.pbx", site.id.as_str()),
                    "name the [[pbx]] whose call webhooks report the callbacks (needed when there is not exactly one)",
                );
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    pub(crate) const GOOD: &str = r#"
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

    pub(crate) fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Parses `text` and checks that it fails with exactly the problems that contain `expected`.
    pub(crate) fn check(text: &str, expected: &[&str]) {
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
        assert_eq!(
            c.store,
            StoreConfig::Redis {
                url: "redis://10.0.0.1:6380/2".into(),
                prefix: "callpool".into(),
                tls: Default::default(),
                sentinel: None
            }
        );
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
        assert_eq!((cb.pbx.as_str(), cb.attempts, cb.trigger.name()), ("office", 5, "generic"));
        assert_eq!(cb.limits.per_number.len(), 3, "the telecom defaults: 7/15m, 9/1h, 15/24h");
        assert_eq!(cb.limits.number_ban, Duration::from_secs(86_400));
        assert_eq!((cb.countries.clone(), cb.min_time_on_site), (vec!["RU".to_owned()], Duration::from_secs(10)));
        check(
            &with(&format!("operator = \"+74951230099\"\ncountries = [\"ru\", \"Narnia\"]\n{generic}")),
            &["callback.countries: \"NARNIA\" is not a region"],
        );
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
    fn secrets_may_come_from_files_and_never_show_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let admin = file("admin", "admin-token-from-a-file-0123\n");
        let secrets = file("secrets", "office-secret-0123456789\nsecond-secret-0123456789\n");
        let password = file("redis", "p@ss word/1\n");
        let text = format!(
            "{GOOD}\n[server]\nadmin_token_file = {admin:?}\n[store]\nkind = \"redis\"\nredis_url = \"redis://10.0.0.1:6380/2\"\n\
             redis_username = \"callpool\"\nredis_password_file = {password:?}\n[[pbx]]\nid = \"office\"\nsecrets_file = {secrets:?}\n"
        );
        let c = Config::parse(&text, "test.toml", &env(&[])).unwrap();
        assert_eq!(
            c.server.admin_token.as_deref(),
            Some("admin-token-from-a-file-0123"),
            "the last line break dropped"
        );
        let StoreConfig::Redis { url, .. } = &c.store else { panic!("{:?}", c.store) };
        assert_eq!(url, "redis://callpool:p%40ss%20word%2F1@10.0.0.1:6380/2", "written into the URL, encoded");
        assert!(!c.store.to_string().contains("p%40ss"), "shown redacted: {}", c.store);
        let missing = dir.path().join("nope").display().to_string();
        let bad = format!(
            "{GOOD}\n[server]\nadmin_token = \"x\"\nadmin_token_file = {admin:?}\nmetrics_token_file = {missing:?}\n"
        );
        let e = Config::parse(&bad, "test.toml", &env(&[])).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
        assert!(e.problems[0].contains("server.admin_token_file: give either admin_token or admin_token_file"));
        assert!(e.problems[1].contains("server.metrics_token_file") && e.problems[1].contains("cannot open it"));
        assert!(!format!("{e:?}").contains("admin-token-from-a-file"), "a secret's content is never in an error");
        check(
            &format!("{GOOD}\n[store]\nkind = \"redis\"\nredis_url = \"redis://u:p@h/\"\nredis_password = \"x\"\n"),
            &["[store] redis_password: the URL names a user already"],
        );
    }

    #[test]
    fn sentinel_settings_are_checked_and_the_sentinel_password_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("sentinel");
        std::fs::write(&password, "sentinel-pw\n").unwrap();
        let store = |extra: &str| {
            format!("{GOOD}\n[store]\nkind = \"redis\"\nredis_url = \"redis://mymaster/3\"\nredis_password = \"pw\"\n{extra}\n")
        };
        let text = store(&format!(
            "redis_sentinels = [\"10.0.0.1:26379\", \"[::1]:26380\"]\nredis_master_name = \"mymaster\"\n\
             redis_sentinel_password_file = {:?}",
            password.display().to_string()
        ));
        let c = Config::parse(&text, "test.toml", &env(&[])).unwrap();
        let StoreConfig::Redis { sentinel: Some(s), url, .. } = &c.store else { panic!("{:?}", c.store) };
        assert_eq!(s.sentinels, vec![("10.0.0.1".to_owned(), 26379), ("::1".to_owned(), 26380)]);
        assert_eq!((s.master_name.as_str(), s.password.as_deref()), ("mymaster", Some("sentinel-pw")));
        assert_eq!(url, "redis://:pw@mymaster/3");
        let shown = format!("{} {:?}", c.store, s);
        assert!(!shown.contains("pw@") && !shown.contains("sentinel-pw"), "{shown}");
        assert!(shown.contains("primary \"mymaster\" of sentinels 10.0.0.1:26379, ::1:26380"), "{shown}");

        check(
            &store("redis_sentinels = [\"10.0.0.1\", \"h:0\", \"a/b:1\"]"),
            &[
                "[store] redis_sentinels[0]: \"10.0.0.1\" is not a host:port",
                "[store] redis_sentinels[1]",
                "[store] redis_sentinels[2]",
                "[store] redis_master_name: must name the primary",
            ],
        );
        check(
            &store("redis_sentinels = []\nredis_master_name = \"m\""),
            &["[store] redis_sentinels: must name at least one"],
        );
        check(&store("redis_master_name = \"m\""), &["[store] redis_master_name: needs redis_sentinels"]);
        check(&store("redis_sentinel_password = \"x\""), &["[store] redis_sentinel_password: is for the sentinels"]);
    }

    #[test]
    fn a_callback_may_ring_several_operators_as_its_pbx_can() {
        let pbx = "\n[[pbx]]\nid = \"office\"\nsecrets = [\"office-secret-0123456789\"]\n";
        let with = |cb: &str| format!("{GOOD}\n[site.callback]\n{cb}\n{pbx}");
        let generic =
            "trigger = { kind = \"generic\", url = \"https://pbx.example/cb\", secret = \"trigger-secret-0123456\" }";
        let c = Config::parse(
            &with(&format!("operators = [\"+74951230099\", \"+7 495 123-00-98\"]\nhunt = \"all\"\n{generic}")),
            "test.toml",
            &env(&[]),
        );
        let c = c.unwrap();
        let cb = c.sites[0].callback.as_ref().unwrap();
        assert_eq!(cb.operators, ["+74951230099", "+74951230098"], "read as E.164");
        assert_eq!((cb.hunt, cb.ring_for), (Hunt::All, Duration::from_secs(25)));
        // Mango rings its own extension unless the form lists others (extensions, then).
        let mango = "trigger = { kind = \"mango\", api_key = \"mango-key-0123\", api_salt = \"mango-salt-0123456789\", extension = \"101\" }";
        let c = Config::parse(&with(mango), "test.toml", &env(&[])).unwrap();
        assert_eq!(c.sites[0].callback.as_ref().unwrap().operators, ["101"]);
        let c = Config::parse(&with(&format!("operators = [\"102\", 103]\n{mango}")), "test.toml", &env(&[]));
        assert!(c.is_err(), "a bare number is not a string");
        let c = Config::parse(&with(&format!("operators = [\"102\", \"103\"]\n{mango}")), "test.toml", &env(&[]));
        assert_eq!(c.unwrap().sites[0].callback.as_ref().unwrap().operators, ["102", "103"]);
        check(
            &with(&format!("operators = [\"102\", \"103\", \"+7495\"]\nhunt = \"all\"\n{mango}")),
            &["callback.operators: \"+7495\" is not an extension", "callback.hunt: this trigger's PBX cannot"],
        );
        let zadarma = "trigger = { kind = \"zadarma\", key = \"a248a6a984459935b569\", secret = \"zadarma-secret-0123456789\", from = \"100\" }";
        check(
            &with(&format!("operators = [\"100\", \"101\"]\n{zadarma}")),
            &["callback.operators: this trigger's PBX does not report the callback's call"],
        );
        check(
            &with(&format!(
                "operators = [\"+74951230099\", \"+74951230099\"]\nhunt = \"first\"\nring_for = \"2s\"\n{generic}"
            )),
            &[
                "callback.ring_for: between 5s and 5m",
                "callback.hunt: \"first\" is neither",
                "callback.operators: \"+74951230099\" is listed twice",
            ],
        );
        check(&with(generic), &["callback.operator: required"]);
    }

    #[test]
    fn vendors_and_destinations_read_their_own_tables() {
        let pbx = |fields: &str| format!("{GOOD}\n[[pbx]]\nid = \"tw\"\n{fields}\n");
        let c = Config::parse(
            &pbx("kind = \"twilio\"\nauth_token = \"t\"\nurl = \"https://cp.example/v1/pbx/calls?pbx=tw\""),
            "test.toml",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.pbxs[0].adapter.name(), "twilio");
        check(
            &pbx("kind = \"twilio\""),
            &["[[pbx]] #1 (\"tw\") auth_token: required", "[[pbx]] #1 (\"tw\") url: required"],
        );
        check(
            &pbx("kind = \"no-such-vendor\""),
            &["[[pbx]] #1 (\"tw\") kind: \"no-such-vendor\" is not one of \"callpool\", \"twilio\""],
        );
        check(&pbx("secrets = [\"long-enough-secret-0123\"]\nsecret = \"typo\""), &["unknown field `secret`"]);
        // No secret: only with a token (or addresses) of its own.
        check(&pbx(""), &["[[pbx]] #1 (\"tw\") secrets: list at least one signing secret"]);
        check(&pbx("token = \"a-long-enough-token-0123\""), &[]);
        check(
            &pbx("allow_from = [\"10.0.0.0/8\", \"nonsense\"]"),
            &["[[pbx]] #1 (\"tw\") allow_from[1]: \"nonsense\""],
        );
        let site = |table: &str| format!("{GOOD}\n{table}\n");
        let c =
            Config::parse(&site("[site.ga4]\nmeasurement_id = \"G-ABC1\"\napi_secret = \"s\""), "test.toml", &env(&[]))
                .unwrap();
        assert!(c.sites[0].sections.get::<crate::jobs::ga4::Ga4Site>("ga4").is_some());
        check(
            &site("[site.ga4]\nmeasurement_id = \"UA-1\"\napi_secret = \"s\""),
            &["site \"shop\": ga4.measurement_id: \"UA-1\""],
        );
        check(&site("[site.salesforce]\nsubdomain = \"x\""), &["site \"shop\": unknown field `salesforce`"]);
    }

    #[test]
    fn the_demo_config_is_valid() {
        let c = Config::demo(&env(&[])).unwrap();
        assert_eq!(c.sites.len(), 1);
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../callpool.example.toml");
        Config::parse(text, "callpool.example.toml", &env(&[])).unwrap();
    }

    /// `sites.d/` beside the file: one site per `*.toml` file, read in name order; other files
    /// are not sites; a problem in a site file names the file; the version follows every file.
    #[test]
    fn site_files_in_sites_d_are_read_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("callpool.toml");
        std::fs::write(&file, GOOD).unwrap();
        let load = || Config::load(&file, &env(&[]));
        let alone = load().unwrap();
        assert_eq!(alone.version.len(), 12);
        let sites = dir.path().join(SITES_DIR);
        std::fs::create_dir(&sites).unwrap();
        let site = |id: &str, n: u8| {
            format!(
                "id = {id:?}\nkey = \"{id}-public-key\"\nallowed_origins = [\"https://{id}.example\"]\n\
                 default_before = \"+7495123450{n}\"\ndefault_after = \"+7495123451{n}\"\nnumbers = [\"+7495123000{n}\"]\n"
            )
        };
        std::fs::write(sites.join("b-news.toml"), site("news", 5)).unwrap();
        std::fs::write(sites.join("a-blog.toml"), site("blog", 4)).unwrap();
        std::fs::write(sites.join("README"), "not a site").unwrap();
        std::fs::write(sites.join(".blog.toml.swp"), "not a site").unwrap();
        let with = load().unwrap();
        let ids: Vec<&str> = with.sites.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["shop", "blog", "news"]);
        assert_ne!(with.version, alone.version);
        assert_eq!(load().unwrap().version, with.version, "the same files, the same version");

        // A syntax error, and a site that clashes with another: each named with its file.
        std::fs::write(sites.join("c-bad.toml"), "id = \"bad\"\nkey = ").unwrap();
        let e = load().unwrap_err();
        assert!(e.problems.len() == 1 && e.problems[0].starts_with("sites.d/c-bad.toml: "), "{:?}", e.problems);
        std::fs::write(sites.join("c-bad.toml"), site("blog", 6)).unwrap();
        let e = load().unwrap_err();
        assert!(e.problems.iter().any(|p| p.contains("site \"blog\" (sites.d/c-bad.toml): id")), "{:?}", e.problems);
    }

    /// A problem never quotes the line it is on (it may hold a secret), and a rotated secret
    /// file makes a new version without showing in it.
    #[test]
    fn problems_do_not_quote_lines_and_secret_files_count_in_the_version() {
        let typo = GOOD.replace("[pool]", "[server]\nadmin_tokn = \"s3cret-value-0123456789\"\n\n[pool]");
        let e = Config::parse(&typo, "test.toml", &env(&[])).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert!(e.problems[0].starts_with("line 3, column 1: unknown field `admin_tokn`"), "{:?}", e.problems);
        assert!(!e.to_string().contains("s3cret"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let (file, secret) = (dir.path().join("callpool.toml"), dir.path().join("admin_token"));
        let text = GOOD
            .replace("[pool]", &format!("[server]\nadmin_token_file = {:?}\n\n[pool]", secret.display().to_string()));
        std::fs::write(&file, text).unwrap();
        std::fs::write(&secret, "first-admin-token-0123456789\n").unwrap();
        let first = Config::load_with(&file, &env(&[]), &[]).unwrap();
        std::fs::write(&secret, "second-admin-token-0123456789\n").unwrap();
        let second = Config::load_with(&file, &env(&[]), &[]).unwrap();
        assert_eq!(second.server.admin_token.as_deref(), Some("second-admin-token-0123456789"));
        assert_ne!(first.version, second.version);
    }
}
