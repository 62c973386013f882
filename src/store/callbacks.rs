//! Callback requests as stored: the record (its status only moves forward: a write with a lower
//! rank is refused), the site's index, the per-number and per-site limit windows and bans, the
//! call keys the PBX reports the outcome under, and the callback's jobs. Creating one checks
//! the limits and writes everything in one atomic step (a Lua script / a redb transaction), so
//! no burst on any number of nodes gets past a limit.

use std::sync::LazyLock;
use std::time::Duration;

use callpool_pool::{SiteId, Ts};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use redis::{Script, Value};

use super::embedded::tables::callbacks::*;
use super::embedded::{entries_before, err, forget_indexed, records_between};
use super::jobs::{self, Planned};
use super::redis::{bulk_list, int, list_args, script, unexpected};
use super::{decode, encode, Backend, Store, StoreError};
use crate::callback::limits::{Limits, Scope, Window};
use crate::callback::{Callback, CallbackId, CallbackStatus};
use crate::calls::CallKey;

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

/// A callback is still open for a repeated request while it is not final and was due at most this
/// long ago (a PBX that never reports the outcome does not block the number for good).
pub const OPEN_FOR: Duration = Duration::from_secs(3600);

fn is_open(cb: &Callback, now: Ts) -> bool {
    !cb.status.is_final() && cb.due_at > now.minus(OPEN_FOR)
}

