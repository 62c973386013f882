//! Calls as stored: each call record (written with optimistic versions: a write names the
//! version it read), the per-site index by start time (calls no site could be found for are
//! kept under "-"), and what is remembered of each caller per site. A call's first write also
//! plans its jobs (one per destination), in the same atomic step.

use std::sync::LazyLock;
use std::time::Duration;

use callpool_pool::{SiteId, Ts};
use redb::{ReadableDatabase, ReadableTable};
use redis::Script;

use super::embedded::tables::calls::*;
use super::embedded::{err, forget_indexed, records_between};
use super::jobs::{self, Planned};
use super::redis::{bulk_list, int, script};
use super::{decode, encode, site_part, Backend, Store, StoreError};
use crate::calls::{Call, CallKey, Caller, CallerMemory};

/// Everything one write of a call carries, written atomically.
pub struct CallWrite<'a> {
    pub call: &'a Call,
    /// The version the writer read (0: the call is new).
    pub expected: u64,
    /// The caller's memory for the call's site, and how long to keep it.
    pub caller: Option<(&'a Caller, &'a CallerMemory, Duration)>,
    /// The call's jobs, one per destination (a new call's).
    pub jobs: &'a [Planned],
    /// Queued jobs to bring forward to this time if they are due later.
    pub hurry: &'a [(&'static str, Ts)],
}

