//! The `callpool` command: parses the command line and wires the service together.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use callpool::app::{open_store, App};
use callpool::clock::{Clock, SystemClock};
use callpool::config::{Config, ProcessEnv};
use callpool_pool::SiteId;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// The default config file name.
const DEFAULT_CONFIG: &str = "callpool.toml";
/// Exit code for a configuration or usage problem.
const EXIT_CONFIG: u8 = 2;

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
    /// Look at the number pool.
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
}

#[derive(Subcommand)]
enum PoolCommand {
    /// Numbers per site: working set, leased, free, cooling down, and exhausted requests.
    Status {
        /// Only this site.
        site: Option<String>,
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
    let demo_allowed = !matches!(cli.command, Some(Command::CheckConfig));
    let config = match load_config(cli.config.as_deref(), demo_allowed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::CheckConfig => {
                print_summary(&config);
                Ok(ExitCode::SUCCESS)
            }
            Command::Pool { command: PoolCommand::Status { site } } => pool_status(&config, site.as_deref()).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callpool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The named file; or ./callpool.toml; or (except for `check-config`) the built-in demo.
fn load_config(path: Option<&Path>, demo_allowed: bool) -> Result<Config, String> {
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

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // Register the signal handlers first: a SIGTERM that arrives while the node starts must stop
    // it cleanly, not kill it with the default action.
    let signals = Signals::register().context("cannot install the signal handlers")?;
    let listen = config.server.listen;
    let source = config.source.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = Arc::new(App::start(config, clock).await.context("cannot open the pool store")?);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        config = %source,
        store = app.pool.kind(),
        sites = app.config.sites.len(),
        "callpool is serving."
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("Shutting down: no new connections, finishing the ones in flight.");
        stop.cancel();
    });
    callpool::run(listener, app, shutdown).await.context("the server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM and SIGINT (Ctrl-C), registered up front.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_summary(config: &Config) {
    println!("{}: OK", config.source);
    println!("  listen {}, store {:?}", config.server.listen, config.store);
    println!(
        "  shared inventory: {} numbers; history kept {}",
        config.pool.numbers.len(),
        humantime::format_duration(config.pool.history)
    );
    for s in &config.sites {
        println!(
            "  site {}: {} dedicated, max {}, delay {}, idle {}, hold {}, cooldown {}, {}",
            s.id,
            s.numbers.len(),
            s.rules.max_numbers,
            humantime::format_duration(s.delay_to_show),
            humantime::format_duration(s.rules.reclaim_after_idle),
            humantime::format_duration(s.rules.max_hold),
            humantime::format_duration(s.rules.cooldown),
            s.timezone
        );
    }
    if config.server.admin_token.is_none() {
        println!("  note: no admin token; the admin API refuses every request (set CALLPOOL_ADMIN_TOKEN)");
    }
}

async fn pool_status(config: &Config, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let sites: Vec<SiteId> = match only {
        Some(s) => match SiteId::new(s).ok().filter(|id| config.site(id).is_some()) {
            Some(id) => vec![id],
            None => {
                eprintln!("{}: no site {s:?} in the configuration", config.source);
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => config.sites.iter().map(|s| s.id.clone()).collect(),
    };
    let pool = open_store(config).await.with_context(|| {
        format!(
            "cannot open the pool store; if a callpool server is running on this data dir, ask it instead: \
             curl -H 'Authorization: Bearer $CALLPOOL_ADMIN_TOKEN' http://{}/v1/admin/pool",
            config.server.listen
        )
    })?;
    let now = SystemClock.now();
    println!(
        "{:<24} {:>5} {:>7} {:>9} {:>6} {:>4} {:>7} {:>9}",
        "site", "max", "working", "dedicated", "leased", "free", "cooling", "exhausted"
    );
    for id in sites {
        let Some(st) = pool.status(&id, now).await? else {
            println!("{:<24} not in the store yet (a server configures it when it starts)", id.as_str());
            continue;
        };
        println!(
            "{:<24} {:>5} {:>7} {:>9} {:>6} {:>4} {:>7} {:>9}",
            id.as_str(),
            st.max_numbers,
            st.working,
            st.dedicated,
            st.leased,
            st.free,
            st.cooling,
            st.exhausted_total
        );
    }
    Ok(ExitCode::SUCCESS)
}