fn number_key(cb: &Callback) -> String {
    format!("{}|{}", cb.site, cb.number)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn callback_script(body: &str) -> Script {
    script(&format!("{}\n{body}", include_str!("lua/callbacks_lib.lua")))
}

/// The rank of a final status: the scripts compare ranks only.
fn final_rank() -> String {
    CallbackStatus::Completed.rank().to_string()
}

impl Store {
    /// Stores a new callback with its links and jobs (the record and links kept for `keep`),
    /// unless a per-number or per-site limit, or `source`'s share of the site's (counted here,
    /// exactly, across the cluster) is used up.
    pub async fn create_callback(
        &self,
        cb: &Callback,
        limits: &Limits,
        source: Option<&str>,
        jobs: &[Planned],
        keep: Duration,
    ) -> Result<Created, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (cb, limits, jobs, source) = (cb.clone(), limits.clone(), jobs.to_vec(), source.map(str::to_owned));
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let (created, wrote) = create_in(&txn, &cb, &limits, source.as_deref(), &jobs)?;
                    if wrote {
                        txn.commit().map_err(err)?;
                    }
                    Ok(created)
                })
                .await
            }
            Backend::Redis(r) => {
                static CREATE: LazyLock<Script> =
                    LazyLock::new(|| callback_script(include_str!("lua/callbacks_create.lua")));
                let mut args = vec![
                    cb.site.to_string(),
                    cb.number.to_string(),
                    cb.requested_at.as_millis().to_string(),
                    cb.id.to_string(),
                    cb.status.rank().to_string(),
                    encode(cb),
                    millis(keep).max(1).to_string(),
                    millis(limits.number_ban).to_string(),
                    final_rank(),
                    cb.due_at.as_millis().to_string(),
                    cb.requested_at.minus(OPEN_FOR).as_millis().to_string(),
                ];
                window_args(&mut args, &limits.per_number);
                window_args(&mut args, &limits.per_site);
                args.push(source.unwrap_or("").to_owned());
                window_args(&mut args, &limits.per_source());
                link_args(&mut args, cb);
                jobs::plan_args(&mut args, jobs);
                let answer = r.eval(&CREATE, &args).await?;
                created_from(answer)
            }
        }
    }

    /// Writes a callback's new state (unless a later one is stored), with its links and new jobs.
    pub async fn update_callback(
        &self,
        cb: &Callback,
        jobs: &[Planned],
        keep: Duration,
    ) -> Result<Updated, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let (cb, jobs) = (cb.clone(), jobs.to_vec());
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let id = cb.id.as_str();
                    {
                        let mut records = txn.open_table(RECORDS).map_err(err)?;
                        let stored: Option<Callback> =
                            records.get(id).map_err(err)?.map(|v| decode(v.value(), "callback")).transpose()?;
                        let Some(stored) = stored else { return Ok(Updated::Missing) };
                        let (cur, new) = (stored.status.rank(), cb.status.rank());
                        if new < cur || (new == cur && stored.status.is_final()) {
                            return Ok(Updated::Stale);
                        }
                        records.insert(id, encode(&cb).as_bytes()).map_err(err)?;
                    }
                    link_in(&txn, &cb)?;
                    jobs::plan_in(&txn, id, &jobs, true)?;
                    txn.commit().map_err(err)?;
                    Ok(Updated::Written)
                })
                .await
            }
            Backend::Redis(r) => {
                static UPDATE: LazyLock<Script> =
                    LazyLock::new(|| callback_script(include_str!("lua/callbacks_update.lua")));
                let mut args = vec![
                    cb.id.to_string(),
                    cb.status.rank().to_string(),
                    encode(cb),
                    millis(keep).max(1).to_string(),
                    final_rank(),
                ];
                link_args(&mut args, cb);
                jobs::plan_args(&mut args, jobs);
                match int(r.eval(&UPDATE, &args).await?, "callbacks_update")? {
                    1 => Ok(Updated::Written),
                    0 => Ok(Updated::Stale),
                    -1 => Ok(Updated::Missing),
                    n => Err(unexpected("callbacks_update", &Value::Int(n))),
                }
            }
        }
    }

    pub async fn callback(&self, id: &CallbackId) -> Result<Option<Callback>, StoreError> {
        self.callback_by(id.as_str(), false).await
    }

    /// The callback a call reports the outcome of, if it is one.
    pub async fn callback_for_call(&self, key: &CallKey) -> Result<Option<Callback>, StoreError> {
        self.callback_by(key.as_str(), true).await
    }

    /// By id, or (`by_link`) by a call key linked to it.
    async fn callback_by(&self, key: &str, by_link: bool) -> Result<Option<Callback>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let key = key.to_owned();
                db.blocking(move |db| {
                    let txn = db.begin_read().map_err(err)?;
                    let id = if by_link {
                        let links = txn.open_table(LINKS).map_err(err)?;
                        match links.get(key.as_str()).map_err(err)? {
                            Some(v) => v.value().to_owned(),
                            None => return Ok(None),
                        }
                    } else {
                        key
                    };
                    let t = txn.open_table(RECORDS).map_err(err)?;
                    t.get(id.as_str()).map_err(err)?.map(|v| decode(v.value(), "callback")).transpose()
                })
                .await
            }
            Backend::Redis(r) => {
                let id: Option<String> = if by_link {
                    r.query(redis::cmd("GET").arg(r.key(&["cblink", key]))).await?
                } else {
                    Some(key.to_owned())
                };
                let Some(id) = id else { return Ok(None) };
                let json: Option<Vec<u8>> = r.query(redis::cmd("HGET").arg(r.key(&["cb", &id])).arg("j")).await?;
                json.map(|j| decode(&j, "callback")).transpose()
            }
        }
    }

    /// The site's callbacks requested in `[from, to]`, oldest first.
    pub async fn callbacks(&self, site: &SiteId, from: Ts, to: Ts, limit: usize) -> Result<Vec<Callback>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                let site = site.to_string();
                let json =
                    db.blocking(move |db| records_between(db, BY_SITE, RECORDS, &site, (from, to), limit)).await?;
                json.iter().map(|c| decode(c, "callback")).collect()
            }
            Backend::Redis(r) => {
                let ids: Vec<String> = r
                    .query(
                        redis::cmd("ZRANGEBYSCORE")
                            .arg(r.key(&["cbsite", site.as_str()]))
                            .arg(from.as_millis())
                            .arg(to.as_millis())
                            .arg("LIMIT")
                            .arg(0)
                            .arg(limit),
                    )
                    .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGET").arg(r.key(&["cb", id])).arg("j");
                }
                let values: Value = r.query_pipe(&pipe).await?;
                bulk_list(values)?.iter().filter(|j| !j.is_empty()).map(|j| decode(j, "callback")).collect()
            }
        }
    }

    /// Forgets up to `limit` callbacks per site requested before `before`, with every trace of
    /// their jobs of `kinds` (embedded: and their limit entries and links; in Redis those expire).
    pub async fn forget_callbacks(
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
                let before = before.as_millis();
                db.blocking(move |db| {
                    let txn = db.begin_write().map_err(err)?;
                    let forgotten = forget_indexed(&txn, (BY_SITE, RECORDS), &parts, (before, limit))?;
                    for (id, _) in &forgotten {
                        jobs::forget_in(&txn, &kinds, id)?;
                    }
                    {
                        let mut by_number = txn.open_table(BY_NUMBER).map_err(err)?;
                        let mut links = txn.open_table(LINKS).map_err(err)?;
                        for (id, json) in &forgotten {
                            let Some(cb) = json.as_deref().map(|j| decode::<Callback>(j, "callback")).transpose()?
                            else {
                                continue;
                            };
                            let at = cb.requested_at.as_millis();
                            by_number.remove((number_key(&cb).as_str(), at, id.as_str())).map_err(err)?;
                            for l in &cb.links {
                                links.remove(l.as_str()).map_err(err)?;
                            }
                        }
                    }
                    txn.commit().map_err(err)?;
                    Ok(forgotten.len())
                })
                .await
            }
            Backend::Redis(r) => r.forget_records(("cbsite", "cb"), before, limit, kinds, parts).await,
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

