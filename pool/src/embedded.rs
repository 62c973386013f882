//! The embedded store: the pure rules in memory, every change written to a redb file in the
//! data dir before the operation answers.
//!
//! redb is a pure-Rust, ACID, copy-on-write B-tree store: a commit is durable when it returns
//! (fsync), a crash leaves the last committed state, and it builds without a C toolchain.
//! If a write fails, the in-memory state is reloaded from the file, so memory never runs
//! ahead of what is stored.
//!
//! Writes go through one writer thread that commits in groups: operations that arrive while a
//! commit is on the disk are applied together and made durable by the next single commit, and
//! each is answered only after that commit returned. Under concurrent load this costs one
//! fsync per group instead of one per operation.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::rules::{Due, Grant, NumberState, PoolSpec, PoolState, SiteState, SiteStatus, StoredParts, Viewed};
use crate::types::{Lease, PhoneNumber, SessionAttrs, SiteId, Ts, Visit, VisitorId};
use crate::PoolError;

const NUMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("numbers");
const SITES: TableDefinition<&str, &[u8]> = TableDefinition::new("sites");
const LEASES: TableDefinition<u64, &[u8]> = TableDefinition::new("leases");
const VISITS: TableDefinition<&str, &[u8]> = TableDefinition::new("visits");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_NEXT_LEASE_ID: &str = "next_lease_id";
const META_HISTORY_MS: &str = "history_ms";
const META_CLOCK_MS: &str = "clock_ms";

/// The file name of the pool inside the data dir.
pub const FILE_NAME: &str = "pool.redb";

/// The most operations one commit makes durable.
const MAX_GROUP: usize = 512;

struct Inner {
    state: PoolState,
    db: Database,
}

