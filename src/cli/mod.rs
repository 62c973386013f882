//! The `callpool` command's subcommands, one file each; `main.rs` parses the command line and
//! dispatches here. Only this layer uses `anyhow` and prints to stdout.

pub mod analytics;
pub mod check_config;
pub mod healthcheck;
pub mod pool;
pub mod serve;
pub mod simulate;

use std::path::Path;

use callpool::config::{Config, ProcessEnv};

/// The default config file name.
pub const DEFAULT_CONFIG: &str = "callpool.toml";
/// Exit code for a configuration or usage problem.
pub const EXIT_CONFIG: u8 = 2;

/// The named file; or ./callpool.toml; or (except for `check-config`) the built-in demo.
pub fn load_config(path: Option<&Path>, demo_allowed: bool) -> Result<Config, String> {
    let env = ProcessEnv;
    match path {
        Some(p) => Config::load(p, &env).map_err(|e| e.to_string()),
        None if Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(Path::new(DEFAULT_CONFIG), &env).map_err(|e| e.to_string())
        }
        None if demo_allowed => {
            tracing::info!(
                "No {DEFAULT_CONFIG} here and no --config: running the built-in demo configuration (see callpool.example.toml)."
            );
            Config::demo(&env).map_err(|e| e.to_string())
        }
        None => Err(format!("{DEFAULT_CONFIG}: not found; name a file with --config (see callpool.example.toml)")),
    }
}
