//! Every site on one page, for the operator or the agency that runs callpool for several
//! businesses: each site's calls and accuracy in a period, how hard its pool was pressed, when
//! its last call came, and its deliveries that were given up, with what needs attention.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::{summary, Period, PeriodError};
use crate::app::App;
use crate::store::StoreError;

/// Dead letters looked at per kind of delivery (to tell which site each belongs to).
const DEAD_PER_KIND: usize = 500;
/// A site with calls in the period but none for this long is flagged: its PBX may have stopped
/// reporting.
const SILENT_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One site's line.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SiteLine {
    pub site: String,
    pub calls: u64,
    /// Attributed to a visit (active, recent, repeat caller).
    pub tracked: u64,
    /// The accuracy figure, as in the summary: `null` without calls.
    pub share_tracked: Option<f64>,
    /// Calls to the default numbers (before and after).
    pub untracked: u64,
    pub max_numbers: u32,
    /// The most numbers leased at once in the period (sampled every 30 s); `null` without samples.
    pub peak_leased: Option<u32>,
    /// Lease requests that found the pool exhausted in the period.
    pub exhausted: u64,
    /// The site's latest call in the period (RFC 3339).
    pub last_call_at: Option<String>,
    /// Deliveries of the site's calls and callbacks given up (dead letters), by kind.
    pub dead_letters: BTreeMap<String, u64>,
    /// What needs attention: `deliveries_failing`, `pool_exhausted`, `silent` (calls in the
    /// period, none in the last 24 hours).
    pub attention: Vec<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Overview {
    pub from: String,
    pub to: String,
    pub sites: Vec<SiteLine>,
}

/// Every site's line for the days `from`..=`to` (each in its own time zone).
pub async fn overview(app: &App, from: Option<&str>, to: Option<&str>) -> Result<Overview, OverviewError> {
    let config = app.config();
    let now = app.clock.now();
    let dead = dead_by_site(app).await?;
    let mut sites = Vec::new();
    let (mut first, mut last) = (String::new(), String::new());
    for site in &config.sites {
        let p = Period::new(site.timezone, from, to, now)?;
        (first, last) = (p.first.to_string(), p.last.to_string());
        let s = summary(app, site, &p).await?;
        let calls = app.store.calls(Some(&site.id), p.from, p.to, super::MAX_ROWS).await?;
        let latest = calls.iter().map(|c| c.started_at).max();
        let peak_leased = s.days.iter().filter_map(|d| d.peak_leased).max();
        let exhausted: u64 = s.days.iter().filter_map(|d| d.exhausted).sum();
        let dead_letters = dead.get(site.id.as_str()).cloned().unwrap_or_default();
        let mut attention = Vec::new();
        if !dead_letters.is_empty() {
            attention.push("deliveries_failing".to_owned());
        }
        if exhausted > 0 {
            attention.push("pool_exhausted".to_owned());
        }
        if latest.is_some_and(|t| t.plus(SILENT_AFTER) < now) {
            attention.push("silent".to_owned());
        }
        sites.push(SiteLine {
            site: site.id.to_string(),
            calls: s.total.total,
            tracked: s.total.tracked,
            share_tracked: s.total.share_tracked,
            untracked: s.total.default_before + s.total.default_after,
            max_numbers: site.rules.max_numbers,
            peak_leased,
            exhausted,
            last_call_at: latest.and_then(|t| t.to_chrono()).map(|t| t.to_rfc3339()),
            dead_letters,
            attention,
        });
    }
    Ok(Overview { from: first, to: last, sites })
}

/// The dead letters of every kind, counted per site and kind (the newest [`DEAD_PER_KIND`] of
/// each kind read).
async fn dead_by_site(app: &App) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (kind, records) in crate::jobs::registry::kinds() {
        for d in app.store.dead_jobs(kind, DEAD_PER_KIND).await? {
            let site = match records {
                crate::store::jobs::Records::Calls => {
                    let Some((pbx, id)) = d.id.split_once(':') else { continue };
                    let Ok(key) = crate::calls::CallKey::new(pbx, id) else { continue };
                    app.store.call(&key).await?.and_then(|c| c.matched.site).map(|s| s.to_string())
                }
                crate::store::jobs::Records::Callbacks => {
                    let Some(id) = crate::callback::CallbackId::parse(&d.id) else { continue };
                    app.store.callback(&id).await?.map(|c| c.site.to_string())
                }
            };
            if let Some(site) = site {
                *out.entry(site).or_default().entry(kind.to_owned()).or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// Why the overview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
