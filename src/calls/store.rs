//! Where calls live: the call records (updated with optimistic versions), a per-site index by
//! start time for reports, what is remembered of each caller per site, and the analytics outbox
//! (durable jobs with due times, claims that expire when a node dies, attempts, dead letters,
//! and each delivery's state).
//!
//! Two stores with one behaviour: [`EmbeddedCalls`] (a redb file beside the pool's, one process)
//! and [`RedisCalls`] (the cluster's Redis; every operation one atomic Lua script in
//! `src/calls/lua/`, keys listed in ARCHITECTURE.md). A call, its caller memory and its outbox
//! jobs are written in one atomic step, so an acknowledged webhook always has its jobs queued,
//! and no job exists without its call.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callpool_pool::redis_store::{classify, RedisPool};
use callpool_pool::{PoolError, SiteId, Ts};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::{Call, CallKey, Caller, CallerMemory, Delivery};

/// The outbox's job kinds: the two analytics deliveries every call has, and the jobs of a
/// callback request (the PBX trigger, its GA4 event, the team's notifications).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Ga4,
    Yandex,
    /// Ask the PBX to place a callback.
    Trigger,
    /// GA4 `callback_request`.
    CallbackGa4,
    TelegramRequest,
    TelegramMissed,
    HookRequest,
    HookMissed,
}

impl JobKind {
    pub const ALL: [JobKind; 8] = [
        JobKind::Ga4,
        JobKind::Yandex,
        JobKind::Trigger,
        JobKind::CallbackGa4,
        JobKind::TelegramRequest,
        JobKind::TelegramMissed,
        JobKind::HookRequest,
        JobKind::HookMissed,
    ];
    /// The jobs of a call.
    pub const CALL: [JobKind; 2] = [JobKind::Ga4, JobKind::Yandex];
    /// The jobs of a callback.
    pub const CALLBACK: [JobKind; 6] = [
        JobKind::Trigger,
        JobKind::CallbackGa4,
        JobKind::TelegramRequest,
        JobKind::TelegramMissed,
        JobKind::HookRequest,
        JobKind::HookMissed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Ga4 => "ga4",
            JobKind::Yandex => "yandex",
            JobKind::Trigger => "trigger",
            JobKind::CallbackGa4 => "cb_ga4",
            JobKind::TelegramRequest => "tg_request",
            JobKind::TelegramMissed => "tg_missed",
            JobKind::HookRequest => "hook_request",
            JobKind::HookMissed => "hook_missed",
        }
    }

    /// Where the job's record lives: a call (`call`) or a callback (`cb`).
    fn record(self) -> &'static str {
        if JobKind::CALL.contains(&self) {
            "call"
        } else {
            "cb"
        }
    }

    /// The job of this kind for a record (call key or callback id): `<kind>|<id>`.
    pub fn job(self, id: &str) -> String {
        format!("{}|{}", self.as_str(), id)
    }
}

/// Everything one save writes, atomically.
pub struct Save<'a> {
    pub call: &'a Call,
    /// The version the writer read (0: the call is new).
    pub expected: u64,
    /// The caller's memory for the call's site, and how long to keep it.
    pub caller: Option<(&'a Caller, &'a CallerMemory, Duration)>,
    /// Delivery states to set (new calls: pending, or skipped with the reason).
    pub states: Vec<(JobKind, Delivery)>,
    /// New outbox jobs and their due times.
    pub jobs: Vec<(JobKind, Ts)>,
    /// Pending jobs to bring forward to this time if they are due later.
    pub hurry: Vec<(JobKind, Ts)>,
}

/// A claimed outbox job: the call as stored, and the attempts already made.
#[derive(Clone, Debug)]
pub struct Job {
    pub kind: JobKind,
    pub call: Call,
    pub attempts: u32,
}

/// A claimed job before its record is read: the record's JSON and the attempts made.
pub(crate) struct RawJob {
    pub record: Vec<u8>,
    pub attempts: u32,
}

/// How a claimed job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Delivered, skipped or given up: the delivery's final state.
    Done(Delivery),
    /// Try again at this time (one more attempt counted).
    Retry(Ts),
}

/// A site's pool on one of its local days, from samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DayUsage {
    /// The most numbers seen leased at once.
    pub peak_leased: u32,
    /// The pool's store-wide exhausted counter at the day's first and latest sample.
    pub exhausted_first: u64,
    pub exhausted_last: u64,
}

/// A visit as the hub saw it end: what `callpool simulate` fits a site's traffic model to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
}

/// A call with its delivery states, for reports.
#[derive(Clone, Debug)]
pub struct StoredCall {
    pub call: Call,
    pub ga4: Option<Delivery>,
    pub yandex: Option<Delivery>,
}

/// The calls store the configuration names.
#[derive(Clone)]
pub enum CallStore {
    Embedded(EmbeddedCalls),
    Redis(RedisCalls),
}

