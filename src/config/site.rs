//! `[[site]]`: a website that embeds the snippet — its key and origins, its own numbers, the
//! visitor timeline, which traffic is tracked, how calls are matched, where its calls go
//! (GA4, Metrica), its report tokens and its callback form.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use callpool_pool::{PhoneNumber, SiteId, SiteRules};
use serde::Deserialize;

use super::callback::{CallbackConfig, RawCallback};
use super::env::Env;
use super::pool::{Placements, PoolConfig};
use super::section::{Sections, Slot};
use super::validate::{origin_ok, Validator};

#[derive(Clone, Debug)]
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
    /// The destinations' own tables (`[site.ga4]`, `[site.yandex]`, ...), read by their readers.
    pub sections: Sections,
    /// Bearer token for the site's reports (callers masked).
    pub report_token: Option<String>,
    /// Bearer token for the site's reports with callers in full.
    pub admin_token: Option<String>,
    /// The callback widget, when the site has one.
    pub callback: Option<CallbackConfig>,
    /// Leases one client address (IPv6: one /64) may be granted in a period, through each node;
    /// never more than half the site's numbers. `None`: no limit.
    pub leases_per_address: Option<crate::callback::limits::Window>,
    /// The reports' language when the reader's browser asks for neither Russian nor English.
    pub language: crate::callback::text::Lang,
    /// What one tracking number costs a month (`number_price = "4.70 USD"`), for the pool-size
    /// advice.
    pub number_price: Option<Price>,
    /// The report sent on a schedule (`[site.digest]`).
    pub digest: Option<super::mail::DigestConfig>,
}

/// An amount of money in a currency (ISO 4217 code).
#[derive(Clone, Debug, PartialEq)]
pub struct Price {
    pub amount: f64,
    pub currency: String,
}

impl Price {
    /// `"4.70 USD"` (a decimal point or comma, then the currency's three-letter code).
    pub fn parse(s: &str) -> Result<Price, String> {
        let bad = || format!("{s:?} is not a price such as \"4.70 USD\"");
        let (amount, currency) = s.trim().split_once(char::is_whitespace).ok_or_else(bad)?;
        let amount: f64 = amount.replace(',', ".").parse().map_err(|_| bad())?;
        let currency = currency.trim();
        let code = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
        if !amount.is_finite() || amount < 0.0 || !code {
            return Err(bad());
        }
        Ok(Price { amount, currency: currency.to_owned() })
    }
}

impl SiteConfig {
    /// The allowed origin that `origin` (a request's `Origin` header) names, if any: the one
    /// origin check of the websocket and the browser-facing API.
    pub fn allowed_origin(&self, origin: Option<&str>) -> Option<&str> {
        let origin = origin?;
        self.allowed_origins.iter().find(|a| a.eq_ignore_ascii_case(origin)).map(String::as_str)
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
pub fn referrer_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host)).filter(|h| !h.is_empty())
}

#[derive(Deserialize)]
pub(super) struct RawSite {
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
    report_token: Option<String>,
    admin_token: Option<String>,
    leases_per_address: Option<String>,
    language: Option<String>,
    number_price: Option<String>,
    callback: Option<RawCallback>,
    digest: Option<super::mail::RawDigest>,
    /// Anything else: destinations' tables, read by their own readers (an unknown name is a problem).
    #[serde(flatten)]
    sections: BTreeMap<String, toml::Value>,
    /// The site file it came from (`sites.d/<name>.toml`), named in its problems.
    #[serde(skip)]
    pub file: Option<String>,
}

/// What the sites read so far hold, to catch a second site with the same id or key.
#[derive(Default)]
pub(super) struct Seen {
    ids: HashSet<SiteId>,
    keys: HashSet<String>,
}

