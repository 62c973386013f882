//! Callback requests in the calls store: the record (its status only moves forward), the site's
//! index, the per-number and per-site limit windows and bans, the call keys the PBX reports the
//! outcome under, and the callback's outbox jobs. Creating one checks the limits and writes
//! everything in one atomic step (a Lua script / a redb transaction).

use std::time::Duration;

use callpool_pool::{PoolError, SiteId, Ts};
use redb::{ReadableDatabase, ReadableTable};
use redis::Value;

use super::{
    bulk_list, decode, encode, storage, CallStore, EmbeddedCalls, JobKind, RawJob, RedisCalls, CALLBACKS, CB_BANS,
    CB_BY_NUMBER, CB_BY_SITE, CB_LINKS, QUEUE, QUEUE_DUE, STATES,
};
use crate::callback::limits::{Limits, Scope, Window};
use crate::callback::{Callback, CallbackId};
use crate::calls::{CallKey, Delivery};

/// What creating a callback came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    Stored,
    /// The number's last request is still open (not final, due recently or later): that one stands.
    Open(CallbackId),
    /// A limit is used up; the number (or site) may ask again after this long.
    Refused {
        scope: Scope,
        retry_after: Duration,
    },
}

/// What an update came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Updated {
    Written,
    /// A later status is already stored (nothing written).
    Stale,
    /// No such callback (forgotten, or never stored).
    Missing,
}

/// A claimed callback job.
#[derive(Clone, Debug)]
pub struct CallbackJob {
    pub kind: JobKind,
    pub callback: Callback,
    pub attempts: u32,
}

/// A callback is still open for a repeated request while it is not final and was due at most this
/// long ago (a PBX that never reports the outcome does not block the number for good).
pub const OPEN_FOR: Duration = Duration::from_secs(3600);

fn is_open(cb: &Callback, now: Ts) -> bool {
    !cb.status.is_final() && cb.due_at > now.minus(OPEN_FOR)
}

/// Everything one write of a callback carries besides the record (whose `links` are written
/// with it).
pub struct Extra<'a> {
    pub jobs: &'a [(JobKind, Ts)],
    /// How long the record and its links are kept.
    pub keep: Duration,
}

fn pending() -> String {
    encode(&Delivery::Pending)
}