/// An operation for the writer thread: it applies itself to the state and hands back what
/// answers the caller once the commit's outcome is known.
type Job = Box<dyn FnOnce(&mut PoolState) -> Finish + Send>;
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The pool in one process, persisted to `<data dir>/pool.redb`. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedPool {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<Mutex<Inner>>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Shared {
    /// Closes the queue and waits for the writer, so the file is closed when the last clone goes.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread: takes every job queued, applies them, commits once, answers them all.
fn writer(inner: Arc<Mutex<Inner>>, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut guard = inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let inner = &mut *guard;
        let finishers: Vec<Finish> = group.into_iter().map(|job| job(&mut inner.state)).collect();
        let outcome = persist(&mut inner.state, &inner.db).map_err(|e| {
            // Memory ran ahead of the file: go back to what is stored.
            match load(&inner.db) {
                Ok(state) => inner.state = state,
                Err(reload) => tracing::error!(error = %reload, "The pool could not be reloaded after a failed write."),
            }
            e.to_string()
        });
        drop(guard);
        for finish in finishers {
            finish(outcome.clone());
        }
    }
}

fn storage(e: impl std::fmt::Display) -> PoolError {
    PoolError::Storage(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, PoolError> {
    serde_json::to_vec(v).map_err(storage)
}

fn decode<T: DeserializeOwned>(what: &str, key: &str, bytes: &[u8]) -> Result<T, PoolError> {
    serde_json::from_slice(bytes).map_err(|e| PoolError::Storage(format!("stored {what} {key} is unreadable: {e}")))
}

/// `dir/name`, made ready for a store that holds callers' numbers and visitors' sessions: a
/// directory this function creates is readable by its owner only (0700), and the file is created
/// 0600, or narrowed to 0600 when an earlier version left it wider. (Elsewhere than Unix the
/// platform's defaults stay.)
pub fn owner_only_file(dir: &Path, name: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join(name);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(path)
}

impl EmbeddedPool {
    /// Opens (or creates) the pool in `data_dir`. Fails if another process holds the file.
    pub fn open(data_dir: &Path) -> Result<EmbeddedPool, PoolError> {
        let path = owner_only_file(data_dir, FILE_NAME)
            .map_err(|e| PoolError::Storage(format!("cannot create {}: {e}", data_dir.join(FILE_NAME).display())))?;
        let db =
            Database::create(&path).map_err(|e| PoolError::Storage(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(NUMBERS).map_err(storage)?;
        txn.open_table(SITES).map_err(storage)?;
        txn.open_table(LEASES).map_err(storage)?;
        txn.open_table(VISITS).map_err(storage)?;
        txn.open_table(META).map_err(storage)?;
        txn.commit().map_err(storage)?;
        let state = load(&db)?;
        let inner = Arc::new(Mutex::new(Inner { state, db }));
        let (tx, rx) = mpsc::channel::<Job>();
        let for_writer = inner.clone();
        let writer = std::thread::Builder::new()
            .name("callpool-pool-writer".into())
            .spawn(move || writer(for_writer, rx))
            .map_err(|e| PoolError::Storage(format!("cannot start the pool writer thread: {e}")))?;
        Ok(EmbeddedPool { shared: Arc::new(Shared { inner, jobs: Some(tx), writer: Some(writer) }) })
    }

    /// Runs `op` on the state in the writer thread and answers once what it changed is on disk.
    async fn write<R: Send + 'static>(
        &self,
        op: impl FnOnce(&mut PoolState) -> R + Send + 'static,
    ) -> Result<R, PoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |state| {
            let out = op(state);
            Box::new(move |committed: Result<(), String>| {
                let _ = tx.send(committed.map(|()| out));
            })
        });
        let jobs = self.shared.jobs.as_ref().expect("the queue closes only when the pool is dropped");
        jobs.send(job).map_err(|_| PoolError::Storage("the pool writer has stopped".into()))?;
        rx.await.map_err(|_| PoolError::Storage("the pool writer has stopped".into()))?.map_err(PoolError::Storage)
    }

    fn read<R>(&self, op: impl FnOnce(&PoolState) -> R) -> R {
        let guard = self.shared.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        op(&guard.state)
    }

    pub async fn configure(&self, spec: &PoolSpec, now: Ts) -> Result<(), PoolError> {
        let spec = spec.clone();
        self.write(move |s| s.configure(&spec, now)).await
    }

    pub async fn acquire(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
    ) -> Result<Grant, PoolError> {
        let (site, visitor, attrs) = (site.clone(), visitor.clone(), attrs.clone());
        let s = site.clone();
        self.write(move |p| p.acquire(&s, &visitor, &attrs, now)).await?.ok_or(PoolError::UnknownSite(site))
    }

    pub async fn touch(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        let (site, visitor) = (site.clone(), visitor.clone());
        self.write(move |p| p.touch(&site, &visitor, now)).await
    }

    pub async fn leave(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        let (site, visitor) = (site.clone(), visitor.clone());
        self.write(move |p| p.leave(&site, &visitor, now)).await
    }

    pub async fn view(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Viewed, PoolError> {
        let (s, visitor) = (site.clone(), visitor.clone());
        self.write(move |p| p.view(&s, &visitor, now)).await?.ok_or_else(|| PoolError::UnknownSite(site.clone()))
    }

    pub async fn acquire_due(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
        delay: Duration,
    ) -> Result<Due, PoolError> {
        let (s, visitor, attrs) = (site.clone(), visitor.clone(), attrs.clone());
        self.write(move |p| p.acquire_due(&s, &visitor, &attrs, now, delay))
            .await?
            .ok_or_else(|| PoolError::UnknownSite(site.clone()))
    }

    pub async fn current_visit(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Visit>, PoolError> {
        Ok(self.read(|p| p.current_visit(site, visitor, now)))
    }

    pub async fn current(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        Ok(self.read(|p| p.current(site, visitor, now)))
    }

    pub async fn reap(&self, now: Ts) -> Result<Vec<Lease>, PoolError> {
        self.write(move |p| p.reap(now)).await
    }

    pub async fn shrink(&self, now: Ts) -> Result<Vec<(SiteId, PhoneNumber)>, PoolError> {
        let mut out = self.write(move |p| p.shrink(now)).await?;
        out.sort();
        Ok(out)
    }

    pub async fn holder_at(&self, number: &PhoneNumber, t: Ts) -> Result<Option<Lease>, PoolError> {
        Ok(self.read(|p| p.holder_at(number, t)))
    }

    pub async fn last_holders(
        &self,
        number: &PhoneNumber,
        before: Ts,
        window: Duration,
    ) -> Result<Vec<Lease>, PoolError> {
        Ok(self.read(|p| p.last_holders(number, before, window)))
    }

    pub async fn leases_before(&self, number: &PhoneNumber, at: Ts, window: Duration) -> Result<Vec<Lease>, PoolError> {
        Ok(self.read(|p| p.leases_before(number, at, window)))
    }

    pub async fn status(&self, site: &SiteId, now: Ts) -> Result<Option<SiteStatus>, PoolError> {
        Ok(self.read(|p| p.status(site, now)))
    }

    pub async fn sites(&self) -> Result<Vec<SiteId>, PoolError> {
        Ok(self.read(|p| p.site_ids()))
    }

    pub async fn knows_site(&self, site: &SiteId) -> Result<bool, PoolError> {
        Ok(self.read(|p| p.knows_site(site)))
    }
}

/// Site and visitor ids never contain a tab.
const VISIT_KEY_SEP: char = '\t';

fn visit_key(site: &SiteId, visitor: &VisitorId) -> String {
    format!("{site}{VISIT_KEY_SEP}{visitor}")
}

/// Writes the keys the last operation changed, in one transaction.
fn persist(state: &mut PoolState, db: &Database) -> Result<(), PoolError> {
    let changes = state.take_changes();
    if changes.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut numbers = txn.open_table(NUMBERS).map_err(storage)?;
        for n in &changes.numbers {
            match state.number(n) {
                Some(s) => numbers.insert(n.as_str(), encode(s)?.as_slice()).map_err(storage)?,
                None => numbers.remove(n.as_str()).map_err(storage)?,
            };
        }
        let mut sites = txn.open_table(SITES).map_err(storage)?;
        for s in &changes.sites {
            if let Some(site) = state.site(s) {
                sites.insert(s.as_str(), encode(site)?.as_slice()).map_err(storage)?;
            }
        }
        let mut leases = txn.open_table(LEASES).map_err(storage)?;
        for id in &changes.leases {
            match state.lease(*id) {
                Some(l) => leases.insert(id.0, encode(l)?.as_slice()).map_err(storage)?,
                None => leases.remove(id.0).map_err(storage)?,
            };
        }
        let mut visits = txn.open_table(VISITS).map_err(storage)?;
        for (site, visitor) in &changes.visits {
            let key = visit_key(site, visitor);
            match state.visit_record(site, visitor) {
                Some(record) => visits.insert(key.as_str(), encode(&record)?.as_slice()).map_err(storage)?,
                None => visits.remove(key.as_str()).map_err(storage)?,
            };
        }
        let mut meta = txn.open_table(META).map_err(storage)?;
        meta.insert(META_NEXT_LEASE_ID, state.next_lease_id()).map_err(storage)?;
        meta.insert(META_HISTORY_MS, state.history_for().as_millis() as u64).map_err(storage)?;
        meta.insert(META_CLOCK_MS, state.clock().as_millis().max(0) as u64).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}

/// Reads the whole pool from the file.
fn load(db: &Database) -> Result<PoolState, PoolError> {
    let txn = db.begin_read().map_err(storage)?;
    let mut numbers = Vec::new();
    for row in txn.open_table(NUMBERS).map_err(storage)?.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        numbers.push(decode::<NumberState>("number", k.value(), v.value())?);
    }
    let mut sites = Vec::new();
    for row in txn.open_table(SITES).map_err(storage)?.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let id = SiteId::new(k.value())?;
        sites.push((id, decode::<SiteState>("site", k.value(), v.value())?));
    }
    let mut leases = Vec::new();
    for row in txn.open_table(LEASES).map_err(storage)?.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        leases.push(decode::<Lease>("lease", &k.value().to_string(), v.value())?);
    }
    let mut visits = Vec::new();
    for row in txn.open_table(VISITS).map_err(storage)?.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        let (site, visitor) = k
            .value()
            .split_once(VISIT_KEY_SEP)
            .ok_or_else(|| PoolError::Storage(format!("stored visit key {:?} is unreadable", k.value())))?;
        let (visit, until) = decode::<(Visit, Ts)>("visit", k.value(), v.value())?;
        visits.push((SiteId::new(site)?, VisitorId::new(visitor)?, visit, until));
    }
    let meta = txn.open_table(META).map_err(storage)?;
    let next = meta.get(META_NEXT_LEASE_ID).map_err(storage)?.map_or(1, |v| v.value());
    let history_ms = meta.get(META_HISTORY_MS).map_err(storage)?.map_or(0, |v| v.value());
    let clock = Ts::from_millis(meta.get(META_CLOCK_MS).map_err(storage)?.map_or(0, |v| v.value()) as i64);
    let parts = StoredParts {
        numbers,
        sites,
        leases,
        visits,
        next_lease_id: next,
        clock,
        history_for: Duration::from_millis(history_ms),
    };
    Ok(PoolState::from_parts(parts, true))
}