impl Validator {
    /// The `i`th `[[site]]` (from 0); `None` when it is too broken to keep (its problems are listed).
    pub(super) fn site(
        &mut self,
        i: usize,
        rs: RawSite,
        pool: &PoolConfig,
        placements: &mut Placements,
        seen: &mut Seen,
        env: &dyn Env,
    ) -> Option<SiteConfig> {
        let id = match SiteId::new(rs.id.clone()) {
            Ok(id) => id,
            Err(e) => {
                let place = rs.file.clone().unwrap_or_else(|| format!("[[site]] #{}", i + 1));
                self.fail(&format!("{place} ({:?}) id", rs.id), e);
                return None;
            }
        };
        let file = rs.file.as_ref().map(|f| format!(" ({f})")).unwrap_or_default();
        let at = |field: &str| format!("site {:?}{file}: {field}", rs.id);
        if !seen.ids.insert(id.clone()) {
            self.fail(&at("id"), "another site has the same id");
        }
        let key_ok = (8..=64).contains(&rs.key.len())
            && rs.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            self.fail(&at("key"), "must be 8 to 64 characters of A-Z, a-z, 0-9, '_' and '-'");
        } else if !seen.keys.insert(rs.key.clone()) {
            self.fail(&at("key"), "another site has the same key");
        }
        if rs.allowed_origins.is_empty() {
            self.fail(&at("allowed_origins"), "list the origins the snippet runs on, e.g. [\"https://example.com\"]");
        }
        for (j, o) in rs.allowed_origins.iter().enumerate() {
            if let Err(why) = origin_ok(o) {
                self.fail(&at(&format!("allowed_origins[{j}]")), format!("{o:?} {why}"));
            }
        }
        let timezone = match rs.timezone.as_deref().unwrap_or("UTC").parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                self.fail(&at("timezone"), format!("{:?} is not an IANA time zone such as Europe/Moscow", rs.timezone));
                chrono_tz::UTC
            }
        };
        let language = self.language(&at("language"), rs.language.as_deref(), crate::callback::text::Lang::Ru);
        let number_price = rs
            .number_price
            .as_deref()
            .and_then(|p| Price::parse(p).map_err(|e| self.fail(&at("number_price"), e)).ok());
        let default_before = self.number(&at("default_before"), &rs.default_before);
        let static_number = match &rs.static_number {
            Some(raw_n) => self.number(&at("static_number"), raw_n),
            None => default_before.clone(),
        };
        let default_after = self.number(&at("default_after"), &rs.default_after);
        for (field, n) in
            [("default_before", &default_before), ("default_after", &default_after), ("static_number", &static_number)]
        {
            if let Some(n) = n {
                placements.add_default(n, at(field));
            }
        }
        let mut dedicated = Vec::new();
        for (j, raw_n) in rs.numbers.iter().enumerate() {
            let where_ = at(&format!("numbers[{j}]"));
            if let Some(n) = self.number(&where_, raw_n) {
                placements.claim(self, &n, where_);
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
        } else if max_numbers as usize > dedicated.len() && pool.numbers.is_empty() {
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
        let mut sections = Sections::default();
        for (name, value) in rs.sections {
            if let Some(found) = self.section(Slot::Site, &name, at(&name), &rs.id, value, env) {
                sections.push(found);
            }
        }
        for (field, t) in [("report_token", &rs.report_token), ("admin_token", &rs.admin_token)] {
            if t.as_ref().is_some_and(|t| t.len() < 16) {
                self.fail(&at(field), "must be at least 16 characters");
            }
        }
        let callback = rs.callback.and_then(|rc| self.callback(&rs.id, rc, timezone, env));
        let digest = rs.digest.map(|d| self.digest(&at, d, language));
        let leases_per_address = match rs.leases_per_address.as_deref().unwrap_or("3/10m") {
            "off" => None,
            text => match crate::callback::limits::Window::parse(text) {
                // One address never takes more than half the site's numbers in a period.
                Ok(w) => Some(crate::callback::limits::Window { count: w.count.min((max_numbers / 2).max(1)), ..w }),
                Err(why) => {
                    self.fail(&at("leases_per_address"), format!("{why} (or \"off\")"));
                    None
                }
            },
        };
        Some(SiteConfig {
            id,
            key: rs.key,
            allowed_origins: rs.allowed_origins,
            timezone,
            default_before: default_before?,
            default_after: default_after?,
            numbers: dedicated,
            static_number: static_number?,
            track: rs.track,
            delay_to_show,
            rules,
            windows,
            sections,
            report_token: rs.report_token,
            admin_token: rs.admin_token,
            callback,
            leases_per_address,
            language,
            number_price,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
