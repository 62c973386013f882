//! The `callpool` command: parses the command line, sets up logging and dispatches to the
//! subcommand's file in `cli/`.
#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "callpool",
    version,
    about = "Dynamic call tracking: tracking-number pool, live number swap, call matching"
)]
struct Cli {
    /// The configuration file. Without this flag and without ./callpool.toml, `serve` runs the
    /// built-in demo configuration.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr: `text` (default) or `json` (one JSON object per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Validate the configuration and print a summary; exit code 2 if it has problems.
    CheckConfig,
    /// Make a site's calls goals in GA4 (key events, custom dimensions), or check its GA4 settings.
    Analytics {
        #[command(subcommand)]
        command: cli::analytics::AnalyticsCommand,
    },
    /// Look at the number pool.
    Pool {
        #[command(subcommand)]
        command: cli::pool::PoolCommand,
    },
    /// Ask a node's readiness once (a container's health check): exit 0 on a 2xx answer, 1 otherwise.
    Healthcheck {
        /// The URL to GET.
        #[arg(long, default_value = cli::healthcheck::DEFAULT_URL)]
        url: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Simulate a site's traffic through the real pool rules and call matcher: the share of calls
    /// attributed correctly for a pool size and settings, before buying numbers (docs/SIMULATION.md).
    Simulate {
        #[command(subcommand)]
        action: Box<cli::simulate::SimAction>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,callpool=info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    let config_path = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Serve) {
        // The simulator reads a configuration only for --site, and runs without the async runtime.
        Command::Simulate { action } => cli::simulate::run(*action, config_path),
        Command::Healthcheck { url, timeout } => cli::healthcheck::run(&url, timeout),
        Command::CheckConfig => match cli::load_config(config_path, false) {
            Ok(config) => {
                cli::check_config::print_summary(&config);
                ExitCode::SUCCESS
            }
            Err(e) => config_refused(&e),
        },
        Command::Serve => with_config(config_path, |config| async move { cli::serve::run(config).await }),
        Command::Analytics { command } => {
            with_config(config_path, |config| async move { cli::analytics::run(&config, command).await })
        }
        Command::Pool { command: cli::pool::PoolCommand::Status { site } } => {
            with_config(config_path, |config| async move { cli::pool::status(&config, site.as_deref()).await })
        }
    }
}

fn config_refused(e: &str) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(cli::EXIT_CONFIG)
}

/// Loads the configuration (the demo's if there is none) and runs `command` on the async runtime.
fn with_config<F, Fut>(path: Option<&std::path::Path>, command: F) -> ExitCode
where
    F: FnOnce(callpool::config::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let config = match cli::load_config(path, true) {
        Ok(c) => c,
        Err(e) => return config_refused(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command(config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callpool: {e:#}");
            ExitCode::FAILURE
        }
    }
}
