//! The durable job queue: each job is one delivery of one record (a call, a callback, a digest) to one
//! destination, named `<kind>|<record id>`, where the kind is the destination's (its handler's
//! name, `src/jobs/`). A job has a due time, a claim that hands it to one node until a hold runs
//! out (then it returns: its node died), failed attempts, and a state — pending, or how it ended
//! (sent, skipped with the reason, dead with the error). Dead jobs are kept as dead letters that
//! the admin API lists and re-queues.
//!
//! Jobs are created in the same atomic write as their record (see [`Planned`]); the store knows
//! no kind by name, and its scripts compare a job's state only with the pending state Rust
//! passes in.

use std::sync::LazyLock;

use callpool_pool::{SiteId, Ts};
use chrono::NaiveDate;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};

use super::embedded::tables::jobs::*;
use super::embedded::{entries_before, err, Index};
use super::redis::{bulk_list, script, unexpected};
use super::{decode, encode, Backend, Store, StoreError};
use crate::callback::Callback;
use crate::calls::Call;

/// Where one job stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Queued; goes out when due.
    Pending,
    Sent {
        at: Ts,
        /// What the destination made of it, where a later delivery needs it (a CRM's id of the
        /// call it registered, of the lead it created).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        receipt: Option<String>,
    },
    /// Nothing to send, and why (no GA client id, not configured, too old, ...).
    Skipped { reason: String },
    /// Given up after the retry limit or a refusal: a dead letter, visible in metrics and reports.
    Dead { error: String },
}

impl JobState {
    /// Delivered at `at`.
    pub fn sent(at: Ts) -> JobState {
        JobState::Sent { at, receipt: None }
    }
}

/// What a new record plans for one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// A pending job, due then.
    Due(Ts),
    /// No job; the state says why (reports show it).
    Skip(String),
    /// No new job: the record's queued job of this kind goes out at this time if it is due later
    /// (a hunt's next operator, when the PBX reported the last one's call missed).
    Hurry(Ts),
}

/// A job a record's write creates, of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub kind: &'static str,
    pub plan: Plan,
}

impl Planned {
    fn state(&self) -> JobState {
        match &self.plan {
            Plan::Due(_) | Plan::Hurry(_) => JobState::Pending,
            Plan::Skip(reason) => JobState::Skipped { reason: reason.clone() },
        }
    }

    fn due(&self) -> Option<Ts> {
        match self.plan {
            Plan::Due(t) | Plan::Hurry(t) => Some(t),
            Plan::Skip(_) => None,
        }
    }
}

/// Which records a kind's jobs deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    Calls,
    Callbacks,
    /// The scheduled reports ([`DigestRecord`]).
    Digests,
}

/// A site's digest (its scheduled report, `store::digests`) for the local days `first..=last`, due at `due`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestRecord {
    /// `<site>:<first>:<last>`.
    pub id: String,
    pub site: SiteId,
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub due: Ts,
}

impl DigestRecord {
    pub fn new(site: SiteId, first: NaiveDate, last: NaiveDate, due: Ts) -> DigestRecord {
        DigestRecord { id: format!("{site}:{first}:{last}"), site, first, last, due }
    }

    /// The site a digest's id names.
    pub fn site_of(id: &str) -> Option<&str> {
        id.split(':').next()
    }
}

/// The record a claimed job delivers.
#[derive(Clone, Debug)]
pub enum Record {
    Call(Box<Call>),
    Callback(Box<Callback>),
    Digest(Box<DigestRecord>),
}

/// A claimed job: its record's id and the record as stored, and the attempts already made.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: String,
    pub record: Record,
    pub attempts: u32,
}

/// How a claimed job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Sent, skipped or dead: the job's final state.
    Done(JobState),
    /// Try again at this time (one more attempt counted).
    Retry(Ts),
    /// Not yet (an earlier delivery of the same record goes first): back to the queue for this
    /// time, no attempt counted.
    Wait(Ts),
}

/// A dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadJob {
    pub id: String,
    pub since: Ts,
    pub error: String,
}

/// A job's name: `<kind>|<record id>`.
fn job(kind: &str, id: &str) -> String {
    format!("{kind}|{id}")
}

fn pending() -> String {
    encode(&JobState::Pending)
}

