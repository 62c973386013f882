//! `callpool pool status`: the numbers per site, read from the store (with no server holding it).

use std::process::ExitCode;

use anyhow::Context;
use callpool::app::open_pool;
use callpool::clock::{Clock, SystemClock};
use callpool::config::Config;
use callpool_pool::SiteId;
use clap::Subcommand;

use super::EXIT_CONFIG;

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Numbers per site: working set, leased, free, cooling down, and exhausted requests.
    Status {
        /// Only this site.
        site: Option<String>,
    },
}

/// Prints the pool of every site (or of `only`).
pub async fn status(config: &Config, only: Option<&str>) -> anyhow::Result<ExitCode> {
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
    let pool = open_pool(config).await.with_context(|| {
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
