//! The embedded backend's plumbing: one redb file, `<data_dir>/calls.redb`, every write durable
//! when it returns. Each concept module declares its own tables.
//!
//! Most writes are a transaction of their own. The webhook's hot path ([`Db::grouped`]) goes
//! through one writer thread that commits in groups, as the pool's embedded store does: writes
//! that arrive while a commit is on the disk share the next transaction and its one fsync, and
//! each is answered after that commit returned. A write that fails aborts its whole group; every
//! write of it is answered with the error (a webhook then answers 503 and the PBX sends it again).

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use callpool_pool::Ts;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::error::StoreError;

#[derive(Clone)]
pub(super) struct Db(Arc<Database>, Arc<Writer>);

/// A write of a group: applies itself in the group's transaction and keeps its answer until the
/// commit (or the group's failure) decides it.
type Grouped = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<Answer, String> + Send>;
/// A write's answer, given the group's outcome (its error's text).
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The most writes one group commits.
const MAX_GROUP: usize = 256;

/// The group writer's queue; the thread ends when the last `Db` goes.
struct Writer {
    queue: Mutex<Option<mpsc::Sender<Grouped>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: every write queued goes into one transaction, committed once.
fn write_groups(db: Arc<Database>, queue: mpsc::Receiver<Grouped>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                // Nothing was applied: each write is answered by dropping it (its caller sees the
                // writer's error below).
                tracing::warn!(error = %e, writes = group.len(), "The calls store could not begin a write.");
                drop(group);
                continue;
            }
        };
        let mut answers = Vec::with_capacity(group.len());
        let mut failed = None;
        for write in group {
            if failed.is_some() {
                drop(write);
                continue;
            }
            match write(&txn) {
                Ok(answer) => answers.push(answer),
                Err(e) => failed = Some(e),
            }
        }
        let outcome = match failed {
            // Dropping the transaction aborts it: none of the group's writes is kept.
            Some(e) => Err(e),
            None => txn.commit().map_err(|e| err(e).to_string()),
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, writes = answers.len(), "A group of writes to the calls store failed; none was kept.");
        }
        for answer in answers {
            answer(outcome.clone());
        }
    }
}

pub(super) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("embedded store: {e}"))
}

/// A table of `(part, ms, name)` keys: a per-part index by time.
pub(super) type Index<V> = TableDefinition<'static, (&'static str, i64, &'static str), V>;

impl Db {
    pub fn open(data_dir: &Path) -> Result<Db, StoreError> {
        let path = callpool_pool::embedded::owner_only_file(data_dir, "calls.redb")
            .map_err(|e| err(format!("cannot create {}: {e}", data_dir.join("calls.redb").display())))?;
        let db = Database::create(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        create_tables(&txn)?;
        txn.commit().map_err(err)?;
        let db = Arc::new(db);
        let (queue, jobs) = mpsc::channel();
        let writer_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("calls-writer".into())
            .spawn(move || write_groups(writer_db, jobs))
            .map_err(|e| err(format!("cannot start the writer thread: {e}")))?;
        let writer = Writer { queue: Mutex::new(Some(queue)), thread: Mutex::new(Some(thread)) };
        Ok(Db(db, Arc::new(writer)))
    }

    /// Runs `op` in the writer's next group transaction; answers once that is committed.
    pub async fn grouped<R: Send + 'static>(
        &self,
        op: impl FnOnce(&redb::WriteTransaction) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let write: Grouped = Box::new(move |txn| match op(txn) {
            Ok(r) => Ok(Box::new(move |outcome: Result<(), String>| {
                let _ = tx.send(outcome.map(|()| r).map_err(StoreError::Failed));
            }) as Answer),
            Err(e) => {
                let text = e.to_string();
                let _ = tx.send(Err(e));
                Err(text)
            }
        });
        let queue = self.1.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        queue.ok_or_else(|| err("the store is closed"))?.send(write).map_err(|_| err("the writer stopped"))?;
        // A write dropped unanswered: its group failed before or while it was applied.
        rx.await.unwrap_or_else(|_| Err(err("the write's group failed; see the log")))
    }

    /// Runs `op` on a blocking thread (redb does file I/O and fsync).
    pub async fn blocking<R: Send + 'static>(
        &self,
        op: impl FnOnce(&Database) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || op(&db)).await.map_err(|e| err(format!("store task failed: {e}")))?
    }
}

/// The (ms, name) of up to `limit` entries of `part` in a (part, ms, name) table with ms < `before`,
/// in order.
pub(super) fn entries_before<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, i64, &'static str), V>,
    part: &str,
    before: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    table
        .range((part, i64::MIN, "")..(part, before, ""))
        .map_err(err)?
        .take(limit)
        .map(|e| e.map(|(k, _)| (k.value().1, k.value().2.to_owned())).map_err(err))
        .collect()
}

/// A forgotten record: its id and its JSON (if it was still there).
pub(super) type Forgotten = (String, Option<Vec<u8>>);

/// Forgets up to `limit` records per part of `parts` that `index` lists before `before` (ms):
/// their places in the index and the records (kept in `records`), in the caller's transaction.
/// Returns each forgotten record's id and JSON (the caller forgets their jobs: `jobs::forget_in`).
pub(super) fn forget_indexed(
    txn: &redb::WriteTransaction,
    (index, records): (Index<()>, TableDefinition<&str, &[u8]>),
    parts: &[String],
    (before, limit): (i64, usize),
) -> Result<Vec<Forgotten>, StoreError> {
    let mut forgotten = Vec::new();
    {
        let mut index = txn.open_table(index).map_err(err)?;
        let mut records = txn.open_table(records).map_err(err)?;
        for part in parts {
            for (at, id) in entries_before(&index, part, before, limit)? {
                index.remove((part.as_str(), at, id.as_str())).map_err(err)?;
                let record = records.remove(id.as_str()).map_err(err)?.map(|v| v.value().to_vec());
                forgotten.push((id, record));
            }
        }
    }
    Ok(forgotten)
}

