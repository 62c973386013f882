//! The embedded backend's plumbing: one redb file, `<data_dir>/calls.redb`, every write one
//! transaction, durable when it returns. Each concept module declares its own tables.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};

use super::StoreError;

#[derive(Clone)]
pub(super) struct Db(Arc<Database>);

pub(super) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("calls store: {e}"))
}

/// A table of `(part, ms, name)` keys: a per-part index by time.
pub(super) type Index<V> = TableDefinition<'static, (&'static str, i64, &'static str), V>;

impl Db {
    pub fn open(data_dir: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| err(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join("calls.redb");
        let db = Database::create(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        super::calls::create_tables(&txn)?;
        super::callbacks::create_tables(&txn)?;
        super::jobs::create_tables(&txn)?;
        super::visits::create_tables(&txn)?;
        super::usage::create_tables(&txn)?;
        txn.commit().map_err(err)?;
        Ok(Db(Arc::new(db)))
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

/// The names of the entries of `part` in `[from, to]`, in order, at most `limit`.
pub(super) fn entries_between<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, i64, &'static str), V>,
    part: &str,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    table
        .range((part, from, "")..(part, to.saturating_add(1), ""))
        .map_err(err)?
        .take(limit)
        .map(|e| e.map(|(k, _)| k.value().2.to_owned()).map_err(err))
        .collect()
}
