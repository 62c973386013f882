//! The visit log: each visit as the hub saw it end (merged across the nodes that held its
//! tabs), per site by first page view. `callpool simulate --site` and the report page's advice
//! fit a site's traffic model to it.

use std::sync::LazyLock;

use callpool_pool::{SiteId, Ts};
use redb::{ReadableDatabase, ReadableTable};
use redis::Script;

use super::embedded::tables::visits::*;
use super::embedded::{entries_before, err};
use super::redis::{bulk_list, int, script};
use super::{decode, encode, Backend, Store, StoreError};

/// A visit as the hub saw it end.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VisitRecord {
    pub visitor: String,
    /// The first page view (ms).
    pub first_seen: i64,
    /// The last activity in any tab (ms).
    pub last_active: i64,
    /// When the last tab closed (ms).
    pub closed: i64,
    /// The most tabs open at once on one node.
    pub tabs: u32,
    /// utm_source, else the referrer's host, else "direct".
    pub source: String,
    /// Whether the site's traffic filter tracked the visit.
    pub tracked: bool,
    /// Its utm_medium, utm_campaign, utm_term, and the landing page without its query (visits
    /// recorded by earlier versions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
}

impl Store {
    /// Records a visit that ended (merged with what other nodes recorded of the same visit:
    /// the latest activity, the latest close, the most tabs).
    pub async fn record_visit(&self, site: &SiteId, visit: &VisitRecord) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (site, visit) = (site.to_string(), visit.clone());
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    {
                        let mut t = txn.open_table(VISITS).map_err(err)?;
                        let key = (site.as_str(), visit.first_seen, visit.visitor.as_str());
                        let old: Option<VisitRecord> =
                            t.get(key).map_err(err)?.map(|v| decode(v.value(), "visit")).transpose()?;
                        let merged = match old {
                            Some(o) => VisitRecord {
                                last_active: o.last_active.max(visit.last_active),
                                closed: o.closed.max(visit.closed),
                                tabs: o.tabs.max(visit.tabs),
                                ..visit.clone()
                            },
                            None => visit.clone(),
                        };
                        t.insert(key, encode(&merged).as_bytes()).map_err(err)?;
                    }
                    txn.commit().map_err(err)
                })
                .await
            }
            Backend::Redis(r) => {
                static RECORD: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/visits_record.lua")));
                let args = [site.to_string(), visit.first_seen.to_string(), visit.visitor.clone(), encode(visit)];
                r.eval(&RECORD, &args).await.map(|_| ())
            }
        }
    }

    /// The site's recorded visits that began in `[from, to]`, oldest first.
    pub async fn visits(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<VisitRecord>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let site = site.to_string();
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let t = txn.open_table(VISITS).map_err(err)?;
                    let range =
                        (site.as_str(), from.as_millis(), "")..(site.as_str(), to.as_millis().saturating_add(1), "");
                    t.range(range)
                        .map_err(err)?
                        .take(limit)
                        .map(|e| e.map_err(err).and_then(|(_, v)| decode(v.value(), "visit")))
                        .collect()
                })
                .await
            }
            Backend::Redis(r) => {
                static LIST: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/visits_list.lua")));
                let args =
                    [site.to_string(), from.as_millis().to_string(), to.as_millis().to_string(), limit.to_string()];
                bulk_list(r.eval(&LIST, &args).await?)?.iter().map(|v| decode(v, "visit")).collect()
            }
        }
    }

    /// Forgets up to `limit` visits per site that began before `before`; returns how many.
    pub async fn forget_visits(&self, sites: &[SiteId], before: Ts, limit: usize) -> Result<usize, StoreError> {
        let parts: Vec<String> = sites.iter().map(ToString::to_string).collect();
        match &self.backend {
            Backend::Embedded(db) => {
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let mut removed = 0;
                    {
                        let mut visits = txn.open_table(VISITS).map_err(err)?;
                        for site in &parts {
                            for (at, visitor) in entries_before(&visits, site, before.as_millis(), limit)? {
                                visits.remove((site.as_str(), at, visitor.as_str())).map_err(err)?;
                                removed += 1;
                            }
                        }
                    }
                    txn.commit().map_err(err)?;
                    Ok(removed)
                })
                .await
            }
            Backend::Redis(r) => {
                static FORGET: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/visits_forget.lua")));
                let mut args = vec![before.as_millis().to_string(), limit.to_string()];
                args.extend(parts);
                Ok(usize::try_from(int(r.eval(&FORGET, &args).await?, "visits_forget")?).unwrap_or(0))
            }
        }
    }
}
