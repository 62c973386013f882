//! `callpool simulate`: runs the traffic simulator (docs/SIMULATION.md) from a model file, a
//! preset, a saved population, or a site's own recorded traffic, and prints to stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use callpool::app::open_stores;
use callpool::sim;
use clap::Subcommand;

use super::{load_config, EXIT_CONFIG};

#[derive(Subcommand)]
pub enum SimAction {
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
pub struct SimCommon {
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
pub struct SimGrid {
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
        let (_pool, store) = open_stores(&config).await.map_err(|e| format!("cannot open the store: {e}"))?;
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
pub fn run(action: SimAction, config_path: Option<&Path>) -> ExitCode {
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
                        println!("{}", sim::advice_text(now, p));
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
