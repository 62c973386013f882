//! The `callpool` command: parses the command line and wires the service together.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use callpool::app::{open_store, App};
use callpool::clock::{Clock, SystemClock};
use callpool::config::StoreConfig;
use callpool::config::{Config, ProcessEnv};
use callpool::sim;
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
    /// Simulate a site's traffic through the real pool rules and call matcher: the share of calls
    /// attributed correctly for a pool size and settings, before buying numbers (docs/SIMULATION.md).
    Simulate {
        #[command(subcommand)]
        action: Box<SimAction>,
    },
}

#[derive(Subcommand)]
enum SimAction {
    /// One run: every count, for one set of settings and one seed.
    Run {
        #[command(flatten)]
        common: SimCommon,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Write the population (visitors and calls with their truth) to this file (JSON lines).
        #[arg(long)]
        write_population: Option<PathBuf>,
    },
    /// A grid of pool size × delay × hold over several seeds: a table, and optionally CSV and an SVG chart.
    Sweep {
        #[command(flatten)]
        common: SimCommon,
        #[command(flatten)]
        grid: SimGrid,
        /// Write every point and seed as CSV.
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Draw accuracy and misattribution against pool size as SVG.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// The smallest pool (with its delay and hold) that reaches the target, with the spread over seeds.
    Advise {
        #[command(flatten)]
        common: SimCommon,
        #[command(flatten)]
        grid: SimGrid,
        /// Share of calls to attribute correctly.
        #[arg(long, default_value_t = 0.95)]
        target: f64,
        /// Largest share of calls attributed to the wrong visitor.
        #[arg(long, default_value_t = 0.01)]
        max_wrong: f64,
    },
}

#[derive(clap::Args)]
struct SimCommon {
    /// A simulation file (TOML): `preset`, `[traffic]`, `[settings]` (docs/SIMULATION.md).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A named traffic model: small-shop (default), lead-gen, media.
    #[arg(long)]
    preset: Option<String>,
    /// Replay this population file (written by `simulate run --write-population`) instead of drawing one.
    #[arg(long)]
    population: Option<PathBuf>,
    /// Fit the traffic model to what callpool recorded for this site (visits and calls in the store
    /// the configuration names), and start from the site's own settings.
    #[arg(long)]
    site: Option<String>,
    /// With --site: the first and last day recorded traffic is read from (YYYY-MM-DD, UTC; default
    /// the last 28 days).
    #[arg(long)]
    from: Option<String>,
    #[arg(long)]
    to: Option<String>,
    /// Days of traffic, the first `warmup` of them not scored.
    #[arg(long, default_value_t = 8)]
    days: u32,
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// The first seed (sweeps and advice use `seeds` seeds from here).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Override the pool size.
    #[arg(long)]
    pool: Option<u32>,
    /// Override delay_to_show, e.g. 50s.
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<std::time::Duration>,
    /// Override reclaim_after_idle (the hold), e.g. 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    hold: Option<std::time::Duration>,
}

#[derive(clap::Args)]
struct SimGrid {
    /// Pool sizes, e.g. 4,6,8,10 (default for advice: 1 to 60).
    #[arg(long, value_delimiter = ',')]
    pools: Vec<u32>,
    /// Delays, e.g. 20s,50s (default: the settings' delay).
    #[arg(long, value_delimiter = ',', value_parser = humantime::parse_duration)]
    delays: Vec<std::time::Duration>,
    /// Holds (reclaim_after_idle), e.g. 15m,30m (default: the settings' hold).
    #[arg(long, value_delimiter = ',', value_parser = humantime::parse_duration)]
    holds: Vec<std::time::Duration>,
    /// Seeds per point.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
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
    if let Some(Command::Simulate { action }) = cli.command {
        return simulate(*action, cli.config.as_deref());
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
            Command::Simulate { .. } => unreachable!("simulate is handled before the configuration is read"),
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

/// A site's traffic model fitted to its recorded visits and calls, and the site's settings now.
fn recorded_inputs(
    config_path: Option<&Path>,
    site: &str,
    c: &SimCommon,
) -> Result<(sim::model::TrafficModel, sim::model::Settings), String> {
    let config = load_config(config_path, true)?;
    let id = callpool_pool::SiteId::new(site).map_err(|e| format!("--site: {e}"))?;
    let site = config.site(&id).ok_or_else(|| format!("--site: {site:?} is not in {}", config.source))?.clone();
    let day = |v: &Option<String>, what: &str| -> Result<Option<chrono::NaiveDate>, String> {
        v.as_deref()
            .map(|s| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("--{what}: {s:?} is not a date"))
            })
            .transpose()
    };
    let today = chrono::Utc::now().date_naive();
    let last = day(&c.to, "to")?.unwrap_or(today);
    let first = day(&c.from, "from")?.unwrap_or(last - chrono::Days::new(27));
    if first > last {
        return Err("--from is after --to".into());
    }
    let midnight = |d: chrono::NaiveDate| {
        callpool_pool::Ts::from_millis(d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis())
    };
    let (from, to) = (midnight(first), midnight(last + chrono::Days::new(1)));
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let (fit, visits) = runtime.block_on(async {
        let pool = open_store(&config).await.map_err(|e| format!("cannot open the store: {e}"))?;
        let data_dir = match &config.store {
            StoreConfig::Embedded { data_dir } => Some(data_dir.clone()),
            StoreConfig::Redis { .. } => None,
        };
        let store = callpool::calls::store::open(&pool, data_dir.as_deref()).map_err(|e| e.to_string())?;
        sim::fit::recorded(&store, &site, from, to).await
    })?;
    println!(
        "Fitted to site {} from {first} to {last}: {} visits ({:.0} a day, {:.0}% bounced, {:.0}% tracked), {} calls; sources: {}",
        site.id,
        fit.visits,
        fit.model.visitors_per_day,
        fit.model.early_leave_share * 100.0,
        fit.tracked_share * 100.0,
        fit.calls,
        sim::fit::sources(&visits).iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
    );
    let settings = sim::fit::site_settings(&site, &fit);
    Ok((fit.model, settings))
}

/// The traffic model and settings of a simulation command, with the command line's overrides.
fn sim_inputs(
    c: &SimCommon,
    config_path: Option<&Path>,
) -> Result<(sim::model::TrafficModel, sim::model::Settings), String> {
    let (mut model, mut settings) = match (&c.site, &c.model, &c.preset) {
        (Some(site), _, _) => recorded_inputs(config_path, site, c)?,
        (None, model, preset) => sim_file_inputs(model.as_deref(), preset.as_deref())?,
    };
    if let (None, Some(_), Some(name)) = (&c.site, &c.model, &c.preset) {
        model = sim::model::TrafficModel::preset(name).ok_or_else(|| format!("--preset {name:?} is unknown"))?;
    }
    settings.pool_size = c.pool.unwrap_or(settings.pool_size);
    settings.delay_to_show = c.delay.unwrap_or(settings.delay_to_show);
    settings.reclaim_after_idle = c.hold.unwrap_or(settings.reclaim_after_idle);
    let problems = sim::model::check(&model, &settings);
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    if c.warmup >= c.days {
        return Err(format!("--warmup {} leaves nothing of --days {} to score", c.warmup, c.days));
    }
    Ok((model, settings))
}

/// A model file, a preset, or the default preset.
fn sim_file_inputs(
    model: Option<&Path>,
    preset: Option<&str>,
) -> Result<(sim::model::TrafficModel, sim::model::Settings), String> {
    let (model, settings) = match (model, preset) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            sim::model::parse(&text).map_err(|p| format!("{}:\n  - {}", path.display(), p.join("\n  - ")))?
        }
        (None, Some(name)) => (
            sim::model::TrafficModel::preset(name)
                .ok_or_else(|| format!("--preset {name:?} is not one of {}", sim::model::PRESETS.join(", ")))?,
            sim::model::Settings::default(),
        ),
        (None, None) => (sim::model::TrafficModel::small_shop(), sim::model::Settings::default()),
    };
    Ok((model, settings))
}