macro_rules! dispatch {
    ($self:ident . $op:ident ( $($arg:expr),* )) => {
        match $self {
            CallStore::Embedded(s) => s.$op($($arg),*).await,
            CallStore::Redis(s) => s.$op($($arg),*).await,
        }
    };
}

impl CallStore {
    pub async fn get(&self, key: &CallKey) -> Result<Option<Call>, PoolError> {
        dispatch!(self.get(key))
    }

    /// What is remembered of `caller` for `site`.
    pub async fn caller(&self, site: &SiteId, caller: &Caller) -> Result<Option<CallerMemory>, PoolError> {
        dispatch!(self.caller(site, caller))
    }

    /// Writes everything in `save` if the call's version is still `save.expected`; `false` if
    /// another writer came first (re-read and try again).
    pub async fn save(&self, site: Option<&SiteId>, save: Save<'_>) -> Result<bool, PoolError> {
        dispatch!(self.save(site, save))
    }

    /// The calls of `site` (`None`: calls no site could be found for) that started in `[from, to]`.
    pub async fn calls(
        &self,
        site: Option<&SiteId>,
        from: Ts,
        to: Ts,
        limit: usize,
    ) -> Result<Vec<StoredCall>, PoolError> {
        dispatch!(self.calls(site, from, to, limit))
    }

    /// Claims up to `limit` due jobs of `kind` (a call's); each is held until `hold_until`.
    pub async fn claim(&self, kind: JobKind, now: Ts, limit: usize, hold_until: Ts) -> Result<Vec<Job>, PoolError> {
        let raw: Vec<RawJob> = dispatch!(self.claim_raw(kind, now, limit, hold_until))?;
        raw.into_iter().map(|j| Ok(Job { kind, call: decode(&j.record, "call")?, attempts: j.attempts })).collect()
    }

    /// Ends the claims of `done` (jobs of `kind`, by their record's id), in one step.
    pub async fn finish(&self, kind: JobKind, done: &[(String, Finish)], now: Ts) -> Result<(), PoolError> {
        if done.is_empty() {
            return Ok(());
        }
        dispatch!(self.finish(kind, done, now))
    }

    /// Jobs of `kind` waiting or in flight, and dead-lettered.
    pub async fn depth(&self, kind: JobKind) -> Result<(u64, u64), PoolError> {
        dispatch!(self.depth(kind))
    }

    /// Forgets up to `limit` calls per site (`sites`, plus calls with no site) that started before
    /// `before`, with their deliveries and jobs, and (embedded) caller memories last used before it
    /// (in Redis they expire on their own). Returns how many calls it removed.
    pub async fn trim(&self, sites: &[SiteId], before: Ts, limit: usize) -> Result<usize, PoolError> {
        dispatch!(self.trim(sites, before, limit))
    }

    /// Records a visit that ended (merged with what other nodes recorded of the same visit).
    pub async fn record_visit(&self, site: &SiteId, visit: &VisitRecord) -> Result<(), PoolError> {
        dispatch!(self.record_visit(site, visit))
    }