impl Store {
    /// Claims up to `limit` due jobs of `kind` (delivering `records`); each is held until `hold_until`.
    pub async fn claim_jobs(
        &self,
        kind: &'static str,
        records: Records,
        now: Ts,
        limit: usize,
        hold_until: Ts,
    ) -> Result<Vec<Claimed>, StoreError> {
        let raw: Vec<(String, Vec<u8>, u32)> = match &self.backend {
            Backend::Embedded(db) => {
                let (now, until) = (now.as_millis(), hold_until.as_millis());
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let out = claim_in(&txn, kind, records, now, limit, until)?;
                    txn.commit().map_err(err)?;
                    Ok(out)
                })
                .await?
            }
            Backend::Redis(r) => {
                static CLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/jobs_claim.lua")));
                let args = [
                    kind.to_owned(),
                    now.as_millis().to_string(),
                    limit.to_string(),
                    hold_until.as_millis().to_string(),
                    match records {
                        Records::Calls => "call",
                        Records::Callbacks => "cb",
                        Records::Digests => "digest",
                    }
                    .to_owned(),
                    pending(),
                ];
                bulk_list(r.eval(&CLAIM, &args).await?)?
                    .chunks_exact(3)
                    .map(|c| {
                        let attempts = std::str::from_utf8(&c[1]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        (String::from_utf8_lossy(&c[0]).into_owned(), c[2].clone(), attempts)
                    })
                    .collect()
            }
        };
        raw.into_iter()
            .map(|(id, json, attempts)| {
                let record = match records {
                    Records::Calls => Record::Call(Box::new(decode(&json, "call")?)),
                    Records::Callbacks => Record::Callback(Box::new(decode(&json, "callback")?)),
                    Records::Digests => Record::Digest(Box::new(decode(&json, "digest")?)),
                };
                Ok(Claimed { id, record, attempts })
            })
            .collect()
    }

    /// Ends the claims of `done` (jobs of `kind`, by their record's id), in one step.
    pub async fn settle_jobs(&self, kind: &'static str, done: &[(String, Settle)], now: Ts) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        match &self.backend {
            Backend::Embedded(db) => {
                let done = done.to_vec();
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    for (id, how) in &done {
                        settle_in(&txn, kind, id, how, now.as_millis())?;
                    }
                    txn.commit().map_err(err)
                })
                .await
            }
            Backend::Redis(r) => {
                static SETTLE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/jobs_settle.lua")));
                let mut args = vec![kind.to_owned(), now.as_millis().to_string()];
                for (id, how) in done {
                    let (state, retry, dead) = match how {
                        Settle::Retry(at) => (String::new(), at.as_millis().to_string(), "0"),
                        Settle::Wait(at) => (String::new(), at.as_millis().to_string(), "wait"),
                        Settle::Done(s) => {
                            (encode(s), String::new(), if matches!(s, JobState::Dead { .. }) { "1" } else { "0" })
                        }
                    };
                    args.extend([id.clone(), state, retry, dead.to_owned()]);
                }
                r.eval(&SETTLE, &args).await.map(|_| ())
            }
        }
    }

    /// Jobs of `kind` waiting or in flight, and dead letters.
    pub async fn job_depth(&self, kind: &'static str) -> Result<(u64, u64), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let count = |def: Index<()>| -> Result<u64, StoreError> {
                        let t = txn.open_table(def).map_err(err)?;
                        Ok(t.range((kind, i64::MIN, "")..=(kind, i64::MAX, "\u{10ffff}")).map_err(err)?.count() as u64)
                    };
                    Ok((count(QUEUE)? + count(CLAIMS)?, count(DEAD)?))
                })
                .await
            }
            Backend::Redis(r) => {
                static DEPTH: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/jobs_depth.lua")));
                match r.eval(&DEPTH, &[kind.to_owned()]).await? {
                    Value::Array(v) => match v.as_slice() {
                        [Value::Int(a), Value::Int(b)] => Ok((*a as u64, *b as u64)),
                        _ => Err(unexpected("job depth", &Value::Array(v))),
                    },
                    other => Err(unexpected("job depth", &other)),
                }
            }
        }
    }

    /// The states of the jobs of `kind` of each record in `ids` (`None`: no such job).
    pub async fn job_states(&self, kind: &'static str, ids: &[String]) -> Result<Vec<Option<JobState>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<String> = ids.iter().map(|id| job(kind, id)).collect();
        let raw: Vec<Option<Vec<u8>>> = match &self.backend {
            Backend::Embedded(db) => {
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let states = txn.open_table(STATES).map_err(err)?;
                    jobs.iter().map(|j| Ok(states.get(j.as_str()).map_err(err)?.map(|v| v.value().to_vec()))).collect()
                })
                .await?
            }
            Backend::Redis(r) => {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(r.key(&["obstate"])).arg(&jobs);
                r.query(&cmd).await?
            }
        };
        raw.iter().map(|s| s.as_deref().map(|s| decode(s, "job state")).transpose()).collect()
    }

    /// Up to `limit` dead letters of `kind`, oldest first.
    pub async fn dead_jobs(&self, kind: &'static str, limit: usize) -> Result<Vec<DeadJob>, StoreError> {
        let raw: Vec<(String, i64, Vec<u8>)> = match &self.backend {
            Backend::Embedded(db) => {
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let dead = txn.open_table(DEAD).map_err(err)?;
                    let states = txn.open_table(STATES).map_err(err)?;
                    let mut out = Vec::new();
                    for (since, name) in entries_before(&dead, kind, i64::MAX, usize::MAX)? {
                        // An earlier version left dead letters whose states it had forgotten: not listed.
                        let Some(state) = states.get(name.as_str()).map_err(err)?.map(|v| v.value().to_vec()) else {
                            continue;
                        };
                        out.push((name[kind.len() + 1..].to_owned(), since, state));
                        if out.len() == limit {
                            break;
                        }
                    }
                    Ok(out)
                })
                .await?
            }
            Backend::Redis(r) => {
                static DEAD_LIST: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/jobs_dead.lua")));
                bulk_list(r.eval(&DEAD_LIST, &[kind.to_owned(), limit.max(1).to_string()]).await?)?
                    .chunks_exact(3)
                    .map(|c| {
                        let since = std::str::from_utf8(&c[1]).ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
                        (String::from_utf8_lossy(&c[0]).into_owned(), since as i64, c[2].clone())
                    })
                    .collect()
            }
        };
        raw.into_iter()
            .map(|(id, since, state)| {
                let error = match decode::<JobState>(&state, "job state") {
                    Ok(JobState::Dead { error }) => error,
                    Ok(other) => format!("{other:?}"),
                    Err(e) => e.to_string(),
                };
                Ok(DeadJob { id, since: Ts::from_millis(since), error })
            })
            .collect()
    }

    /// Puts the dead letter of `kind` for record `id` back in the queue, due now, its attempts
    /// forgotten; `false` if there is no such dead letter.
    pub async fn requeue_job(&self, kind: &'static str, id: &str, now: Ts) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let id = id.to_owned();
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let name = job(kind, &id);
                    let found = take_dead(&txn, kind, &name)?
                        || match old_dead_letter(&txn, kind, &name)? {
                            Some(since) => txn
                                .open_table(DEAD)
                                .map_err(err)?
                                .remove((kind, since, name.as_str()))
                                .map_err(err)?
                                .is_some(),
                            None => false,
                        };
                    if found {
                        txn.open_table(TRIES).map_err(err)?.remove(name.as_str()).map_err(err)?;
                        plan_in(&txn, &id, &[Planned { kind, plan: Plan::Due(now) }], false)?;
                    }
                    txn.commit().map_err(err)?;
                    Ok(found)
                })
                .await
            }
            Backend::Redis(r) => {
                static REQUEUE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/jobs_requeue.lua")));
                let args = [kind.to_owned(), id.to_owned(), now.as_millis().to_string(), pending()];
                Ok(super::redis::int(r.eval(&REQUEUE, &args).await?, "requeue")? == 1)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Embedded: the tables, and what the records' writes call in their own transactions.

/// Removes job `name` of `kind` from the dead letters; whether it was one.
fn take_dead(txn: &WriteTransaction, kind: &str, name: &str) -> Result<bool, StoreError> {
    let Some(since) = txn.open_table(DEAD_SINCE).map_err(err)?.remove(name).map_err(err)?.map(|v| v.value()) else {
        return Ok(false);
    };
    txn.open_table(DEAD).map_err(err)?.remove((kind, since, name)).map_err(err)?;
    Ok(true)
}

/// A dead letter an earlier version wrote, which kept no `DEAD_SINCE`: its time, if `name` is
/// one and its state still says dead (that version forgot a record's states without its dead
/// letters; such leftovers are not dead letters).
fn old_dead_letter(txn: &WriteTransaction, kind: &str, name: &str) -> Result<Option<i64>, StoreError> {
    let state = txn.open_table(STATES).map_err(err)?.get(name).map_err(err)?.map(|v| v.value().to_vec());
    if !matches!(state.map(|s| decode::<JobState>(&s, "job state")), Some(Ok(JobState::Dead { .. }))) {
        return Ok(None);
    }
    let dead = txn.open_table(DEAD).map_err(err)?;
    Ok(entries_before(&dead, kind, i64::MAX, usize::MAX)?.into_iter().find(|(_, n)| n == name).map(|(t, _)| t))
}

/// The table of the records `records` names, for a claim to read each job's record.
fn record_table(records: Records) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match records {
        Records::Calls => super::embedded::tables::calls::RECORDS,
        Records::Callbacks => super::embedded::tables::callbacks::RECORDS,
        Records::Digests => super::embedded::tables::digests::RECORDS,
    }
}