fn read_population(path: &Path) -> Result<sim::population::Population, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    sim::population::Population::read(std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// `callpool simulate ...`: prints to stdout; exit code 2 for bad input.
fn simulate(action: SimAction, config_path: Option<&Path>) -> ExitCode {
    let outcome: Result<(), String> = match action {
        SimAction::Run { common, json, write_population } => (|| {
            let (model, settings) = sim_inputs(&common, config_path)?;
            let pop = match &common.population {
                Some(p) => read_population(p)?,
                None => sim::population::Population::generate(&model, common.days, common.seed),
            };
            if let Some(path) = write_population {
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
                );
                pop.write(&mut out).and_then(|()| std::io::Write::flush(&mut out)).map_err(|e| e.to_string())?;
            }
            let o = sim::engine::run(&pop, &settings, common.warmup);
            if json {
                println!("{}", serde_json::to_string_pretty(&o).map_err(|e| e.to_string())?);
            } else {
                println!(
                    "pool {}, delay {}, hold {}, {} days ({} warm-up), seed {}",
                    settings.pool_size,
                    humantime::format_duration(settings.delay_to_show),
                    humantime::format_duration(settings.reclaim_after_idle),
                    pop.days,
                    common.warmup,
                    common.seed
                );
                print!("{}", sim::describe(&o));
            }
            Ok(())
        })(),
        SimAction::Sweep { common, grid, csv, svg } => (|| {
            let (model, settings) = sim_inputs(&common, config_path)?;
            let (grid, seeds) = sim_grid(&grid, &settings, &[settings.pool_size], &common);
            let points = sim::sweep(&model, &settings, &grid, common.days, common.warmup, &seeds);
            print!("{}", sim::table(&points));
            if let Some(path) = csv {
                std::fs::write(&path, sim::csv(&points, &seeds)).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if let Some(path) = svg {
                let title = format!("{} visitors/day, {} seeds", model.visitors_per_day, seeds.len());
                std::fs::write(&path, sim::svg(&points, &title)).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Ok(())
        })(),
        SimAction::Advise { common, grid, target, max_wrong } => (|| {
            let (model, settings) = sim_inputs(&common, config_path)?;
            let all: Vec<u32> = (1..=60).collect();
            let (grid, seeds) = sim_grid(&grid, &settings, &all, &common);
            let points = sim::sweep(&model, &settings, &grid, common.days, common.warmup, &seeds);
            let now = (common.site.is_some()).then(|| {
                let g = sim::Grid {
                    pools: vec![settings.pool_size],
                    delays: vec![settings.delay_to_show],
                    holds: vec![settings.reclaim_after_idle],
                };
                sim::sweep(&model, &settings, &g, common.days, common.warmup, &seeds).remove(0)
            });
            if let Some(now) = &now {
                println!(
                    "Now: {}: {:.1}% attributed correctly, {:.2}% to the wrong visitor.",
                    now.settings.label(),
                    now.accuracy() * 100.0,
                    now.wrong() * 100.0
                );
            }
            match sim::advise(&points, target, max_wrong) {
                Some(p) => {
                    if let Some(now) = &now {
                        println!(
                            "With {} numbers instead of {} you would attribute {:.0}% instead of {:.0}%.",
                            p.settings.pool_size,
                            now.settings.pool_size,
                            p.accuracy() * 100.0,
                            now.accuracy() * 100.0
                        );
                    }
                    let ((alo, ahi), (wlo, whi)) = (p.accuracy_range(), p.wrong_range());
                    println!(
                        "{}: {:.1}% attributed correctly ({:.1}–{:.1}% over {} seeds), {:.2}% to the wrong visitor ({:.2}–{:.2}%)",
                        p.settings.label(),
                        p.accuracy() * 100.0,
                        alo * 100.0,
                        ahi * 100.0,
                        seeds.len(),
                        p.wrong() * 100.0,
                        wlo * 100.0,
                        whi * 100.0,
                    );
                }
                None => {
                    let best = points.iter().max_by(|a, b| a.accuracy().total_cmp(&b.accuracy()));
                    println!(
                        "No setting tried reaches {:.1}% correct with at most {:.2}% wrong; the best: {}",
                        target * 100.0,
                        max_wrong * 100.0,
                        best.map_or("none".into(), |p| format!(
                            "{}: {:.1}% correct, {:.2}% wrong",
                            p.settings.label(),
                            p.accuracy() * 100.0,
                            p.wrong() * 100.0
                        ))
                    );
                }
            }
            Ok(())
        })(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callpool simulate: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// The grid of a sweep (defaults from the settings) and its seeds.
fn sim_grid(
    g: &SimGrid,
    settings: &sim::model::Settings,
    default_pools: &[u32],
    common: &SimCommon,
) -> (sim::Grid, Vec<u64>) {
    let or = |v: &Vec<std::time::Duration>, d| if v.is_empty() { vec![d] } else { v.clone() };
    let grid = sim::Grid {
        pools: if g.pools.is_empty() { default_pools.to_vec() } else { g.pools.clone() },
        delays: or(&g.delays, settings.delay_to_show),
        holds: or(&g.holds, settings.reclaim_after_idle),
    };
    (grid, (common.seed..common.seed + g.seeds.max(1)).collect())
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
        if let Some(cb) = &s.callback {
            let now = callpool_pool::Ts::now();
            let hours = if cb.hours.is_open(now) {
                "open now".to_owned()
            } else {
                match cb.hours.next_open(now).and_then(callpool_pool::Ts::to_chrono) {
                    Some(t) => {
                        format!("closed now, opens {}", t.with_timezone(&s.timezone).format("%Y-%m-%d %H:%M %Z"))
                    }
                    None => "never open (no hours on any day)".to_owned(),
                }
            };
            let windows = |w: &[callpool::callback::limits::Window]| {
                w.iter()
                    .map(|w| format!("{}/{}", w.count, humantime::format_duration(w.period)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "    callback: {} trigger, outcomes from pbx {}, operator {}, {hours}; per number {}, per site {}",
                cb.trigger.kind(),
                cb.pbx,
                cb.operator,
                windows(&cb.limits.per_number),
                windows(&cb.limits.per_site),
            );
        }
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