    /// The site's recorded visits that began in `[from, to]`, oldest first.
    pub async fn visits(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<VisitRecord>, PoolError> {
        dispatch!(self.visits(site, from, to, limit))
    }

    /// Records a sample of a site's pool for its local `day` (`YYYY-MM-DD`).
    pub async fn record_usage(&self, site: &SiteId, day: &str, leased: u32, exhausted: u64) -> Result<(), PoolError> {
        dispatch!(self.record_usage(site, day, leased, exhausted))
    }

    /// The samples of `days`, where there are any.
    pub async fn usage(&self, site: &SiteId, days: &[String]) -> Result<Vec<Option<DayUsage>>, PoolError> {
        dispatch!(self.usage(site, days))
    }
}

/// The index key of a site's calls; calls no site could be found for are kept under "-".
fn site_part(site: Option<&SiteId>) -> &str {
    site.map_or("-", SiteId::as_str)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, PoolError> {
    serde_json::from_slice(bytes).map_err(|e| PoolError::Storage(format!("unreadable {what} in the calls store: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("calls and deliveries serialize to JSON (no maps with non-string keys)")
}

mod callbacks;
pub use callbacks::{CallbackJob, Created, Extra, Updated};

// ---------------------------------------------------------------------------------------------
// Embedded: redb

const CALLS: TableDefinition<&str, &[u8]> = TableDefinition::new("calls");
/// (site, started ms, call key)
const BY_SITE: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("calls_by_site");
/// (site, caller) -> CallerMemory JSON
const CALLERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("callers");
/// (kind, due ms, job) and job -> due ms
const QUEUE: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("outbox");
const QUEUE_DUE: TableDefinition<&str, i64> = TableDefinition::new("outbox_due");
/// (kind, held until ms, job) and job -> held until ms
const CLAIMS: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("outbox_claims");
const CLAIM_UNTIL: TableDefinition<&str, i64> = TableDefinition::new("outbox_claim_until");
const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_states");
const TRIES: TableDefinition<&str, u32> = TableDefinition::new("outbox_tries");
/// (kind, dead since ms, job)
const DEAD: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("outbox_dead");
/// (site, day) -> DayUsage JSON
const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pool_usage");
/// (site, first seen ms, visitor) -> VisitRecord JSON
const VISITS: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("visit_log");
/// callback id -> Callback JSON
const CALLBACKS: TableDefinition<&str, &[u8]> = TableDefinition::new("callbacks");
/// (site, requested ms, callback id): the site's callbacks (reports, the per-site limit)
const CB_BY_SITE: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("callbacks_by_site");
/// ("site|number", requested ms, callback id): the per-number limit
const CB_BY_NUMBER: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("callbacks_by_number");
/// "site|number" -> banned until ms
const CB_BANS: TableDefinition<&str, i64> = TableDefinition::new("callback_bans");
/// call key -> callback id: the calls that report a callback's outcome
const CB_LINKS: TableDefinition<&str, &str> = TableDefinition::new("callback_links");

/// The (ms, name) of up to `limit` entries of `part` in a (part, ms, name) table with ms < `before`,
/// in order.
fn entries_before<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, i64, &'static str), V>,
    part: &str,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>, PoolError> {
    table
        .range((part, i64::MIN, "")..(part, before, ""))
        .map_err(storage)?
        .take(limit)
        .map(|e| e.map(|(k, _)| (k.value().1, k.value().2.to_owned())).map_err(storage))
        .collect()
}

/// Removes every trace of the jobs of `kinds` of record `id` (state, attempts, queue, claim,
/// dead letter), in the caller's transaction.
fn forget_jobs(txn: &redb::WriteTransaction, kinds: &[JobKind], id: &str) -> Result<(), PoolError> {
    let mut states = txn.open_table(STATES).map_err(storage)?;
    let mut tries = txn.open_table(TRIES).map_err(storage)?;
    let mut queue = txn.open_table(QUEUE).map_err(storage)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(storage)?;
    let mut claims = txn.open_table(CLAIMS).map_err(storage)?;
    let mut claim_until = txn.open_table(CLAIM_UNTIL).map_err(storage)?;
    for kind in kinds {
        let job = kind.job(id);
        states.remove(job.as_str()).map_err(storage)?;
        tries.remove(job.as_str()).map_err(storage)?;
        if let Some(at) = due.remove(job.as_str()).map_err(storage)?.map(|v| v.value()) {
            queue.remove((kind.as_str(), at, job.as_str())).map_err(storage)?;
        }
        if let Some(at) = claim_until.remove(job.as_str()).map_err(storage)?.map(|v| v.value()) {
            claims.remove((kind.as_str(), at, job.as_str())).map_err(storage)?;
        }
    }
    Ok(())
}

/// Calls in `<data_dir>/calls.redb`. Every write is one redb transaction, durable when it returns.
#[derive(Clone)]
pub struct EmbeddedCalls {
    db: Arc<Database>,
}

fn storage(e: impl std::fmt::Display) -> PoolError {
    PoolError::Storage(format!("calls store: {e}"))
}

impl EmbeddedCalls {
    pub fn open(data_dir: &Path) -> Result<EmbeddedCalls, PoolError> {
        std::fs::create_dir_all(data_dir).map_err(|e| storage(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join("calls.redb");
        let db = Database::create(&path).map_err(|e| storage(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(CALLS).map_err(storage)?;
        txn.open_table(BY_SITE).map_err(storage)?;
        txn.open_table(CALLERS).map_err(storage)?;
        txn.open_table(QUEUE).map_err(storage)?;
        txn.open_table(QUEUE_DUE).map_err(storage)?;
        txn.open_table(CLAIMS).map_err(storage)?;
        txn.open_table(CLAIM_UNTIL).map_err(storage)?;
        txn.open_table(STATES).map_err(storage)?;
        txn.open_table(TRIES).map_err(storage)?;
        txn.open_table(DEAD).map_err(storage)?;
        txn.open_table(USAGE).map_err(storage)?;
        txn.open_table(VISITS).map_err(storage)?;
        txn.open_table(CALLBACKS).map_err(storage)?;
        txn.open_table(CB_BY_SITE).map_err(storage)?;
        txn.open_table(CB_BY_NUMBER).map_err(storage)?;
        txn.open_table(CB_BANS).map_err(storage)?;
        txn.open_table(CB_LINKS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(EmbeddedCalls { db: Arc::new(db) })
    }

    /// Runs `op` on a blocking thread (redb does file I/O and fsync).
    async fn blocking<R: Send + 'static>(
        &self,
        op: impl FnOnce(&Database) -> Result<R, PoolError> + Send + 'static,
    ) -> Result<R, PoolError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || op(&db)).await.map_err(|e| storage(format!("store task failed: {e}")))?
    }

    async fn get(&self, key: &CallKey) -> Result<Option<Call>, PoolError> {
        let key = key.as_str().to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(CALLS).map_err(storage)?;
            t.get(key.as_str()).map_err(storage)?.map(|v| decode(v.value(), "call")).transpose()
        })
        .await
    }

    async fn caller(&self, site: &SiteId, caller: &Caller) -> Result<Option<CallerMemory>, PoolError> {
        let (site, caller) = (site.to_string(), caller.as_str().to_owned());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(CALLERS).map_err(storage)?;
            t.get((site.as_str(), caller.as_str())).map_err(storage)?.map(|v| decode(v.value(), "caller")).transpose()
        })
        .await
    }

    async fn save(&self, site: Option<&SiteId>, save: Save<'_>) -> Result<bool, PoolError> {
        let site = site_part(site).to_owned();
        let call = save.call.clone();
        let expected = save.expected;
        let caller = save.caller.map(|(c, m, _)| (c.as_str().to_owned(), encode(m)));
        let states: Vec<(String, String)> =
            save.states.iter().map(|(k, d)| (k.job(call.key.as_str()), encode(d))).collect();
        let jobs: Vec<(JobKind, i64)> = save.jobs.iter().map(|(k, t)| (*k, t.as_millis())).collect();
        let hurry: Vec<(JobKind, i64)> = save.hurry.iter().map(|(k, t)| (*k, t.as_millis())).collect();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut calls = txn.open_table(CALLS).map_err(storage)?;
                let stored: Option<Call> =
                    calls.get(call.key.as_str()).map_err(storage)?.map(|v| decode(v.value(), "call")).transpose()?;
                if stored.as_ref().map_or(0, |c| c.version) != expected {
                    return Ok(false);
                }
                calls.insert(call.key.as_str(), encode(&call).as_bytes()).map_err(storage)?;
                if expected == 0 {
                    let mut by_site = txn.open_table(BY_SITE).map_err(storage)?;
                    by_site
                        .insert((site.as_str(), call.started_at.as_millis(), call.key.as_str()), ())
                        .map_err(storage)?;
                }
                if let Some((caller, memory)) = &caller {
                    let mut callers = txn.open_table(CALLERS).map_err(storage)?;
                    callers.insert((site.as_str(), caller.as_str()), memory.as_bytes()).map_err(storage)?;
                }
                let mut st = txn.open_table(STATES).map_err(storage)?;
                for (job, state) in &states {
                    st.insert(job.as_str(), state.as_bytes()).map_err(storage)?;
                }
                let mut queue = txn.open_table(QUEUE).map_err(storage)?;
                let mut due = txn.open_table(QUEUE_DUE).map_err(storage)?;
                for (kind, at) in &jobs {
                    let job = kind.job(call.key.as_str());
                    if let Some(old) = due.insert(job.as_str(), *at).map_err(storage)?.map(|v| v.value()) {
                        queue.remove((kind.as_str(), old, job.as_str())).map_err(storage)?;
                    }
                    queue.insert((kind.as_str(), *at, job.as_str()), ()).map_err(storage)?;
                }
                for (kind, at) in &hurry {
                    let job = kind.job(call.key.as_str());
                    let current = due.get(job.as_str()).map_err(storage)?.map(|v| v.value());
                    if let Some(old) = current.filter(|old| old > at) {
                        queue.remove((kind.as_str(), old, job.as_str())).map_err(storage)?;
                        queue.insert((kind.as_str(), *at, job.as_str()), ()).map_err(storage)?;
                        due.insert(job.as_str(), *at).map_err(storage)?;
                    }
                }
            }
            txn.commit().map_err(storage)?;
            Ok(true)
        })
        .await
    }

