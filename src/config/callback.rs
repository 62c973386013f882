//! `[site.callback]`: a site's "call me back" form — its region and texts, working hours,
//! blocklist and limits, the operator line, how the PBX is asked (the trigger: a PBX vendor's
//! section) and who on the team is told (destinations' sections, e.g. `telegram`, `notify`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::env::Env;
use super::section::{Section, Sections, Slot};
use super::validate::Validator;

/// A site's callback widget.
#[derive(Clone, Debug)]
pub struct CallbackConfig {
    /// The region a number typed without its country code is read in (`RU`).
    pub region: phonenumber::country::Id,
    pub texts: crate::callback::text::Texts,
    /// In the site's time zone; a request outside them is scheduled for the next opening.
    pub hours: crate::callback::hours::WorkingHours,
    pub blocklist: crate::callback::number::Blocklist,
    /// The countries whose numbers are called (libphonenumber region ids, `RU`, `KZ`; `001` for
    /// non-geographic numbers such as satellite phones). Default: the site's `region`.
    pub countries: Vec<String>,
    /// How long a visitor must have been on the site, by the hub's own record of the visit,
    /// before the form may be used; zero also takes requests without a visitor.
    pub min_time_on_site: Duration,
    pub limits: crate::callback::limits::Limits,
    /// Who the PBX rings first, as the trigger names an operator (a number, an extension, a
    /// channel): `operators`, else the trigger's own (Mango's `extension`, ...), else the form's
    /// `operator` number. Never empty.
    pub operators: Vec<String>,
    /// How several operators are rung: in turn (callpool moves on when one does not answer) or
    /// all at once (by a PBX that can).
    pub hunt: Hunt,
    /// How long an operator's phone rings before callpool moves on to the next.
    pub ring_for: Duration,
    /// The `[[pbx]]` whose call webhooks report the callbacks' outcomes.
    pub pbx: String,
    /// How the PBX is asked: the trigger vendor's settings (its name is the `kind`).
    pub trigger: Section,
    /// Trigger attempts before the callback is given up as failed.
    pub attempts: u32,
    /// The first retry waits this long, each further one twice as long.
    pub retry_base: Duration,
    /// The destinations' own tables under `[site.callback]` (`telegram`, `notify`, ...).
    pub sections: Sections,
}

/// How a callback rings several operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hunt {
    /// One after the other, in the order listed: the next when one does not answer within
    /// `ring_for` (or the PBX reports the call to them missed).
    InTurn,
    /// All at once; the PBX puts the first who answers through.
    All,
}

/// What a trigger says of the operators a form names (its reader gives it as its section's
/// facet, an `Arc<dyn Operators>`).
pub trait Operators: Send + Sync {
    /// Reads an operator of the form's `operators` as the trigger names one.
    fn check_operator(&self, raw: &str) -> Result<String, String>;
    /// The operator the trigger's own settings name, rung when the form lists none.
    fn own_operator(&self) -> Option<&str>;
    /// Whether its PBX can be asked to ring every operator at once.
    fn rings_all(&self) -> bool;
    /// Whether its PBX's reports follow the callback's call (answered, missed).
    fn follows_calls(&self) -> bool;
}

/// The most operators a form may list.
const MAX_OPERATORS: usize = 20;

#[derive(Deserialize)]
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
    countries: Option<Vec<String>>,
    operator: Option<String>,
    operators: Option<Vec<String>>,
    hunt: Option<String>,
    ring_for: Option<String>,
    pbx: Option<String>,
    trigger: toml::Table,
    attempts: Option<u32>,
    retry_base: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    /// Destinations' tables, read by their own readers.
    #[serde(flatten)]
    sections: BTreeMap<String, toml::Value>,
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

impl Validator {
    /// The form's operators, as its trigger names them, and whether the trigger can hunt through
    /// them as `hunt` says.
    fn operators(
        &mut self,
        at: &dyn Fn(&str) -> String,
        trigger: &dyn Operators,
        operator: Option<String>,
        operators: Option<Vec<String>>,
        hunt: Hunt,
    ) -> Option<Vec<String>> {
        let list = match (operators, trigger.own_operator(), operator) {
            (Some(list), ..) => {
                let mut checked = Vec::new();
                for raw in &list {
                    match trigger.check_operator(raw.trim()) {
                        Ok(op) if checked.contains(&op) => {
                            self.fail(&at("operators"), format!("{raw:?} is listed twice"))
                        }
                        Ok(op) => checked.push(op),
                        Err(e) => self.fail(&at("operators"), e),
                    }
                }
                if list.is_empty() || list.len() > MAX_OPERATORS {
                    self.fail(&at("operators"), format!("list 1 to {MAX_OPERATORS} operators"));
                }
                checked
            }
            (None, Some(own), _) => vec![own.to_owned()],
            (None, None, Some(number)) => vec![self.number(&at("operator"), &number)?.as_str().to_owned()],
            (None, None, None) => {
                self.fail(&at("operator"), "required: the number the PBX rings first (the site's operator line)");
                return None;
            }
        };
        if list.len() > 1 && hunt == Hunt::All && !trigger.rings_all() {
            self.fail(
                &at("hunt"),
                "this trigger's PBX cannot be asked to ring several operators at once: use \"in_turn\", or a group of the PBX's own as its operator",
            );
        }
        if list.len() > 1 && hunt == Hunt::InTurn && !trigger.follows_calls() {
            self.fail(
                &at("operators"),
                "this trigger's PBX does not report the callback's call, so callpool cannot tell when to ring the next operator: name one (a group of the PBX's own rings several)",
            );
        }
        Some(list)
    }

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