/// The embedded create: the checks of `callbacks_create.lua`, in the caller's transaction (which
/// it leaves uncommitted), and whether it wrote anything (a refusal writes nothing but a new ban).
fn create_in(
    txn: &WriteTransaction,
    cb: &Callback,
    limits: &Limits,
    source: Option<&str>,
    jobs: &[Planned],
) -> Result<(Created, bool), StoreError> {
    let now = cb.requested_at.as_millis();
    let nkey = number_key(cb);
    let site = cb.site.as_str();
    let mut bans = txn.open_table(BANS).map_err(err)?;
    if let Some(until) = bans.get(nkey.as_str()).map_err(err)?.map(|v| v.value()) {
        if until > now {
            let retry_after = Duration::from_millis((until - now) as u64);
            return Ok((Created::Refused { scope: Scope::Banned, retry_after }, false));
        }
    }
    let longest = millis(limits.number_memory()).max(1);
    let mut by_number = txn.open_table(BY_NUMBER).map_err(err)?;
    let times = |t: &redb::Table<(&str, i64, &str), ()>, part: &str, since: i64| -> Result<Vec<i64>, StoreError> {
        t.range((part, since.saturating_add(1), "")..(part, i64::MAX, ""))
            .map_err(err)?
            .map(|e| e.map(|(k, _)| k.value().1).map_err(err))
            .collect()
    };
    let last = by_number
        .range((nkey.as_str(), i64::MIN, "")..(nkey.as_str(), i64::MAX, ""))
        .map_err(err)?
        .next_back()
        .transpose()
        .map_err(err)?
        .map(|(k, _)| k.value().2.to_owned());
    if let Some(last) = last {
        let records = txn.open_table(RECORDS).map_err(err)?;
        let prev: Option<Callback> =
            records.get(last.as_str()).map_err(err)?.map(|v| decode(v.value(), "callback")).transpose()?;
        if prev.is_some_and(|p| is_open(&p, cb.requested_at)) {
            return Ok((Created::Open(CallbackId::parse(&last).unwrap_or_else(|| cb.id.clone())), false));
        }
    }
    let number_times = times(&by_number, &nkey, now - longest)?;
    if let Some((retry_after, period)) = used_up(&number_times, &limits.per_number, now) {
        if period == limits.number_memory() && !limits.number_ban.is_zero() {
            bans.insert(nkey.as_str(), now + millis(limits.number_ban)).map_err(err)?;
            return Ok((Created::Refused { scope: Scope::Banned, retry_after: limits.number_ban }, true));
        }
        return Ok((Created::Refused { scope: Scope::Number, retry_after }, false));
    }
    let site_longest = millis(limits.site_memory());
    let mut by_site = txn.open_table(BY_SITE).map_err(err)?;
    let site_times = times(&by_site, site, now - site_longest)?;
    if let Some((retry_after, _)) = used_up(&site_times, &limits.per_site, now) {
        return Ok((Created::Refused { scope: Scope::Site, retry_after }, false));
    }
    // A source's requests sit beside the numbers' (`src:` never begins a phone number).
    let skey = source.map(|s| format!("{site}|src:{s}"));
    if let Some(skey) = &skey {
        let source_times = times(&by_number, skey, now - site_longest)?;
        if let Some((retry_after, _)) = used_up(&source_times, &limits.per_source(), now) {
            return Ok((Created::Refused { scope: Scope::Ip, retry_after }, false));
        }
    }
    let id = cb.id.as_str();
    txn.open_table(RECORDS).map_err(err)?.insert(id, encode(cb).as_bytes()).map_err(err)?;
    by_number.insert((nkey.as_str(), now, id), ()).map_err(err)?;
    for (at, old) in entries_before(&by_number, &nkey, now - longest + 1, usize::MAX)? {
        by_number.remove((nkey.as_str(), at, old.as_str())).map_err(err)?;
    }
    if let Some(skey) = &skey {
        by_number.insert((skey.as_str(), now, id), ()).map_err(err)?;
        for (at, old) in entries_before(&by_number, skey, now - site_longest + 1, usize::MAX)? {
            by_number.remove((skey.as_str(), at, old.as_str())).map_err(err)?;
        }
    }
    by_site.insert((site, now, id), ()).map_err(err)?;
    drop((bans, by_number, by_site));
    link_in(txn, cb)?;
    jobs::plan_in(txn, id, jobs, false)?;
    Ok((Created::Stored, true))
}