    async fn calls(&self, site: Option<&SiteId>, from: Ts, to: Ts, limit: usize) -> Result<Vec<StoredCall>, PoolError> {
        let site = site_part(site).to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let by_site = txn.open_table(BY_SITE).map_err(storage)?;
            let calls = txn.open_table(CALLS).map_err(storage)?;
            let states = txn.open_table(STATES).map_err(storage)?;
            let state = |job: String| -> Result<Option<Delivery>, PoolError> {
                states.get(job.as_str()).map_err(storage)?.map(|v| decode(v.value(), "delivery")).transpose()
            };
            let mut out = Vec::new();
            let range = (site.as_str(), from.as_millis(), "")..(site.as_str(), to.as_millis().saturating_add(1), "");
            for entry in by_site.range(range).map_err(storage)?.take(limit) {
                let (k, _) = entry.map_err(storage)?;
                let key = k.value().2.to_owned();
                let Some(v) = calls.get(key.as_str()).map_err(storage)? else { continue };
                let call: Call = decode(v.value(), "call")?;
                let (ga4, yandex) =
                    (state(JobKind::Ga4.job(call.key.as_str()))?, state(JobKind::Yandex.job(call.key.as_str()))?);
                out.push(StoredCall { call, ga4, yandex });
            }
            Ok(out)
        })
        .await
    }

    async fn claim_raw(&self, kind: JobKind, now: Ts, limit: usize, hold_until: Ts) -> Result<Vec<RawJob>, PoolError> {
        let (now, until) = (now.as_millis(), hold_until.as_millis());
        self.blocking(move |db| {
            let k = kind.as_str();
            let txn = db.begin_write().map_err(storage)?;
            let mut out = Vec::new();
            {
                let mut queue = txn.open_table(QUEUE).map_err(storage)?;
                let mut due = txn.open_table(QUEUE_DUE).map_err(storage)?;
                let mut claims = txn.open_table(CLAIMS).map_err(storage)?;
                let mut claim_until = txn.open_table(CLAIM_UNTIL).map_err(storage)?;
                // Claims whose node died go back to the queue.
                let expired = entries_before(&claims, k, now.saturating_add(1), usize::MAX)?;
                for (at, job) in expired {
                    claims.remove((k, at, job.as_str())).map_err(storage)?;
                    claim_until.remove(job.as_str()).map_err(storage)?;
                    queue.insert((k, now, job.as_str()), ()).map_err(storage)?;
                    due.insert(job.as_str(), now).map_err(storage)?;
                }
                let ready = entries_before(&queue, k, now.saturating_add(1), limit)?;
                let records =
                    txn.open_table(if kind.record() == "call" { CALLS } else { CALLBACKS }).map_err(storage)?;
                let states = txn.open_table(STATES).map_err(storage)?;
                let tries = txn.open_table(TRIES).map_err(storage)?;
                for (at, job) in ready {
                    queue.remove((k, at, job.as_str())).map_err(storage)?;
                    due.remove(job.as_str()).map_err(storage)?;
                    let pending = match states.get(job.as_str()).map_err(storage)? {
                        Some(v) => decode::<Delivery>(v.value(), "delivery")? == Delivery::Pending,
                        None => false,
                    };
                    let key = &job[k.len() + 1..];
                    let Some(record) = records.get(key).map_err(storage)?.map(|v| v.value().to_vec()) else {
                        continue;
                    };
                    if !pending {
                        continue;
                    }
                    claims.insert((k, until, job.as_str()), ()).map_err(storage)?;
                    claim_until.insert(job.as_str(), until).map_err(storage)?;
                    let attempts = tries.get(job.as_str()).map_err(storage)?.map_or(0, |v| v.value());
                    out.push(RawJob { record, attempts });
                }
            }
            txn.commit().map_err(storage)?;
            Ok(out)
        })
        .await
    }

    async fn finish(&self, kind: JobKind, done: &[(String, Finish)], now: Ts) -> Result<(), PoolError> {
        let done: Vec<(String, Finish)> = done.iter().map(|(id, how)| (kind.job(id), how.clone())).collect();
        let now = now.as_millis();
        self.blocking(move |db| {
            let k = kind.as_str();
            let txn = db.begin_write().map_err(storage)?;
            for (job, how) in &done {
                let mut claims = txn.open_table(CLAIMS).map_err(storage)?;
                let mut claim_until = txn.open_table(CLAIM_UNTIL).map_err(storage)?;
                if let Some(at) = claim_until.remove(job.as_str()).map_err(storage)?.map(|v| v.value()) {
                    claims.remove((k, at, job.as_str())).map_err(storage)?;
                }
                let mut queue = txn.open_table(QUEUE).map_err(storage)?;
                let mut due = txn.open_table(QUEUE_DUE).map_err(storage)?;
                if let Some(at) = due.remove(job.as_str()).map_err(storage)?.map(|v| v.value()) {
                    queue.remove((k, at, job.as_str())).map_err(storage)?;
                }
                let mut tries = txn.open_table(TRIES).map_err(storage)?;
                match how {
                    Finish::Retry(at) => {
                        queue.insert((k, at.as_millis(), job.as_str()), ()).map_err(storage)?;
                        due.insert(job.as_str(), at.as_millis()).map_err(storage)?;
                        let n = tries.get(job.as_str()).map_err(storage)?.map_or(0, |v| v.value());
                        tries.insert(job.as_str(), n + 1).map_err(storage)?;
                    }
                    Finish::Done(state) => {
                        let mut states = txn.open_table(STATES).map_err(storage)?;
                        states.insert(job.as_str(), encode(state).as_bytes()).map_err(storage)?;
                        tries.remove(job.as_str()).map_err(storage)?;
                        if matches!(state, Delivery::Dead { .. }) {
                            let mut dead = txn.open_table(DEAD).map_err(storage)?;
                            dead.insert((k, now, job.as_str()), ()).map_err(storage)?;
                        }
                    }
                }
            }
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn depth(&self, kind: JobKind) -> Result<(u64, u64), PoolError> {
        self.blocking(move |db| {
            let k = kind.as_str();
            let txn = db.begin_read().map_err(storage)?;
            let count = |def: TableDefinition<(&str, i64, &str), ()>| -> Result<u64, PoolError> {
                let t = txn.open_table(def).map_err(storage)?;
                Ok(t.range((k, i64::MIN, "")..=(k, i64::MAX, "\u{10ffff}")).map_err(storage)?.count() as u64)
            };
            Ok((count(QUEUE)? + count(CLAIMS)?, count(DEAD)?))
        })
        .await
    }
}

impl EmbeddedCalls {
    async fn trim(&self, sites: &[SiteId], before: Ts, limit: usize) -> Result<usize, PoolError> {
        let mut parts: Vec<String> = sites.iter().map(ToString::to_string).collect();
        parts.push(site_part(None).to_owned());
        let before = before.as_millis();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let removed;
            {
                let mut forgotten = Vec::new();
                {
                    let mut by_site = txn.open_table(BY_SITE).map_err(storage)?;
                    let mut calls = txn.open_table(CALLS).map_err(storage)?;
                    for site in &parts {
                        for (at, key) in entries_before(&by_site, site, before, limit)? {
                            by_site.remove((site.as_str(), at, key.as_str())).map_err(storage)?;
                            calls.remove(key.as_str()).map_err(storage)?;
                            forgotten.push(key);
                        }
                    }
                }
                for key in &forgotten {
                    forget_jobs(&txn, &JobKind::CALL, key)?;
                }
                removed = forgotten.len();
                for site in &parts {
                    EmbeddedCalls::trim_callbacks(&txn, site, before, limit)?;
                }
                let mut visits = txn.open_table(VISITS).map_err(storage)?;
                for site in &parts {
                    let old = entries_before(&visits, site, before, limit)?;
                    for (at, visitor) in old {
                        visits.remove((site.as_str(), at, visitor.as_str())).map_err(storage)?;
                    }
                }
                let mut callers = txn.open_table(CALLERS).map_err(storage)?;
                let stale: Vec<(String, String)> = callers
                    .iter()
                    .map_err(storage)?
                    .filter_map(|e| e.ok())
                    .filter(|(_, v)| {
                        serde_json::from_slice::<CallerMemory>(v.value())
                            .is_ok_and(|m| m.last_call_at.as_millis() < before)
                    })
                    .take(limit)
                    .map(|(k, _)| (k.value().0.to_owned(), k.value().1.to_owned()))
                    .collect();
                for (site, caller) in stale {
                    callers.remove((site.as_str(), caller.as_str())).map_err(storage)?;
                }
            }
            txn.commit().map_err(storage)?;
            Ok(removed)
        })
        .await
    }

    async fn record_visit(&self, site: &SiteId, visit: &VisitRecord) -> Result<(), PoolError> {
        let (site, visit) = (site.to_string(), visit.clone());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut t = txn.open_table(VISITS).map_err(storage)?;
                let key = (site.as_str(), visit.first_seen, visit.visitor.as_str());
                let old: Option<VisitRecord> =
                    t.get(key).map_err(storage)?.map(|v| decode(v.value(), "visit")).transpose()?;
                let merged = match old {
                    Some(o) => VisitRecord {
                        last_active: o.last_active.max(visit.last_active),
                        closed: o.closed.max(visit.closed),
                        tabs: o.tabs.max(visit.tabs),
                        ..visit.clone()
                    },
                    None => visit.clone(),
                };
                t.insert(key, encode(&merged).as_bytes()).map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn visits(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<VisitRecord>, PoolError> {
        let site = site.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(VISITS).map_err(storage)?;
            let range = (site.as_str(), from.as_millis(), "")..(site.as_str(), to.as_millis().saturating_add(1), "");
            t.range(range)
                .map_err(storage)?
                .take(limit)
                .map(|e| e.map_err(storage).and_then(|(_, v)| decode(v.value(), "visit")))
                .collect()
        })
        .await
    }

    async fn record_usage(&self, site: &SiteId, day: &str, leased: u32, exhausted: u64) -> Result<(), PoolError> {
        let (site, day) = (site.to_string(), day.to_owned());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut t = txn.open_table(USAGE).map_err(storage)?;
                let key = (site.as_str(), day.as_str());
                let old: Option<DayUsage> =
                    t.get(key).map_err(storage)?.map(|v| decode(v.value(), "pool usage")).transpose()?;
                let new = match old {
                    Some(u) => DayUsage { peak_leased: u.peak_leased.max(leased), exhausted_last: exhausted, ..u },
                    None => DayUsage { peak_leased: leased, exhausted_first: exhausted, exhausted_last: exhausted },
                };
                t.insert(key, encode(&new).as_bytes()).map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn usage(&self, site: &SiteId, days: &[String]) -> Result<Vec<Option<DayUsage>>, PoolError> {
        let (site, days) = (site.to_string(), days.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(USAGE).map_err(storage)?;
            days.iter()
                .map(|d| {
                    t.get((site.as_str(), d.as_str()))
                        .map_err(storage)?
                        .map(|v| decode(v.value(), "pool usage"))
                        .transpose()
                })
                .collect()
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

struct Scripts {
    save: Script,
    claim: Script,
    finish: Script,
    calls: Script,
    depth: Script,
    usage: Script,
    trim: Script,
    visit_log: Script,
    visits: Script,
    cb_create: Script,
    cb_update: Script,
}

const LUA_LIB: &str = include_str!("lua/lib.lua");
const CB_LUA_LIB: &str = include_str!("../callback/lua/lib.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_LIB}\n{body}"))
}

/// Calls in the cluster's Redis, beside the pool (same connection, same key prefix).
#[derive(Clone)]
pub struct RedisCalls {
    conn: ConnectionManager,
    prefix: String,
    scripts: Arc<Scripts>,
}

impl RedisCalls {
    pub fn new(pool: &RedisPool) -> RedisCalls {
        RedisCalls {
            conn: pool.connection(),
            prefix: pool.prefix().to_owned(),
            scripts: Arc::new(Scripts {
                save: script(include_str!("lua/save.lua")),
                claim: script(include_str!("lua/claim.lua")),
                finish: script(include_str!("lua/finish.lua")),
                calls: script(include_str!("lua/calls.lua")),
                depth: script(include_str!("lua/depth.lua")),
                usage: script(include_str!("lua/usage.lua")),
                trim: script(include_str!("lua/trim.lua")),
                visit_log: script(include_str!("lua/visit_log.lua")),
                visits: script(include_str!("lua/visits.lua")),
                cb_create: script(&format!("{CB_LUA_LIB}\n{}", include_str!("../callback/lua/create.lua"))),
                cb_update: script(&format!("{CB_LUA_LIB}\n{}", include_str!("../callback/lua/update.lua"))),
            }),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    async fn run(&self, script: &Script, args: &[String]) -> Result<Value, PoolError> {
        let mut inv = script.key(&self.prefix);
        for a in args {
            inv.arg(a);
        }
        let mut c = self.conn.clone();
        inv.invoke_async::<Value>(&mut c).await.map_err(classify)
    }

    async fn get(&self, key: &CallKey) -> Result<Option<Call>, PoolError> {
        let mut c = self.conn.clone();
        let json: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.key(&["call", key.as_str()]))
            .arg("j")
            .query_async(&mut c)
            .await
            .map_err(classify)?;
        json.map(|j| decode(&j, "call")).transpose()
    }

    async fn caller(&self, site: &SiteId, caller: &Caller) -> Result<Option<CallerMemory>, PoolError> {
        let mut c = self.conn.clone();
        let json: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.key(&["caller", site.as_str(), caller.as_str()]))
            .query_async(&mut c)
            .await
            .map_err(classify)?;
        json.map(|j| decode(&j, "caller")).transpose()
    }

    async fn save(&self, site: Option<&SiteId>, save: Save<'_>) -> Result<bool, PoolError> {
        let call = save.call;
        let mut args = vec![
            call.key.to_string(),
            save.expected.to_string(),
            call.version.to_string(),
            encode(call),
            site_part(site).to_owned(),
            call.started_at.as_millis().to_string(),
        ];
        match save.caller {
            Some((caller, memory, keep)) => {
                args.extend([caller.as_str().to_owned(), encode(memory), keep.as_millis().max(1).to_string()])
            }
            None => args.extend([String::new(), String::new(), "1".into()]),
        }
        args.push(save.states.len().to_string());
        for (kind, state) in &save.states {
            args.extend([kind.job(call.key.as_str()), encode(state)]);
        }
        for list in [&save.jobs, &save.hurry] {
            args.push(list.len().to_string());
            for (kind, at) in list {
                args.extend([kind.as_str().to_owned(), kind.job(call.key.as_str()), at.as_millis().to_string()]);
            }
        }
        Ok(matches!(self.run(&self.scripts.save, &args).await?, Value::Int(1)))
    }

    async fn calls(&self, site: Option<&SiteId>, from: Ts, to: Ts, limit: usize) -> Result<Vec<StoredCall>, PoolError> {
        let args =
            [site_part(site).to_owned(), from.as_millis().to_string(), to.as_millis().to_string(), limit.to_string()];
        let items = bulk_list(self.run(&self.scripts.calls, &args).await?)?;
        let state = |b: &[u8]| -> Result<Option<Delivery>, PoolError> {
            if b.is_empty() {
                Ok(None)
            } else {
                decode(b, "delivery").map(Some)
            }
        };
        items
            .chunks_exact(3)
            .map(|c| Ok(StoredCall { call: decode(&c[0], "call")?, ga4: state(&c[1])?, yandex: state(&c[2])? }))
            .collect()
    }

    async fn claim_raw(&self, kind: JobKind, now: Ts, limit: usize, hold_until: Ts) -> Result<Vec<RawJob>, PoolError> {
        let args = [
            kind.as_str().to_owned(),
            now.as_millis().to_string(),
            limit.to_string(),
            hold_until.as_millis().to_string(),
            kind.record().to_owned(),
        ];
        let items = bulk_list(self.run(&self.scripts.claim, &args).await?)?;
        Ok(items
            .chunks_exact(3)
            .map(|c| RawJob {
                attempts: std::str::from_utf8(&c[1]).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
                record: c[2].clone(),
            })
            .collect())
    }

    async fn finish(&self, kind: JobKind, done: &[(String, Finish)], now: Ts) -> Result<(), PoolError> {
        let mut args = vec![kind.as_str().to_owned(), now.as_millis().to_string()];
        for (id, how) in done {
            let (state, retry, dead) = match how {
                Finish::Retry(at) => (String::new(), at.as_millis().to_string(), "0"),
                Finish::Done(d) => {
                    (encode(d), String::new(), if matches!(d, Delivery::Dead { .. }) { "1" } else { "0" })
                }
            };
            args.extend([kind.job(id), state, retry, dead.to_owned()]);
        }
        self.run(&self.scripts.finish, &args).await.map(|_| ())
    }

    async fn depth(&self, kind: JobKind) -> Result<(u64, u64), PoolError> {
        match self.run(&self.scripts.depth, &[kind.as_str().to_owned()]).await? {
            Value::Array(v) => match v.as_slice() {
                [Value::Int(a), Value::Int(b)] => Ok((*a as u64, *b as u64)),
                _ => Err(PoolError::Storage("unexpected outbox depth from redis".into())),
            },
            _ => Err(PoolError::Storage("unexpected outbox depth from redis".into())),
        }
    }
}

impl RedisCalls {
    async fn record_visit(&self, site: &SiteId, visit: &VisitRecord) -> Result<(), PoolError> {
        let args = [site.to_string(), visit.first_seen.to_string(), visit.visitor.clone(), encode(visit)];
        self.run(&self.scripts.visit_log, &args).await.map(|_| ())
    }

    async fn visits(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<VisitRecord>, PoolError> {
        let args = [site.to_string(), from.as_millis().to_string(), to.as_millis().to_string(), limit.to_string()];
        bulk_list(self.run(&self.scripts.visits, &args).await?)?.iter().map(|v| decode(v, "visit")).collect()
    }

    async fn trim(&self, sites: &[SiteId], before: Ts, limit: usize) -> Result<usize, PoolError> {
        let mut args = vec![before.as_millis().to_string(), limit.to_string()];
        args.extend(sites.iter().map(ToString::to_string));
        args.push(site_part(None).to_owned());
        match self.run(&self.scripts.trim, &args).await? {
            Value::Int(n) => Ok(usize::try_from(n).unwrap_or(0)),
            other => Err(PoolError::Storage(format!("unexpected answer from redis to trim: {other:?}"))),
        }
    }

    async fn record_usage(&self, site: &SiteId, day: &str, leased: u32, exhausted: u64) -> Result<(), PoolError> {
        let args = [site.to_string(), day.to_owned(), leased.to_string(), exhausted.to_string()];
        self.run(&self.scripts.usage, &args).await.map(|_| ())
    }

    async fn usage(&self, site: &SiteId, days: &[String]) -> Result<Vec<Option<DayUsage>>, PoolError> {
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.key(&["usage", site.as_str()]));
        for d in days {
            cmd.arg(format!("{d}:peak")).arg(format!("{d}:first")).arg(format!("{d}:last"));
        }
        let mut c = self.conn.clone();
        let values: Vec<Option<u64>> = cmd.query_async(&mut c).await.map_err(classify)?;
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

/// A Lua array of strings as byte strings.
fn bulk_list(v: Value) -> Result<Vec<Vec<u8>>, PoolError> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::BulkString(b) => Ok(b),
                Value::SimpleString(s) => Ok(s.into_bytes()),
                Value::Nil => Ok(Vec::new()),
                other => Err(PoolError::Storage(format!("unexpected item from redis: {other:?}"))),
            })
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(PoolError::Storage(format!("unexpected answer from redis: {other:?}"))),
    }
}

/// Opens the calls store that goes with `pool`'s store.
pub fn open(pool: &callpool_pool::Pool, data_dir: Option<&Path>) -> Result<CallStore, PoolError> {
    match (pool, data_dir) {
        (callpool_pool::Pool::Redis(p), _) => Ok(CallStore::Redis(RedisCalls::new(p))),
        (callpool_pool::Pool::Embedded(_), Some(dir)) => EmbeddedCalls::open(dir).map(CallStore::Embedded),
        (callpool_pool::Pool::Embedded(_), None) => {
            Err(PoolError::Invalid("the embedded calls store needs a data directory".into()))
        }
    }
}