    pub(super) fn callback(
        &mut self,
        site: &str,
        rc: RawCallback,
        tz: chrono_tz::Tz,
        env: &dyn Env,
    ) -> Option<CallbackConfig> {
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
        let lang = self.language(&at("language"), rc.language.as_deref(), text::Lang::Ru);
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
        let l = rc.limits;
        let limits = Limits {
            per_number: self.windows(&at("limits.per_number"), l.per_number, &["7/15m", "9/1h", "15/24h"]),
            number_ban: self.duration(&at("limits.number_ban"), l.number_ban.as_deref(), "24h", true),
            per_site: self.windows(&at("limits.per_site"), l.per_site, &["100/1h"]),
            per_ip: self.windows(&at("limits.per_ip"), l.per_ip, &["5/15m", "20/24h"]),
            per_visitor: self.windows(&at("limits.per_visitor"), l.per_visitor, &["3/15m", "10/24h"]),
        };
        let mut trigger_table = rc.trigger;
        let trigger = match trigger_table.remove("kind") {
            Some(toml::Value::String(kind)) => {
                self.section(Slot::Trigger, &kind, at("trigger"), site, trigger_table.into(), env)
            }
            _ => {
                self.fail(&at("trigger.kind"), "required: how the PBX is asked (see callpool.example.toml)");
                None
            }
        };
        let attempts = rc.attempts.unwrap_or(5);
        if attempts == 0 {
            self.fail(&at("attempts"), "must be at least 1");
        }
        let mut sections = Sections::default();
        for (name, value) in rc.sections {
            if let Some(found) = self.section(Slot::Callback, &name, at(&name), site, value, env) {
                sections.push(found);
            }
        }
        let min_time_on_site = self.duration(&at("min_time_on_site"), rc.min_time_on_site.as_deref(), "10s", true);
        // The site's region when not given (refused once, as `region`, if it is not one).
        let countries: Vec<String> = match rc.countries {
            None => vec![region_text.to_ascii_uppercase()],
            Some(list) => {
                let list: Vec<String> = list.iter().map(|c| c.to_ascii_uppercase()).collect();
                if list.is_empty() {
                    self.fail(&at("countries"), "list at least one country whose numbers may be called, e.g. [\"RU\"]");
                }
                for c in &list {
                    if phonenumber::metadata::DATABASE.by_id(c).is_none() {
                        self.fail(
                            &at("countries"),
                            format!("{c:?} is not a region such as \"RU\" (or \"001\": non-geographic)"),
                        );
                    }
                }
                list
            }
        };
        let retry_base = self.duration(&at("retry_base"), rc.retry_base.as_deref(), "15s", false);
        let ring_for = self.duration(&at("ring_for"), rc.ring_for.as_deref(), "25s", false);
        if !(Duration::from_secs(5)..=Duration::from_secs(300)).contains(&ring_for) {
            self.fail(&at("ring_for"), "between 5s and 5m: how long an operator's phone rings");
        }
        let hunt = match rc.hunt.as_deref() {
            None | Some("in_turn") => Some(Hunt::InTurn),
            Some("all") => Some(Hunt::All),
            Some(other) => {
                self.fail(&at("hunt"), format!("{other:?} is neither \"in_turn\" nor \"all\""));
                None
            }
        };
        let rules = trigger.as_ref().and_then(|t| t.facet::<std::sync::Arc<dyn Operators>>()).cloned();
        let operators = rules
            .and_then(|r| self.operators(&at, r.as_ref(), rc.operator, rc.operators, hunt.unwrap_or(Hunt::InTurn)));
        Some(CallbackConfig {
            region: region?,
            texts: texts?,
            hours: hours?,
            blocklist: blocklist?,
            countries,
            min_time_on_site,
            limits,
            operators: operators?,
            hunt: hunt?,
            ring_for,
            pbx: rc.pbx.unwrap_or_default(),
            trigger: trigger?,
            attempts,
            retry_base,
            sections,
        })
    }
}