fn number_key(cb: &Callback) -> String {
    format!("{}|{}", cb.site, cb.number)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl CallStore {
    /// Stores a new callback with its links and jobs, unless a per-number or per-site limit
    /// (counted here, exactly, across the cluster) is used up.
    pub async fn create_callback(
        &self,
        cb: &Callback,
        limits: &Limits,
        extra: Extra<'_>,
    ) -> Result<Created, PoolError> {
        match self {
            CallStore::Embedded(s) => s.create_callback(cb, limits, extra).await,
            CallStore::Redis(s) => s.create_callback(cb, limits, extra).await,
        }
    }

    /// Writes a callback's new state (unless a later one is stored), with its links and new jobs.
    pub async fn update_callback(&self, cb: &Callback, extra: Extra<'_>) -> Result<Updated, PoolError> {
        match self {
            CallStore::Embedded(s) => s.update_callback(cb, extra).await,
            CallStore::Redis(s) => s.update_callback(cb, extra).await,
        }
    }

    pub async fn callback(&self, id: &CallbackId) -> Result<Option<Callback>, PoolError> {
        match self {
            CallStore::Embedded(s) => s.callback(id.as_str().to_owned(), false).await,
            CallStore::Redis(s) => s.callback(id.as_str(), false).await,
        }
    }

    /// The callback a call reports the outcome of, if it is one.
    pub async fn callback_for_call(&self, key: &CallKey) -> Result<Option<Callback>, PoolError> {
        match self {
            CallStore::Embedded(s) => s.callback(key.as_str().to_owned(), true).await,
            CallStore::Redis(s) => s.callback(key.as_str(), true).await,
        }
    }

    /// Claims up to `limit` due callback jobs of `kind`; each is held until `hold_until`.
    pub async fn claim_callbacks(
        &self,
        kind: JobKind,
        now: Ts,
        limit: usize,
        hold_until: Ts,
    ) -> Result<Vec<CallbackJob>, PoolError> {
        let raw: Vec<RawJob> = match self {
            CallStore::Embedded(s) => s.claim_raw(kind, now, limit, hold_until).await?,
            CallStore::Redis(s) => s.claim_raw(kind, now, limit, hold_until).await?,
        };
        raw.into_iter()
            .map(|j| Ok(CallbackJob { kind, callback: decode(&j.record, "callback")?, attempts: j.attempts }))
            .collect()
    }

    /// The site's callbacks requested in `[from, to]`, oldest first.
    pub async fn callbacks(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<Callback>, PoolError> {
        match self {
            CallStore::Embedded(s) => s.callbacks(site, from, to, limit).await,
            CallStore::Redis(s) => s.callbacks(site, from, to, limit).await,
        }
    }
}

/// The first window of `windows` used up by `times` (request times, ms, ascending) at `now`:
/// (retry after, the window's period).
fn used_up(times: &[i64], windows: &[Window], now: i64) -> Option<(Duration, Duration)> {
    windows.iter().find_map(|w| {
        let period = millis(w.period);
        let inside: Vec<i64> = times.iter().copied().filter(|t| *t > now - period).collect();
        let used = inside.len();
        let count = w.count as usize;
        (used >= count).then(|| {
            let oldest = inside[used - count];
            (Duration::from_millis(u64::try_from(oldest + period - now).unwrap_or(1).max(1)), w.period)
        })
    })
}

impl EmbeddedCalls {
    async fn create_callback(&self, cb: &Callback, limits: &Limits, extra: Extra<'_>) -> Result<Created, PoolError> {
        let cb = cb.clone();
        let limits = limits.clone();
        let links: Vec<String> = cb.links.iter().map(|l| l.as_str().to_owned()).collect();
        let jobs: Vec<(JobKind, i64)> = extra.jobs.iter().map(|(k, t)| (*k, t.as_millis())).collect();
        self.blocking(move |db| {
            let now = cb.requested_at.as_millis();
            let nkey = number_key(&cb);
            let site = cb.site.as_str();
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut bans = txn.open_table(CB_BANS).map_err(storage)?;
                if let Some(until) = bans.get(nkey.as_str()).map_err(storage)?.map(|v| v.value()) {
                    if until > now {
                        let retry_after = Duration::from_millis((until - now) as u64);
                        return Ok(Created::Refused { scope: Scope::Banned, retry_after });
                    }
                }
                let longest = millis(limits.number_memory()).max(1);
                let mut by_number = txn.open_table(CB_BY_NUMBER).map_err(storage)?;
                let times =
                    |t: &redb::Table<(&str, i64, &str), ()>, part: &str, since: i64| -> Result<Vec<i64>, PoolError> {
                        t.range((part, since.saturating_add(1), "")..(part, i64::MAX, ""))
                            .map_err(storage)?
                            .map(|e| e.map(|(k, _)| k.value().1).map_err(storage))
                            .collect()
                    };
                let last = by_number
                    .range((nkey.as_str(), i64::MIN, "")..(nkey.as_str(), i64::MAX, ""))
                    .map_err(storage)?
                    .next_back()
                    .transpose()
                    .map_err(storage)?
                    .map(|(k, _)| k.value().2.to_owned());
                if let Some(last) = last {
                    let records = txn.open_table(CALLBACKS).map_err(storage)?;
                    let prev: Option<Callback> = records
                        .get(last.as_str())
                        .map_err(storage)?
                        .map(|v| decode(v.value(), "callback"))
                        .transpose()?;
                    if prev.is_some_and(|p| is_open(&p, cb.requested_at)) {
                        return Ok(Created::Open(CallbackId::parse(&last).unwrap_or_else(|| cb.id.clone())));
                    }
                }
                let number_times = times(&by_number, &nkey, now - longest)?;
                if let Some((retry_after, period)) = used_up(&number_times, &limits.per_number, now) {
                    if period == limits.number_memory() && !limits.number_ban.is_zero() {
                        bans.insert(nkey.as_str(), now + millis(limits.number_ban)).map_err(storage)?;
                        drop(bans);
                        drop(by_number);
                        txn.commit().map_err(storage)?;
                        return Ok(Created::Refused { scope: Scope::Banned, retry_after: limits.number_ban });
                    }
                    return Ok(Created::Refused { scope: Scope::Number, retry_after });
                }
                let site_longest = limits.per_site.iter().map(|w| millis(w.period)).max().unwrap_or(0);
                let mut by_site = txn.open_table(CB_BY_SITE).map_err(storage)?;
                let site_times = times(&by_site, site, now - site_longest)?;
                if let Some((retry_after, _)) = used_up(&site_times, &limits.per_site, now) {
                    return Ok(Created::Refused { scope: Scope::Site, retry_after });
                }
                let id = cb.id.as_str();
                txn.open_table(CALLBACKS).map_err(storage)?.insert(id, encode(&cb).as_bytes()).map_err(storage)?;
                by_number.insert((nkey.as_str(), now, id), ()).map_err(storage)?;
                for (at, old) in super::entries_before(&by_number, &nkey, now - longest + 1, usize::MAX)? {
                    by_number.remove((nkey.as_str(), at, old.as_str())).map_err(storage)?;
                }
                by_site.insert((site, now, id), ()).map_err(storage)?;
                let mut link_table = txn.open_table(CB_LINKS).map_err(storage)?;
                for l in &links {
                    link_table.insert(l.as_str(), id).map_err(storage)?;
                }
                queue_jobs(&txn, id, &jobs)?;
            }
            txn.commit().map_err(storage)?;
            Ok(Created::Stored)
        })
        .await
    }

    async fn update_callback(&self, cb: &Callback, extra: Extra<'_>) -> Result<Updated, PoolError> {
        let cb = cb.clone();
        let links: Vec<String> = cb.links.iter().map(|l| l.as_str().to_owned()).collect();
        let jobs: Vec<(JobKind, i64)> = extra.jobs.iter().map(|(k, t)| (*k, t.as_millis())).collect();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let id = cb.id.as_str();
            {
                let mut records = txn.open_table(CALLBACKS).map_err(storage)?;
                let stored: Option<Callback> =
                    records.get(id).map_err(storage)?.map(|v| decode(v.value(), "callback")).transpose()?;
                let Some(stored) = stored else { return Ok(Updated::Missing) };
                let (cur, new) = (stored.status.rank(), cb.status.rank());
                if new < cur || (new == cur && stored.status.is_final()) {
                    return Ok(Updated::Stale);
                }
                records.insert(id, encode(&cb).as_bytes()).map_err(storage)?;
                let mut link_table = txn.open_table(CB_LINKS).map_err(storage)?;
                for l in &links {
                    link_table.insert(l.as_str(), id).map_err(storage)?;
                }
                let states = txn.open_table(STATES).map_err(storage)?;
                let fresh: Vec<(JobKind, i64)> = jobs
                    .iter()
                    .copied()
                    .filter(|(k, _)| states.get(k.job(id).as_str()).ok().flatten().is_none())
                    .collect();
                drop(states);
                queue_jobs(&txn, id, &fresh)?;
            }
            txn.commit().map_err(storage)?;
            Ok(Updated::Written)
        })
        .await
    }

    /// By id, or (`by_link`) by a call key linked to it.
    async fn callback(&self, key: String, by_link: bool) -> Result<Option<Callback>, PoolError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let id = if by_link {
                let links = txn.open_table(CB_LINKS).map_err(storage)?;
                match links.get(key.as_str()).map_err(storage)? {
                    Some(v) => v.value().to_owned(),
                    None => return Ok(None),
                }
            } else {
                key
            };
            let t = txn.open_table(CALLBACKS).map_err(storage)?;
            t.get(id.as_str()).map_err(storage)?.map(|v| decode(v.value(), "callback")).transpose()
        })
        .await
    }

    async fn callbacks(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<Callback>, PoolError> {
        let site = site.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let index = txn.open_table(CB_BY_SITE).map_err(storage)?;
            let records = txn.open_table(CALLBACKS).map_err(storage)?;
            let mut out = Vec::new();
            let range = (site.as_str(), from.as_millis(), "")..(site.as_str(), to.as_millis().saturating_add(1), "");
            for entry in index.range(range).map_err(storage)?.take(limit) {
                let (k, _) = entry.map_err(storage)?;
                if let Some(v) = records.get(k.value().2).map_err(storage)? {
                    out.push(decode(v.value(), "callback")?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Forgets the callbacks of `site` requested before `before` (up to `limit`), with their jobs
    /// and links, in the caller's transaction.
    pub(super) fn trim_callbacks(
        txn: &redb::WriteTransaction,
        site: &str,
        before: i64,
        limit: usize,
    ) -> Result<(), PoolError> {
        let mut forgotten = Vec::new();
        {
            let mut index = txn.open_table(CB_BY_SITE).map_err(storage)?;
            let mut by_number = txn.open_table(CB_BY_NUMBER).map_err(storage)?;
            let mut records = txn.open_table(CALLBACKS).map_err(storage)?;
            let mut links = txn.open_table(CB_LINKS).map_err(storage)?;
            for (at, id) in super::entries_before(&index, site, before, limit)? {
                index.remove((site, at, id.as_str())).map_err(storage)?;
                let cb: Option<Callback> =
                    records.remove(id.as_str()).map_err(storage)?.map(|v| decode(v.value(), "callback")).transpose()?;
                if let Some(cb) = cb {
                    by_number.remove((number_key(&cb).as_str(), at, id.as_str())).map_err(storage)?;
                    for l in &cb.links {
                        links.remove(l.as_str()).map_err(storage)?;
                    }
                }
                forgotten.push(id);
            }
        }
        for id in &forgotten {
            super::forget_jobs(txn, &JobKind::CALLBACK, id)?;
        }
        Ok(())
    }
}

/// Queues `jobs` of callback `id` as pending, in the caller's transaction.
fn queue_jobs(txn: &redb::WriteTransaction, id: &str, jobs: &[(JobKind, i64)]) -> Result<(), PoolError> {
    let mut states = txn.open_table(STATES).map_err(storage)?;
    let mut queue = txn.open_table(QUEUE).map_err(storage)?;
    let mut due = txn.open_table(QUEUE_DUE).map_err(storage)?;
    let pending = pending();
    for (kind, at) in jobs {
        let job = kind.job(id);
        states.insert(job.as_str(), pending.as_bytes()).map_err(storage)?;
        if let Some(old) = due.insert(job.as_str(), *at).map_err(storage)?.map(|v| v.value()) {
            queue.remove((kind.as_str(), old, job.as_str())).map_err(storage)?;
        }
        queue.insert((kind.as_str(), *at, job.as_str()), ()).map_err(storage)?;
    }
    Ok(())
}

fn push_extra(args: &mut Vec<String>, cb: &Callback, extra: &Extra<'_>) {
    args.push(cb.links.len().to_string());
    args.extend(cb.links.iter().map(|l| l.as_str().to_owned()));
    args.push(extra.jobs.len().to_string());
    for (kind, at) in extra.jobs {
        args.extend([kind.as_str().to_owned(), at.as_millis().to_string()]);
    }
}

fn push_windows(args: &mut Vec<String>, windows: &[Window]) {
    args.push(windows.len().to_string());
    for w in windows {
        args.extend([w.count.to_string(), millis(w.period).to_string()]);
    }
}

impl RedisCalls {
    async fn create_callback(&self, cb: &Callback, limits: &Limits, extra: Extra<'_>) -> Result<Created, PoolError> {
        let mut args = vec![
            cb.site.to_string(),
            cb.number.to_string(),
            cb.requested_at.as_millis().to_string(),
            cb.id.to_string(),
            cb.status.rank().to_string(),
            encode(cb),
            millis(extra.keep).max(1).to_string(),
            millis(limits.number_ban).to_string(),
            pending(),
            cb.due_at.as_millis().to_string(),
            cb.requested_at.minus(OPEN_FOR).as_millis().to_string(),
        ];
        push_windows(&mut args, &limits.per_number);
        push_windows(&mut args, &limits.per_site);
        push_extra(&mut args, cb, &extra);
        match self.run(&self.scripts.cb_create, &args).await? {
            Value::Array(v) => match v.as_slice() {
                [Value::BulkString(open), Value::BulkString(id)] if open.as_slice() == b"open" => {
                    let id = String::from_utf8_lossy(id);
                    CallbackId::parse(&id)
                        .map(Created::Open)
                        .ok_or_else(|| PoolError::Storage(format!("unreadable callback id from redis: {id:?}")))
                }
                [scope, Value::Int(ms)] => {
                    let scope = match scope {
                        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        Value::SimpleString(s) => s.clone(),
                        _ => String::new(),
                    };
                    let retry_after = Duration::from_millis(u64::try_from(*ms).unwrap_or(0));
                    match scope.as_str() {
                        "ok" => Ok(Created::Stored),
                        "banned" => Ok(Created::Refused { scope: Scope::Banned, retry_after }),
                        "number" => Ok(Created::Refused { scope: Scope::Number, retry_after }),
                        "site" => Ok(Created::Refused { scope: Scope::Site, retry_after }),
                        other => Err(PoolError::Storage(format!("unexpected callback limit from redis: {other:?}"))),
                    }
                }
                _ => Err(PoolError::Storage("unexpected answer from redis to cb_create".into())),
            },
            other => Err(PoolError::Storage(format!("unexpected answer from redis to cb_create: {other:?}"))),
        }
    }

    async fn update_callback(&self, cb: &Callback, extra: Extra<'_>) -> Result<Updated, PoolError> {
        let mut args = vec![
            cb.id.to_string(),
            cb.status.rank().to_string(),
            encode(cb),
            millis(extra.keep).max(1).to_string(),
            pending(),
        ];
        push_extra(&mut args, cb, &extra);
        match self.run(&self.scripts.cb_update, &args).await? {
            Value::Int(1) => Ok(Updated::Written),
            Value::Int(0) => Ok(Updated::Stale),
            Value::Int(-1) => Ok(Updated::Missing),
            other => Err(PoolError::Storage(format!("unexpected answer from redis to cb_update: {other:?}"))),
        }
    }

    async fn callback(&self, key: &str, by_link: bool) -> Result<Option<Callback>, PoolError> {
        let mut c = self.conn.clone();
        let id: Option<String> = if by_link {
            redis::cmd("GET")
                .arg(self.key(&["cblink", key]))
                .query_async(&mut c)
                .await
                .map_err(callpool_pool::redis_store::classify)?
        } else {
            Some(key.to_owned())
        };
        let Some(id) = id else { return Ok(None) };
        let json: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.key(&["cb", &id]))
            .arg("j")
            .query_async(&mut c)
            .await
            .map_err(callpool_pool::redis_store::classify)?;
        json.map(|j| decode(&j, "callback")).transpose()
    }

    async fn callbacks(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<Callback>, PoolError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.key(&["cbsite", site.as_str()]))
            .arg(from.as_millis())
            .arg(to.as_millis())
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await
            .map_err(callpool_pool::redis_store::classify)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGET").arg(self.key(&["cb", id])).arg("j");
        }
        let values: Value = pipe.query_async(&mut c).await.map_err(callpool_pool::redis_store::classify)?;
        bulk_list(values)?.iter().filter(|j| !j.is_empty()).map(|j| decode(j, "callback")).collect()
    }
}
