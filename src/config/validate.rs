//! What every section's validation shares: the list of problems (each naming the file's
//! section, the site and the field) and the readers of durations, numbers, rate windows and URLs.

use std::fmt;
use std::time::Duration;

use callpool_pool::PhoneNumber;

use super::env::Env;
use super::section::{http_url, Fields, Reader, Section, Slot};

/// No configured duration may exceed ten years (they are added to timestamps).
const LONGEST: Duration = Duration::from_secs(3650 * 86_400);

/// Collects every problem of a configuration; each section adds its own (see the `impl
/// Validator` blocks beside each section's schema).
pub(super) struct Validator {
    pub problems: Vec<String>,
    /// The readers of vendors' and destinations' own sections.
    pub readers: Vec<&'static dyn Reader>,
}

impl Validator {
    pub fn fail(&mut self, at: &str, msg: impl fmt::Display) {
        self.problems.push(format!("{at}: {msg}"));
    }

    pub fn duration(&mut self, at: &str, raw: Option<&str>, default: &str, allow_zero: bool) -> Duration {
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

    pub fn number(&mut self, at: &str, raw: &str) -> Option<PhoneNumber> {
        match PhoneNumber::parse(raw) {
            Ok(n) => Some(n),
            Err(e) => {
                self.fail(at, e);
                None
            }
        }
    }

    /// Addresses or networks (`10.0.0.0/8`, `203.0.113.7`, `2001:db8::/32`); each bad one is named.
    pub fn networks(&mut self, at: &str, list: &[String]) -> Vec<ipnet::IpNet> {
        list.iter()
            .enumerate()
            .filter_map(|(i, net)| {
                let parsed = net.parse::<ipnet::IpNet>().or_else(|_| net.parse::<std::net::IpAddr>().map(Into::into));
                if parsed.is_err() {
                    self.fail(
                        &format!("{at}[{i}]"),
                        format!("{net:?} is not an address or a network such as 10.0.0.0/8"),
                    );
                }
                parsed.ok()
            })
            .collect()
    }

    /// An http(s) URL that paths are appended to: without its trailing '/'.
    /// A reader's language, `"ru"` or `"en"` (`default` when not given, or not one of them).
    pub fn language(
        &mut self,
        at: &str,
        raw: Option<&str>,
        default: crate::callback::text::Lang,
    ) -> crate::callback::text::Lang {
        use crate::callback::text::Lang;
        match raw {
            None => default,
            Some("en") => Lang::En,
            Some("ru") => Lang::Ru,
            Some(other) => {
                self.fail(at, format!("{other:?} is neither \"ru\" nor \"en\""));
                default
            }
        }
    }

    pub fn base_url(&mut self, at: &str, u: String) -> String {
        let u = u.trim_end_matches('/').to_owned();
        if let Err(e) = http_url(&u) {
            self.fail(at, e);
        }
        u
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
pub(super) fn origin_ok(o: &str) -> Result<(), &'static str> {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or("must start with http:// or https:// and name a host")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err("must be scheme://host[:port] with no path, not even '/'");
    }
    rest.parse::<axum::http::uri::Authority>().map(|_| ()).map_err(|_| "does not name a valid host[:port]")
}

impl Validator {
    /// The section of the reader of `slot` named `name`, from `value` at `at`; a name no reader
    /// owns is a problem.
    pub(super) fn section(
        &mut self,
        slot: Slot,
        name: &str,
        at: String,
        owner: &str,
        value: toml::Value,
        env: &dyn Env,
    ) -> Option<Section> {
        self.guarded_section(slot, name, at, owner, value, env, false)
    }

    /// [`Validator::section`] for an owner that does (or does not) hold its requests to a token or
    /// an address allowlist of its own (a `[[pbx]]`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn guarded_section(
        &mut self,
        slot: Slot,
        name: &str,
        at: String,
        owner: &str,
        value: toml::Value,
        env: &dyn Env,
        guarded: bool,
    ) -> Option<Section> {
        let reader = self.readers.iter().copied().find(|r| r.place().split() == (slot, name));
        let Some(reader) = reader else {
            let known: Vec<&str> =
                self.readers.iter().map(|r| r.place().split()).filter(|(s, _)| *s == slot).map(|(_, n)| n).collect();
            match slot {
                Slot::Site | Slot::Callback => {
                    let table = at.strip_suffix(name).map_or(at.as_str(), |t| t.trim_end_matches(['.', ':', ' ']));
                    self.fail(table, format!("unknown field `{name}`"));
                }
                Slot::Pbx | Slot::Trigger => {
                    let field = if slot == Slot::Pbx { format!("{at} kind") } else { format!("{at}.kind") };
                    self.fail(&field, format!("{name:?} is not one of {}", quoted(&known)));
                }
            }
            return None;
        };
        let mut f = Fields::new(&mut self.problems, env, at, owner, value).guarded(guarded);
        reader.read(&mut f)
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(origin_ok("https://example.com").is_ok());
        assert!(origin_ok("http://127.0.0.1:8080").is_ok());
        assert!(origin_ok("https://example.com/").is_err());
        assert!(origin_ok("example.com").is_err());
        assert!(origin_ok("ftp://example.com").is_err());
    }
}