fn claim_in(
    txn: &WriteTransaction,
    kind: &str,
    records: Records,
    now: i64,
    limit: usize,
    until: i64,
) -> Result<Vec<(String, Vec<u8>, u32)>, StoreError> {
    let mut queue = txn.open_table(QUEUE).map_err(err)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(err)?;
    let mut claims = txn.open_table(CLAIMS).map_err(err)?;
    let mut claim_until = txn.open_table(CLAIM_UNTIL).map_err(err)?;
    // Claims whose node died go back to the queue.
    for (at, name) in entries_before(&claims, kind, now.saturating_add(1), usize::MAX)? {
        claims.remove((kind, at, name.as_str())).map_err(err)?;
        claim_until.remove(name.as_str()).map_err(err)?;
        queue.insert((kind, now, name.as_str()), ()).map_err(err)?;
        due.insert(name.as_str(), now).map_err(err)?;
    }
    let table = txn.open_table(record_table(records)).map_err(err)?;
    let states = txn.open_table(STATES).map_err(err)?;
    let tries = txn.open_table(TRIES).map_err(err)?;
    let mut out = Vec::new();
    for (at, name) in entries_before(&queue, kind, now.saturating_add(1), limit)? {
        queue.remove((kind, at, name.as_str())).map_err(err)?;
        due.remove(name.as_str()).map_err(err)?;
        let pending = match states.get(name.as_str()).map_err(err)? {
            Some(v) => decode::<JobState>(v.value(), "job state")? == JobState::Pending,
            None => false,
        };
        let id = &name[kind.len() + 1..];
        let Some(record) = table.get(id).map_err(err)?.map(|v| v.value().to_vec()) else { continue };
        if !pending {
            continue;
        }
        claims.insert((kind, until, name.as_str()), ()).map_err(err)?;
        claim_until.insert(name.as_str(), until).map_err(err)?;
        let attempts = tries.get(name.as_str()).map_err(err)?.map_or(0, |v| v.value());
        out.push((id.to_owned(), record, attempts));
    }
    Ok(out)
}