impl Store {
    pub async fn call(&self, key: &CallKey) -> Result<Option<Call>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let key = key.as_str().to_owned();
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let t = txn.open_table(RECORDS).map_err(err)?;
                    t.get(key.as_str()).map_err(err)?.map(|v| decode(v.value(), "call")).transpose()
                })
                .await
            }
            Backend::Redis(r) => {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(r.key(&["call", key.as_str()])).arg("j");
                let json: Option<Vec<u8>> = r.query(&cmd).await?;
                json.map(|j| decode(&j, "call")).transpose()
            }
        }
    }

    /// What is remembered of `caller` for `site`.
    pub async fn caller(&self, site: &SiteId, caller: &Caller) -> Result<Option<CallerMemory>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (site, caller) = (site.to_string(), caller.as_str().to_owned());
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let t = txn.open_table(CALLERS).map_err(err)?;
                    t.get((site.as_str(), caller.as_str()))
                        .map_err(err)?
                        .map(|v| decode(v.value(), "caller"))
                        .transpose()
                })
                .await
            }
            Backend::Redis(r) => {
                let json: Option<Vec<u8>> =
                    r.query(redis::cmd("GET").arg(r.key(&["caller", site.as_str(), caller.as_str()]))).await?;
                json.map(|j| decode(&j, "caller")).transpose()
            }
        }
    }

    /// Writes everything in `w` if the call's version is still `w.expected`; `false` if another
    /// writer came first (re-read and try again). `site` is the index the call goes in.
    pub async fn save_call(&self, site: Option<&SiteId>, w: CallWrite<'_>) -> Result<bool, StoreError> {
        let call = w.call;
        match &self.backend {
            Backend::Embedded(db) => {
                let site = site_part(site).to_owned();
                let call = call.clone();
                let expected = w.expected;
                let caller = w.caller.map(|(c, m, _)| (c.as_str().to_owned(), encode(m)));
                let jobs = w.jobs.to_vec();
                let hurry = w.hurry.to_vec();
                db.grouped(move |txn| {
                    let key = call.key.as_str();
                    {
                        let mut calls = txn.open_table(RECORDS).map_err(err)?;
                        let stored: Option<Call> =
                            calls.get(key).map_err(err)?.map(|v| decode(v.value(), "call")).transpose()?;
                        if stored.as_ref().map_or(0, |c| c.version) != expected {
                            return Ok(false);
                        }
                        calls.insert(key, encode(&call).as_bytes()).map_err(err)?;
                    }
                    if expected == 0 {
                        let mut by_site = txn.open_table(BY_SITE).map_err(err)?;
                        by_site.insert((site.as_str(), call.started_at.as_millis(), key), ()).map_err(err)?;
                    }
                    if let Some((caller, memory)) = &caller {
                        let mut callers = txn.open_table(CALLERS).map_err(err)?;
                        callers.insert((site.as_str(), caller.as_str()), memory.as_bytes()).map_err(err)?;
                    }
                    jobs::plan_in(txn, key, &jobs, false)?;
                    for (kind, at) in &hurry {
                        jobs::hurry_in(txn, key, &[kind], *at)?;
                    }
                    Ok(true)
                })
                .await
            }
            Backend::Redis(r) => {
                static SAVE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/calls_save.lua")));
                let mut args = vec![
                    call.key.to_string(),
                    w.expected.to_string(),
                    call.version.to_string(),
                    encode(call),
                    site_part(site).to_owned(),
                    call.started_at.as_millis().to_string(),
                ];
                match w.caller {
                    Some((caller, memory, keep)) => {
                        args.extend([caller.as_str().to_owned(), encode(memory), keep.as_millis().max(1).to_string()])
                    }
                    None => args.extend([String::new(), String::new(), "1".into()]),
                }
                jobs::plan_args(&mut args, w.jobs);
                args.push(w.hurry.len().to_string());
                for (kind, at) in w.hurry {
                    args.extend([(*kind).to_owned(), at.as_millis().to_string()]);
                }
                Ok(int(r.eval(&SAVE, &args).await?, "calls_save")? == 1)
            }
        }
    }

    /// The calls of `site` (`None`: calls no site could be found for) that started in `[from, to]`,
    /// oldest first.
    pub async fn calls(&self, site: Option<&SiteId>, from: Ts, to: Ts, limit: usize) -> Result<Vec<Call>, StoreError> {
        let site = site_part(site).to_owned();
        match &self.backend {
            Backend::Embedded(db) => {
                let json =
                    db.blocking(move |db| records_between(db, BY_SITE, RECORDS, &site, (from, to), limit)).await?;
                json.iter().map(|c| decode(c, "call")).collect()
            }
            Backend::Redis(r) => {
                static LIST: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/calls_list.lua")));
                let args = [site, from.as_millis().to_string(), to.as_millis().to_string(), limit.to_string()];
                bulk_list(r.eval(&LIST, &args).await?)?.iter().map(|c| decode(c, "call")).collect()
            }
        }
    }

    /// Forgets up to `limit` calls per site (`sites`, and calls with no site) that started before
    /// `before`, with every trace of their jobs of `kinds`, and (embedded) up to `limit` caller
    /// memories last used before it (in Redis they expire on their own). Returns how many calls
    /// it removed.
    pub async fn forget_calls(
        &self,
        sites: &[SiteId],
        before: Ts,
        limit: usize,
        kinds: &[&'static str],
    ) -> Result<usize, StoreError> {
        let mut parts: Vec<String> = sites.iter().map(ToString::to_string).collect();
        parts.push(site_part(None).to_owned());
        match &self.backend {
            Backend::Embedded(db) => {
                let kinds = kinds.to_vec();
                let before = before.as_millis();
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let forgotten = forget_indexed(&txn, (BY_SITE, RECORDS), &parts, (before, limit))?;
                    for (id, _) in &forgotten {
                        jobs::forget_in(&txn, &kinds, id)?;
                    }
                    {
                        let mut callers = txn.open_table(CALLERS).map_err(err)?;
                        let stale: Vec<(String, String)> = callers
                            .iter()
                            .map_err(err)?
                            .filter_map(Result::ok)
                            .filter(|(_, v)| {
                                serde_json::from_slice::<CallerMemory>(v.value())
                                    .is_ok_and(|m| m.last_call_at.as_millis() < before)
                            })
                            .take(limit)
                            .map(|(k, _)| (k.value().0.to_owned(), k.value().1.to_owned()))
                            .collect();
                        for (site, caller) in stale {
                            callers.remove((site.as_str(), caller.as_str())).map_err(err)?;
                        }
                    }
                    txn.commit().map_err(err)?;
                    Ok(forgotten.len())
                })
                .await
            }
            Backend::Redis(r) => r.forget_records(("calls", "call"), before, limit, kinds, parts).await,
        }
    }
}
