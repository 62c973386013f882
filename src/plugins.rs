//! Every reader of a vendor's or a destination's own settings (the PBX vendors of `pbx/`, the
//! destinations of `jobs/`), and the configuration read with all of them: the configuration
//! itself knows none of them by name.

use std::path::Path;

use crate::config::{Config, ConfigError, Env, Reader, DEMO_CONFIG};

/// The readers.
pub fn readers() -> Vec<&'static dyn Reader> {
    let mut all: Vec<&'static dyn Reader> = crate::pbx::VENDORS.to_vec();
    all.extend(crate::jobs::registry::HANDLERS.iter().filter_map(|h| h.reader()));
    all
}

impl Config {
    /// Reads and validates `path`, then applies the environment overrides.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        Config::load_with(path, env, &readers())
    }

    /// Parses and validates TOML text; `source` names it in errors.
    pub fn parse(text: &str, source: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        Config::parse_with(text, source, env, &readers())
    }

    /// The built-in demo configuration, with the environment overrides.
    pub fn demo(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::parse(DEMO_CONFIG, "built-in demo configuration", env)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_place_has_one_reader() {
        let mut places: Vec<_> = super::readers().iter().map(|r| format!("{:?}", r.place())).collect();
        let n = places.len();
        places.sort();
        places.dedup();
        assert_eq!(places.len(), n, "two readers of one place: {places:?}");
    }
}
