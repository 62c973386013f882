//! Samples of each site's pool per local day (the most numbers leased at once, the pool's
//! exhausted counter at the day's first and latest sample), taken by the reaper for the
//! reports' pool use.

use std::sync::LazyLock;

use callpool_pool::SiteId;
use redb::{ReadableDatabase, ReadableTable};
use redis::Script;

use super::embedded::err;
use super::embedded::tables::usage::*;
use super::redis::script;
use super::{decode, encode, Backend, Store, StoreError};

/// A site's pool on one of its local days, from samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayUsage {
    /// The most numbers seen leased at once.
    pub peak_leased: u32,
    /// The pool's store-wide exhausted counter at the day's first and latest sample.
    pub exhausted_first: u64,
    pub exhausted_last: u64,
}

impl Store {
    /// Records a sample of a site's pool for its local `day` (`YYYY-MM-DD`).
    pub async fn record_usage(&self, site: &SiteId, day: &str, leased: u32, exhausted: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (site, day) = (site.to_string(), day.to_owned());
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    {
                        let mut t = txn.open_table(USAGE).map_err(err)?;
                        let key = (site.as_str(), day.as_str());
                        let old: Option<DayUsage> =
                            t.get(key).map_err(err)?.map(|v| decode(v.value(), "pool usage")).transpose()?;
                        let new = match old {
                            Some(u) => {
                                DayUsage { peak_leased: u.peak_leased.max(leased), exhausted_last: exhausted, ..u }
                            }
                            None => {
                                DayUsage { peak_leased: leased, exhausted_first: exhausted, exhausted_last: exhausted }
                            }
                        };
                        t.insert(key, encode(&new).as_bytes()).map_err(err)?;
                    }
                    txn.commit().map_err(err)
                })
                .await
            }
            Backend::Redis(r) => {
                static RECORD: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/usage_record.lua")));
                let args = [site.to_string(), day.to_owned(), leased.to_string(), exhausted.to_string()];
                r.eval(&RECORD, &args).await.map(|_| ())
            }
        }
    }

    /// The samples of `days`, where there are any.
    pub async fn usage(&self, site: &SiteId, days: &[String]) -> Result<Vec<Option<DayUsage>>, StoreError> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Embedded(db) => {
                let (site, days) = (site.to_string(), days.to_vec());
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let t = txn.open_table(USAGE).map_err(err)?;
                    days.iter()
                        .map(|d| {
                            t.get((site.as_str(), d.as_str()))
                                .map_err(err)?
                                .map(|v| decode(v.value(), "pool usage"))
                                .transpose()
                        })
                        .collect()
                })
                .await
            }
            Backend::Redis(r) => {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(r.key(&["usage", site.as_str()]));
                for d in days {
                    cmd.arg(format!("{d}:peak")).arg(format!("{d}:first")).arg(format!("{d}:last"));
                }
                let values: Vec<Option<u64>> = r.query(&cmd).await?;
                Ok(values
                    .chunks_exact(3)
                    .map(|v| match v {
                        [Some(peak), Some(first), Some(last)] => Some(DayUsage {
                            peak_leased: u32::try_from(*peak).unwrap_or(u32::MAX),
                            exhausted_first: *first,
                            exhausted_last: *last,
                        }),
                        _ => None,
                    })
                    .collect())
            }
        }
    }
}
