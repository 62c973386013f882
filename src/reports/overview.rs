//! Every site on one page, for the operator or the agency that runs callpool for several
//! businesses: each site's calls and accuracy in a period, how hard its pool was pressed, when
//! its last call came, and its deliveries that were given up, with what needs attention; as JSON and as a page.

use std::collections::BTreeMap;

use askama::Template;
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
    /// The last day of the period with a call (the site's local date).
    pub last_call_day: Option<String>,
    /// Deliveries of the site's calls and callbacks given up (dead letters) since the period
    /// began, by kind (of the oldest 500 dead letters of each kind).
    pub dead_letters: BTreeMap<String, u64>,
    /// What needs attention: `deliveries_failing`, `pool_exhausted` (in the period), `silent`
    /// (calls in the week before, none in the last 24 hours: the PBX may have stopped
    /// reporting).
    pub attention: Vec<String>,
}

impl SiteLine {
    /// What needs attention, in the reader's words.
    pub fn attention_in(&self, w: &super::i18n::Words) -> Vec<&'static str> {
        self.attention
            .iter()
            .filter_map(|a| match a.as_str() {
                "deliveries_failing" => Some(w.attention[0]),
                "pool_exhausted" => Some(w.attention[1]),
                "silent" => Some(w.attention[2]),
                _ => None,
            })
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Overview {
    pub from: String,
    pub to: String,
    pub sites: Vec<SiteLine>,
}

/// Every site's line for the days `from`..=`to` (each in its own time zone).
/// (`kinds`: every kind of job, with the records it delivers: the job registry's.)
pub async fn overview(
    app: &App,
    from: Option<&str>,
    to: Option<&str>,
    kinds: &[(&'static str, crate::store::jobs::Records)],
) -> Result<Overview, OverviewError> {
    let config = app.config();
    let now = app.clock.now();
    // The period as UTC days: what the page says and the dead letters are counted from.
    let utc = Period::new(chrono_tz::UTC, from, to, now)?;
    let dead = dead_by_site(app, utc.from.minus(std::time::Duration::from_secs(14 * 3600)), kinds).await?;
    let mut sites = Vec::new();
    for site in &config.sites {
        let p = Period::new(site.timezone, from, to, now)?;
        let s = summary(app, site, &p).await?;
        sites.push(site_line(app, site, &s, dead.get(site.id.as_str()).cloned().unwrap_or_default()).await?);
    }
    Ok(Overview { from: utc.first.to_string(), to: utc.last.to_string(), sites })
}

/// A site's line from its period's summary `s`, with its dead letters (`dead_letters`, by kind).
pub async fn site_line(
    app: &App,
    site: &crate::config::SiteConfig,
    s: &super::Summary,
    dead_letters: BTreeMap<String, u64>,
) -> Result<SiteLine, StoreError> {
    let peak_leased = s.days.iter().filter_map(|d| d.peak_leased).max();
    let exhausted: u64 = s.days.iter().filter_map(|d| d.exhausted).sum();
    let last_call_day = s.days.iter().rev().find(|d| d.total > 0).map(|d| d.date.clone());
    let mut attention = Vec::new();
    if !dead_letters.is_empty() {
        attention.push("deliveries_failing".to_owned());
    }
    if exhausted > 0 {
        attention.push("pool_exhausted".to_owned());
    }
    if silent(app, site, app.clock.now()).await? {
        attention.push("silent".to_owned());
    }
    Ok(SiteLine {
        site: site.id.to_string(),
        calls: s.total.total,
        tracked: s.total.tracked,
        share_tracked: s.total.share_tracked,
        untracked: s.total.default_before + s.total.default_after,
        max_numbers: site.rules.max_numbers,
        peak_leased,
        exhausted,
        last_call_day,
        dead_letters,
        attention,
    })
}

/// Whether the site had calls in the week before the last 24 hours and none since (one call
/// read from each span).
async fn silent(app: &App, site: &crate::config::SiteConfig, now: callpool_pool::Ts) -> Result<bool, StoreError> {
    let day_ago = now.minus(SILENT_AFTER);
    let recent = app.store.calls(Some(&site.id), day_ago, now, 1).await?;
    if !recent.is_empty() {
        return Ok(false);
    }
    let week = app.store.calls(Some(&site.id), day_ago.minus(SILENT_AFTER * 7), day_ago, 1).await?;
    Ok(!week.is_empty())
}

/// The dead letters of every kind given up since `since`, counted per site and kind (the oldest
/// [`DEAD_PER_KIND`] of each kind read).
pub async fn dead_by_site(
    app: &App,
    since: callpool_pool::Ts,
    kinds: &[(&'static str, crate::store::jobs::Records)],
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for &(kind, records) in kinds {
        for d in app.store.dead_jobs(kind, DEAD_PER_KIND).await?.into_iter().filter(|d| d.since >= since) {
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
                crate::store::jobs::Records::Digests => {
                    crate::store::digests::DigestRecord::site_of(&d.id).map(str::to_owned)
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

struct SiteRow {
    site: String,
    href: String,
    calls: String,
    share: String,
    untracked: String,
    numbers: String,
    exhausted: String,
    last_call: String,
    dead: String,
    attention: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    w: &'static super::i18n::Words,
    from: &'a str,
    to: &'a str,
    sites: Vec<SiteRow>,
    other_lang_href: String,
}

/// Every site on one page, each linking to its own report: calls, the share attributed, the pool's
/// pressure, the last call, deliveries given up, and what needs attention.
pub fn render_overview(o: &Overview, lang: super::i18n::Lang) -> String {
    use super::i18n::{int, percent, words};
    let w = words(lang);
    let period = |prefix: String, start: usize, lang: &str| {
        let mut q = form_urlencoded::Serializer::for_suffix(prefix, start);
        q.append_pair("from", &o.from).append_pair("to", &o.to).append_pair("lang", lang);
        q.finish()
    };
    let sites = o
        .sites
        .iter()
        .map(|s| {
            let attention = s.attention_in(w);
            let dead: u64 = s.dead_letters.values().sum();
            SiteRow {
                href: period(format!("reports/{}?", s.site), "reports/".len() + s.site.len() + 1, w.lang),
                site: s.site.clone(),
                calls: int(lang, s.calls),
                share: s.share_tracked.map_or(w.nothing.to_owned(), |x| percent(lang, x)),
                untracked: int(lang, s.untracked),
                numbers: format!(
                    "{} / {}",
                    s.peak_leased.map_or(w.nothing.to_owned(), |p| int(lang, u64::from(p))),
                    int(lang, u64::from(s.max_numbers))
                ),
                exhausted: int(lang, s.exhausted),
                last_call: s.last_call_day.clone().unwrap_or_else(|| w.nothing.to_owned()),
                dead: if dead == 0 {
                    w.nothing.to_owned()
                } else {
                    s.dead_letters.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
                },
                attention: attention.join(", "),
            }
        })
        .collect();
    let page = OverviewPage {
        w,
        from: &o.from,
        to: &o.to,
        sites,
        other_lang_href: period(String::from("?format=html"), 1, w.other_lang),
    };
    page.render().unwrap_or_else(|e| format!("the page could not be rendered: {e}"))
}
