//! `[site.callback]`: a site's "call me back" form — its region and texts, working hours,
//! blocklist and limits, the operator line, how the PBX is asked (the trigger) and who on the
//! team is told (Telegram, a signed webhook).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use callpool_pool::PhoneNumber;
use serde::Deserialize;

use super::validate::{http_url_ok, Validator};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallback {
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

impl Validator {
    pub(super) fn windows(
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

    pub(super) fn callback(&mut self, site: &str, rc: RawCallback, tz: chrono_tz::Tz) -> Option<CallbackConfig> {
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
            let u = need(v, field, value.or(default.map(str::to_owned)));
            if u.is_empty() {
                u
            } else {
                v.url(&at(&format!("trigger.{field}")), u)
            }
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
                self.url(&at("telegram.base_url"), tg.base_url.unwrap_or_else(|| "https://api.telegram.org".into()));
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
}

impl Validator {
    /// Each callback form names the `[[pbx]]` that reports its calls (the only one, by default).
    pub(super) fn callback_pbxs(&mut self, sites: &mut [super::SiteConfig], pbxs: &[super::PbxConfig]) {
        for site in sites {
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
    }
}
