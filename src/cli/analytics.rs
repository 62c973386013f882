//! `callpool analytics setup|check --site ID`: makes the site's calls goals in its GA4 property
//! (key events, custom dimensions and metrics; `--dry-run` only says what it would make), or
//! sends a sample event to GA4's validation server with the site's settings.

use std::process::ExitCode;

use callpool::config::Config;
use callpool::jobs::ga4_setup::{self, Outcome};
use callpool_pool::Ts;

#[derive(clap::Subcommand)]
pub enum AnalyticsCommand {
    /// Create the site's key events and register every parameter callpool sends in its GA4
    /// property ([site.ga4] property_id and service_account_key_file); what exists is left alone.
    Setup {
        #[arg(long)]
        site: String,
        /// Only say what would be created.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send a sample call event with the site's measurement id and API secret to GA4's
    /// validation server and print what it says (nothing is recorded).
    Check {
        #[arg(long)]
        site: String,
    },
}

/// Exit 0 when everything is in place (or valid), 1 when something failed, 2 for a site that
/// is not configured for it.
pub async fn run(config: &Config, command: AnalyticsCommand) -> anyhow::Result<ExitCode> {
    let now = Ts::now();
    let not_ready = |e: ga4_setup::NotReady| {
        eprintln!("{e}");
        Ok(ExitCode::from(super::EXIT_CONFIG))
    };
    match command {
        AnalyticsCommand::Setup { site, dry_run } => {
            let report = match ga4_setup::setup_site(config, &site, dry_run, now).await {
                Ok(r) => r,
                Err(e) => return not_ready(e),
            };
            let property = report.property.as_deref().map(|p| format!("GA4 property {p} of ")).unwrap_or_default();
            println!("{property}site {}{}:", report.site, if dry_run { " (dry run)" } else { "" });
            for item in &report.items {
                let outcome = match item.outcome {
                    Outcome::Created => "created",
                    Outcome::Exists => "already there",
                    Outcome::WouldCreate => "would be created",
                    Outcome::Pending => "not there yet",
                    Outcome::Failed => "FAILED",
                };
                let detail = item.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                println!("  {} {}: {outcome}{detail}", item.kind.replace('_', " "), item.name);
            }
            println!("{} created, {} already there, {} failed", report.created, report.existing, report.failed);
            Ok(if report.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        AnalyticsCommand::Check { site } => match ga4_setup::check_site(config, &site, now).await {
            Err(e) => not_ready(e),
            Ok(Err(why)) => {
                eprintln!("{why}");
                Ok(ExitCode::FAILURE)
            }
            Ok(Ok(report)) => {
                if report.valid {
                    println!("GA4 accepts the sample event of site {} ({}).", report.site, report.measurement_id);
                } else {
                    println!(
                        "GA4 found problems with the sample event of site {} ({}):",
                        report.site, report.measurement_id
                    );
                    for m in &report.messages {
                        println!("  {} {}: {}", m.code, m.field_path, m.description);
                    }
                }
                Ok(if report.valid { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        },
    }
}
