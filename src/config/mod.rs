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
pub(crate) mod tests;