fn settle_in(txn: &WriteTransaction, kind: &str, id: &str, how: &Settle, now: i64) -> Result<(), StoreError> {
    let name = job(kind, id);
    let mut claims = txn.open_table(CLAIMS).map_err(err)?;
    let mut claim_until = txn.open_table(CLAIM_UNTIL).map_err(err)?;
    if let Some(at) = claim_until.remove(name.as_str()).map_err(err)?.map(|v| v.value()) {
        claims.remove((kind, at, name.as_str())).map_err(err)?;
    }
    let mut queue = txn.open_table(QUEUE).map_err(err)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(err)?;
    if let Some(at) = due.remove(name.as_str()).map_err(err)?.map(|v| v.value()) {
        queue.remove((kind, at, name.as_str())).map_err(err)?;
    }
    let mut tries = txn.open_table(TRIES).map_err(err)?;
    match how {
        Settle::Retry(at) | Settle::Wait(at) => {
            queue.insert((kind, at.as_millis(), name.as_str()), ()).map_err(err)?;
            due.insert(name.as_str(), at.as_millis()).map_err(err)?;
            if matches!(how, Settle::Retry(_)) {
                let n = tries.get(name.as_str()).map_err(err)?.map_or(0, |v| v.value());
                tries.insert(name.as_str(), n + 1).map_err(err)?;
            }
        }
        Settle::Done(state) => {
            txn.open_table(STATES).map_err(err)?.insert(name.as_str(), encode(state).as_bytes()).map_err(err)?;
            tries.remove(name.as_str()).map_err(err)?;
            if matches!(state, JobState::Dead { .. }) {
                txn.open_table(DEAD).map_err(err)?.insert((kind, now, name.as_str()), ()).map_err(err)?;
                txn.open_table(DEAD_SINCE).map_err(err)?.insert(name.as_str(), now).map_err(err)?;
            }
        }
    }
    Ok(())
}

