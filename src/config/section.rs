//! Settings that a PBX vendor or a destination reads itself, so that adding one is one file:
//! the configuration finds the table, hands it to the [`Reader`] that owns its place, keeps
//! what the reader made as a [`Section`], and lists the reader's problems with everyone else's.
//! The configuration knows no reader by name: the service passes the list in (`plugins.rs`).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use callpool_pool::PhoneNumber;
use serde::de::DeserializeOwned;

use super::env::Env;

/// Where a reader's table is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `[site.<name>]` (a table, or an array of tables: the reader gets the value as written).
    Site(&'static str),
    /// `[site.callback.<name>]`.
    Callback(&'static str),
    /// A `[[pbx]]` with `kind = "<name>"` (the default kind is "callpool"): the PBX's webhook adapter.
    Pbx(&'static str),
    /// `[site.callback] trigger = { kind = "<name>", ... }`: how the PBX is asked for a callback.
    Trigger(&'static str),
}

impl Place {
    pub(super) fn split(self) -> (Slot, &'static str) {
        match self {
            Place::Site(n) => (Slot::Site, n),
            Place::Callback(n) => (Slot::Callback, n),
            Place::Pbx(n) => (Slot::Pbx, n),
            Place::Trigger(n) => (Slot::Trigger, n),
        }
    }
}

/// A kind of place, without its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Site,
    Callback,
    Pbx,
    Trigger,
}

/// Reads the settings at one place.
pub trait Reader: Sync {
    fn place(&self) -> Place;
    /// Reads `f`'s table; problems go to `f`. `None` when the settings are too broken to use.
    fn read(&self, f: &mut Fields<'_>) -> Option<Section>;
}

/// What a reader made of its table, kept in the configuration for its owner (which alone knows
/// its type).
#[derive(Clone)]
pub struct Section {
    name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
    facet: Option<Arc<dyn Any + Send + Sync>>,
}

impl Section {
    pub fn new<T: Any + Send + Sync>(name: &'static str, value: T) -> Section {
        Section { name, value: Arc::new(value), facet: None }
    }

    /// The same settings as a type the configuration knows (a trigger's [`super::Operators`]),
    /// for the configuration's own checks.
    pub fn with_facet<F: Any + Send + Sync>(mut self, facet: F) -> Section {
        self.facet = Some(Arc::new(facet));
        self
    }

    /// The settings, if they are a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref()
    }

    /// The facet, if it is an `F`.
    pub fn facet<F: Any>(&self) -> Option<&F> {
        self.facet.as_ref()?.downcast_ref()
    }

    /// The reader's name for them (its place's name).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Debug for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Section({})", self.name)
    }
}

/// The sections of one owner (a site, a callback form), by place name.
#[derive(Clone, Debug, Default)]
pub struct Sections(Vec<Section>);

impl Sections {
    pub fn get<T: Any>(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|s| s.name == name).and_then(Section::get)
    }

    pub fn push(&mut self, s: Section) {
        self.0.push(s);
    }

    /// The names of the sections, in the order read.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(Section::name)
    }
}

/// A reader's view of its table: typed reads whose problems name the file's place and field.
pub struct Fields<'a> {
    problems: &'a mut Vec<String>,
    env: &'a dyn Env,
    /// Where the table is, e.g. `site "shop": ga4` or `[[pbx]] #1 ("office")`.
    at: String,
    /// The owner's id where it matters (a PBX's id names its environment overrides).
    owner: String,
    value: toml::Value,
    /// Whether the owner holds its requests to a token or an address allowlist of its own.
    guarded: bool,
}

impl<'a> Fields<'a> {
    pub(super) fn new(
        problems: &'a mut Vec<String>,
        env: &'a dyn Env,
        at: String,
        owner: &str,
        value: toml::Value,
    ) -> Self {
        Fields { problems, env, at, owner: owner.to_owned(), value, guarded: false }
    }

    /// The same, for an owner that does (or does not) hold its requests to a token or an
    /// address allowlist of its own.
    pub(super) fn guarded(mut self, guarded: bool) -> Self {
        self.guarded = guarded;
        self
    }

    /// Whether the `[[pbx]]` also sets `token` or `allow_from`: a vendor that signs nothing
    /// requires one of them ([`Fields::require_guard`]).
    pub fn is_guarded(&self) -> bool {
        self.guarded
    }

    /// For a vendor that signs nothing: a problem unless the PBX sets `token` or `allow_from`.
    pub fn require_guard(&mut self, vendor: &str) {
        if !self.guarded {
            self.fail(
                "token",
                format!("{vendor} signs nothing: set token (sent as ?token= in the URL) or allow_from (its addresses), or both"),
            );
        }
    }

    /// The whole value as the reader's own (serde) type; a mismatch is a problem.
    pub fn parse<T: DeserializeOwned>(&mut self) -> Option<T> {
        match self.value.clone().try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push(format!("{}: {}", self.at, e.to_string().trim_end()));
                None
            }
        }
    }

    /// A problem with `field` (empty: with the whole table).
    pub fn fail(&mut self, field: &str, msg: impl fmt::Display) {
        let at = self.at_field(field);
        self.problems.push(format!("{at}: {msg}"));
    }

    fn at_field(&self, field: &str) -> String {
        if field.is_empty() {
            self.at.clone()
        } else if self.at.starts_with('[') {
            format!("{} {field}", self.at)
        } else {
            format!("{}.{field}", self.at)
        }
    }

    /// `value`, which `field` must have.
    pub fn required(&mut self, field: &str, value: Option<String>, why: &str) -> Option<String> {
        let v = value.filter(|s| !s.is_empty());
        if v.is_none() {
            self.fail(field, format!("required{why}"));
        }
        v
    }

    /// An http(s) URL, exactly as written (a webhook's, a URL another party signs).
    pub fn url(&mut self, field: &str, value: String) -> String {
        if let Err(e) = http_url(&value) {
            self.fail(field, e);
        }
        value
    }

    /// An http(s) URL that paths are appended to: without its trailing '/'.
    pub fn base_url(&mut self, field: &str, value: String) -> String {
        self.url(field, value.trim_end_matches('/').to_owned())
    }

    /// A secret of at least 16 characters.
    pub fn secret(&mut self, field: &str, value: String) -> String {
        if value.len() < 16 {
            self.fail(field, "must be at least 16 characters");
        }
        value
    }

    /// An E.164 number.
    pub fn number(&mut self, field: &str, raw: &str) -> Option<PhoneNumber> {
        PhoneNumber::parse(raw).map_err(|e| self.fail(field, e)).ok()
    }

    /// The environment, for overrides of secrets.
    pub fn env(&self) -> &dyn Env {
        self.env
    }

    /// A secret's override from the environment: the variable `<prefix><OWNER>` (the owner's id in
    /// upper case, '-' as '_', e.g. `CALLPOOL_PBX_SECRET_OFFICE`) and its value, trimmed, if set.
    pub fn owner_var(&self, prefix: &str) -> (String, Option<String>) {
        let name = format!("{prefix}{}", self.owner.to_ascii_uppercase().replace('-', "_"));
        let value = self.env.var(&name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        (name, value)
    }

    /// The owner's id (a PBX's id).
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// An http(s) URL with a host and no spaces, or the problem.
pub(super) fn http_url(u: &str) -> Result<(), String> {
    let ok = (u.starts_with("https://") || u.starts_with("http://")) && u.len() > 8 && !u.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(format!("{u:?} is not an http(s) URL"))
    }
}