/// The records (JSON) that `index` lists under `part` in `[from, to]`, in order, at most `limit`.
pub(super) fn records_between(
    db: &redb::Database,
    index: Index<()>,
    records: TableDefinition<&str, &[u8]>,
    part: &str,
    (from, to): (Ts, Ts),
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let txn = db.begin_read().map_err(err)?;
    let index = txn.open_table(index).map_err(err)?;
    let records = txn.open_table(records).map_err(err)?;
    let mut out = Vec::new();
    for entry in index
        .range((part, from.as_millis(), "")..(part, to.as_millis().saturating_add(1), ""))
        .map_err(err)?
        .take(limit)
    {
        let (k, _) = entry.map_err(err)?;
        if let Some(v) = records.get(k.value().2).map_err(err)? {
            out.push(v.value().to_vec());
        }
    }
    Ok(out)
}

/// Creates every table, so that reads never meet a missing one.
fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(tables::calls::RECORDS).map_err(err)?;
    txn.open_table(tables::calls::BY_SITE).map_err(err)?;
    txn.open_table(tables::calls::CALLERS).map_err(err)?;
    txn.open_table(tables::callbacks::RECORDS).map_err(err)?;
    txn.open_table(tables::callbacks::BY_SITE).map_err(err)?;
    txn.open_table(tables::callbacks::BY_NUMBER).map_err(err)?;
    txn.open_table(tables::callbacks::BANS).map_err(err)?;
    txn.open_table(tables::callbacks::LINKS).map_err(err)?;
    txn.open_table(tables::jobs::QUEUE).map_err(err)?;
    txn.open_table(tables::jobs::QUEUE_DUE).map_err(err)?;
    txn.open_table(tables::jobs::CLAIMS).map_err(err)?;
    txn.open_table(tables::jobs::CLAIM_UNTIL).map_err(err)?;
    txn.open_table(tables::jobs::STATES).map_err(err)?;
    txn.open_table(tables::jobs::TRIES).map_err(err)?;
    txn.open_table(tables::jobs::DEAD).map_err(err)?;
    txn.open_table(tables::jobs::DEAD_SINCE).map_err(err)?;
    txn.open_table(tables::usage::USAGE).map_err(err)?;
    txn.open_table(tables::digests::RECORDS).map_err(err)?;
    txn.open_table(tables::digests::BY_SITE).map_err(err)?;
    txn.open_table(tables::visits::VISITS).map_err(err)?;
    Ok(())
}

/// Every table of `calls.redb`, in one place (their names are the file's format), by the module
/// that uses them.
pub(super) mod tables {
    pub mod calls {
        use redb::TableDefinition;

        use crate::store::embedded::Index;

        /// call key -> Call JSON
        pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("calls");
        /// (site, started ms, call key)
        pub const BY_SITE: Index<()> = TableDefinition::new("calls_by_site");
        /// (site, caller) -> CallerMemory JSON
        pub const CALLERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("callers");
    }

    pub mod callbacks {
        use redb::TableDefinition;

        use crate::store::embedded::Index;

        /// callback id -> Callback JSON
        pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("callbacks");
        /// (site, requested ms, callback id): the site's callbacks (reports, the per-site limit)
        pub const BY_SITE: Index<()> = TableDefinition::new("callbacks_by_site");
        /// ("site|number", requested ms, callback id): the per-number limit
        pub const BY_NUMBER: Index<()> = TableDefinition::new("callbacks_by_number");
        /// "site|number" -> banned until ms
        pub const BANS: TableDefinition<&str, i64> = TableDefinition::new("callback_bans");
        /// call key -> callback id: the calls that report a callback's outcome
        pub const LINKS: TableDefinition<&str, &str> = TableDefinition::new("callback_links");
    }

    pub mod jobs {
        use redb::TableDefinition;

        use crate::store::embedded::Index;

        /// (kind, due ms, job) and job -> due ms
        pub const QUEUE: Index<()> = TableDefinition::new("outbox");
        pub const QUEUE_DUE: TableDefinition<&str, i64> = TableDefinition::new("outbox_due");
        /// (kind, held until ms, job) and job -> held until ms
        pub const CLAIMS: Index<()> = TableDefinition::new("outbox_claims");
        pub const CLAIM_UNTIL: TableDefinition<&str, i64> = TableDefinition::new("outbox_claim_until");
        /// job -> JobState JSON
        pub const STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox_states");
        /// job -> failed attempts
        pub const TRIES: TableDefinition<&str, u32> = TableDefinition::new("outbox_tries");
        /// (kind, dead since ms, job) and job -> dead since ms
        pub const DEAD: Index<()> = TableDefinition::new("outbox_dead");
        pub const DEAD_SINCE: TableDefinition<&str, i64> = TableDefinition::new("outbox_dead_since");
    }

    pub mod digests {
        use redb::TableDefinition;

        use crate::store::embedded::Index;

        /// digest id -> DigestRecord JSON
        pub const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("digests");
        /// (site, due ms, digest id)
        pub const BY_SITE: Index<()> = TableDefinition::new("digests_by_site");
    }

    pub mod usage {
        use redb::TableDefinition;

        /// (site, day) -> DayUsage JSON
        pub const USAGE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pool_usage");
    }

    pub mod visits {
        use redb::TableDefinition;

        /// (site, first seen ms, visitor) -> VisitRecord JSON
        pub const VISITS: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("visit_log");
    }
}