/// Links the callback's call keys to it, in the caller's transaction.
fn link_in(txn: &WriteTransaction, cb: &Callback) -> Result<(), StoreError> {
    let mut links = txn.open_table(LINKS).map_err(err)?;
    for l in &cb.links {
        links.insert(l.as_str(), cb.id.as_str()).map_err(err)?;
    }
    Ok(())
}

fn link_args(args: &mut Vec<String>, cb: &Callback) {
    let links: Vec<&str> = cb.links.iter().map(CallKey::as_str).collect();
    list_args(args, &links);
}

fn window_args(args: &mut Vec<String>, windows: &[Window]) {
    args.push(windows.len().to_string());
    for w in windows {
        args.extend([w.count.to_string(), millis(w.period).to_string()]);
    }
}

/// What `callbacks_create.lua` answered.
fn created_from(answer: Value) -> Result<Created, StoreError> {
    let Value::Array(v) = &answer else { return Err(unexpected("callbacks_create", &answer)) };
    match v.as_slice() {
        [Value::BulkString(open), Value::BulkString(id)] if open.as_slice() == b"open" => {
            let id = String::from_utf8_lossy(id);
            CallbackId::parse(&id)
                .map(Created::Open)
                .ok_or_else(|| StoreError::Failed(format!("unreadable callback id from redis: {id:?}")))
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
                "source" => Ok(Created::Refused { scope: Scope::Ip, retry_after }),
                _ => Err(unexpected("callbacks_create", &answer)),
            }
        }
        _ => Err(unexpected("callbacks_create", &answer)),
    }
}