/// Plans the jobs of record `id` in the caller's transaction: sets each state and queues the
/// pending ones (with `only_new`, a job that exists already is left as it is).
pub(super) fn plan_in(txn: &WriteTransaction, id: &str, plans: &[Planned], only_new: bool) -> Result<(), StoreError> {
    let mut states = txn.open_table(STATES).map_err(err)?;
    let mut queue = txn.open_table(QUEUE).map_err(err)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(err)?;
    for p in plans {
        let name = job(p.kind, id);
        if let Plan::Hurry(at) = p.plan {
            hurry_one(&mut queue, &mut due, p.kind, &name, at)?;
            continue;
        }
        if only_new && states.get(name.as_str()).map_err(err)?.is_some() {
            continue;
        }
        states.insert(name.as_str(), encode(&p.state()).as_bytes()).map_err(err)?;
        if let Some(at) = p.due() {
            let at = at.as_millis();
            if let Some(old) = due.insert(name.as_str(), at).map_err(err)?.map(|v| v.value()) {
                queue.remove((p.kind, old, name.as_str())).map_err(err)?;
            }
            queue.insert((p.kind, at, name.as_str()), ()).map_err(err)?;
        }
    }
    Ok(())
}

/// Brings the queued jobs of `kinds` of record `id` forward to `at` if they are due later, in
/// the caller's transaction.
pub(super) fn hurry_in(txn: &WriteTransaction, id: &str, kinds: &[&str], at: Ts) -> Result<(), StoreError> {
    let mut queue = txn.open_table(QUEUE).map_err(err)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(err)?;
    for kind in kinds {
        hurry_one(&mut queue, &mut due, kind, &job(kind, id), at)?;
    }
    Ok(())
}

/// Brings queued job `name` (of `kind`) forward to `at` if it is due later.
fn hurry_one(
    queue: &mut redb::Table<(&'static str, i64, &'static str), ()>,
    due: &mut redb::Table<&'static str, i64>,
    kind: &str,
    name: &str,
    at: Ts,
) -> Result<(), StoreError> {
    let at = at.as_millis();
    let current = due.get(name).map_err(err)?.map(|v| v.value());
    if let Some(old) = current.filter(|old| *old > at) {
        queue.remove((kind, old, name)).map_err(err)?;
        queue.insert((kind, at, name), ()).map_err(err)?;
        due.insert(name, at).map_err(err)?;
    }
    Ok(())
}

/// Removes every trace of the jobs of `kinds` of record `id`, in the caller's transaction.
pub(super) fn forget_in(txn: &WriteTransaction, kinds: &[&str], id: &str) -> Result<(), StoreError> {
    let mut states = txn.open_table(STATES).map_err(err)?;
    let mut tries = txn.open_table(TRIES).map_err(err)?;
    let mut queue = txn.open_table(QUEUE).map_err(err)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(err)?;
    let mut claims = txn.open_table(CLAIMS).map_err(err)?;
    let mut claim_until = txn.open_table(CLAIM_UNTIL).map_err(err)?;
    for kind in kinds {
        let name = job(kind, id);
        states.remove(name.as_str()).map_err(err)?;
        tries.remove(name.as_str()).map_err(err)?;
        if let Some(at) = due.remove(name.as_str()).map_err(err)?.map(|v| v.value()) {
            queue.remove((*kind, at, name.as_str())).map_err(err)?;
        }
        if let Some(at) = claim_until.remove(name.as_str()).map_err(err)?.map(|v| v.value()) {
            claims.remove((*kind, at, name.as_str())).map_err(err)?;
        }
    }
    drop((states, tries, queue, due, claims, claim_until));
    for kind in kinds {
        take_dead(txn, kind, &job(kind, id))?;
    }
    Ok(())
}

/// The arguments of the Lua `job_plans`: `n, {kind, state JSON, due or ''}...`.
pub(super) fn plan_args(args: &mut Vec<String>, plans: &[Planned]) {
    args.push(plans.len().to_string());
    for p in plans {
        args.extend([
            p.kind.to_owned(),
            // '': a hurry (see `job_plans` in lua/lib.lua).
            if matches!(p.plan, Plan::Hurry(_)) { String::new() } else { encode(&p.state()) },
            p.due().map_or(String::new(), |t| t.as_millis().to_string()),
        ]);
    }
}
