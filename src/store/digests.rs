//! Digests as stored: one record per site and period its scheduled report covers, written with
//! its jobs (the mail, the Telegram message) only if it is not there yet, so a report is sent
//! once however many nodes find it due; forgotten with the calls, after `calls_retention`.

use std::sync::LazyLock;

use callpool_pool::{SiteId, Ts};
use redb::{ReadableTable, WriteTransaction};
use redis::Script;

use super::embedded::tables::digests::*;
use super::embedded::{err, forget_indexed};
pub use super::jobs::DigestRecord;
use super::jobs::{self, Planned};
use super::redis::{int, script};
use super::{encode, Backend, Store, StoreError};

impl Store {
    /// Stores `d` with its jobs unless it is stored already; whether it was written.
    pub async fn create_digest(&self, d: &DigestRecord, jobs: &[Planned]) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (d, jobs) = (d.clone(), jobs.to_vec());
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let written = create_in(&txn, &d, &jobs)?;
                    if written {
                        txn.commit().map_err(err)?;
                    }
                    Ok(written)
                })
                .await
            }
            Backend::Redis(r) => {
                static CREATE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/digests_create.lua")));
                let mut args = vec![d.id.clone(), d.site.to_string(), d.due.as_millis().to_string(), encode(d)];
                jobs::plan_args(&mut args, jobs);
                Ok(int(r.eval(&CREATE, &args).await?, "digests_create")? == 1)
            }
        }
    }

    /// Forgets up to `limit` digests per site due before `before`, with every trace of their
    /// jobs of `kinds`.
    pub async fn forget_digests(
        &self,
        sites: &[SiteId],
        before: Ts,
        limit: usize,
        kinds: &[&'static str],
    ) -> Result<usize, StoreError> {
        let parts: Vec<String> = sites.iter().map(ToString::to_string).collect();
        match &self.backend {
            Backend::Embedded(db) => {
                let kinds = kinds.to_vec();
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let forgotten = forget_indexed(&txn, (BY_SITE, RECORDS), &parts, (before.as_millis(), limit))?;
                    for (id, _) in &forgotten {
                        jobs::forget_in(&txn, &kinds, id)?;
                    }
                    txn.commit().map_err(err)?;
                    Ok(forgotten.len())
                })
                .await
            }
            Backend::Redis(r) => r.forget_records(("digests", "digest"), before, limit, kinds, parts).await,
        }
    }
}

fn create_in(txn: &WriteTransaction, d: &DigestRecord, jobs: &[Planned]) -> Result<bool, StoreError> {
    {
        let mut records = txn.open_table(RECORDS).map_err(err)?;
        if records.get(d.id.as_str()).map_err(err)?.is_some() {
            return Ok(false);
        }
        records.insert(d.id.as_str(), encode(d).as_bytes()).map_err(err)?;
        txn.open_table(BY_SITE)
            .map_err(err)?
            .insert((d.site.as_str(), d.due.as_millis(), d.id.as_str()), ())
            .map_err(err)?;
    }
    jobs::plan_in(txn, &d.id, jobs, false)?;
    Ok(true)
}
