//! `[pool]`: the shared inventory, how long lease history is kept, how often the reaper runs;
//! and the one rule every number of the file obeys: it belongs to one place.

use std::collections::BTreeMap;
use std::time::Duration;

use callpool_pool::PhoneNumber;
use serde::Deserialize;

use super::validate::Validator;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The shared inventory any site may draw from.
    pub numbers: Vec<PhoneNumber>,
    /// How long ended leases are kept for call matching.
    pub history: Duration,
    /// How often the reaper ends expired leases and shrinks working sets.
    pub reaper_interval: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    #[serde(default)]
    numbers: Vec<String>,
    history: Option<String>,
    reaper_interval: Option<String>,
}

/// Where each pool number of the file is used (shared or dedicated), to catch a number used
/// twice, and the sites' default numbers, which must be no pool number and no other site's.
#[derive(Default)]
pub(super) struct Placements {
    pool: BTreeMap<PhoneNumber, String>,
    defaults: Vec<(PhoneNumber, String)>,
}

impl Placements {
    /// A pool number at `at`; a second place for it is a problem.
    pub fn claim(&mut self, v: &mut Validator, n: &PhoneNumber, at: String) {
        match self.pool.get(n) {
            Some(first) => v.fail(&at, format!("{n} is already used at {first}; a number belongs to one place")),
            None => {
                self.pool.insert(n.clone(), at);
            }
        }
    }

    /// A site's default number (`default_before`, `default_after`, `static_number`) at `at`.
    pub fn add_default(&mut self, n: &PhoneNumber, at: String) {
        self.defaults.push((n.clone(), at));
    }

    /// Once every site is read: a default number of two sites could not tell their calls apart,
    /// and a default number in the pool would be handed out.
    pub fn check_defaults(self, v: &mut Validator) {
        let mut default_owner: BTreeMap<&PhoneNumber, &str> = BTreeMap::new();
        let site_of = |place: &str| place.split(':').next().unwrap_or_default().to_owned();
        for (n, at) in &self.defaults {
            match default_owner.get(n) {
                Some(first) if site_of(first) != site_of(at) => v.fail(
                    at,
                    format!("{n} is also a default number at {first}; calls to it could not be told apart by site"),
                ),
                Some(_) => {}
                None => {
                    default_owner.insert(n, at);
                }
            }
        }
        for (n, at) in &self.defaults {
            if let Some(pool_at) = self.pool.get(n) {
                v.fail(
                    at,
                    format!("{n} is also a pool number (at {pool_at}); a default number must not be handed out"),
                );
            }
        }
    }
}

impl Validator {
    pub(super) fn pool(&mut self, raw: RawPool, placements: &mut Placements) -> PoolConfig {
        let mut numbers = Vec::new();
        for (i, raw_n) in raw.numbers.iter().enumerate() {
            let at = format!("[pool] numbers[{i}]");
            if let Some(n) = self.number(&at, raw_n) {
                placements.claim(self, &n, at);
                numbers.push(n);
            }
        }
        PoolConfig {
            history: self.duration("[pool] history", raw.history.as_deref(), "35d", false),
            reaper_interval: self.duration("[pool] reaper_interval", raw.reaper_interval.as_deref(), "1s", false),
            numbers,
        }
    }
}
