//! Where callpool keeps what it must not lose, one module per concept: [`calls`] (the records,
//! the per-site index, what is remembered of each caller), [`callbacks`] (requests, their limit
//! windows and links), [`jobs`] (the durable queue of deliveries: due times, claims that expire
//! when a node dies, attempts, dead letters), [`digests`] (the scheduled reports, one per site
//! and period, so each is sent once), [`visits`] (the visit log the simulator fits to)
//! and [`usage`] (daily samples of each site's pool).
//!
//! Two backends with one behaviour, chosen with the pool's: embedded (a redb file,
//! `<data_dir>/calls.redb`, beside the pool's; one process) and Redis (the cluster's, through
//! the pool's [`SharedRedis`]: the same connection and key prefix; every write one atomic Lua
//! script in `lua/`). A record and the jobs it creates are written in one atomic step, so an
//! acknowledged webhook always has its deliveries queued and no job exists without its record.
//! `tests/it/store.rs` runs every behaviour on both backends.
//!
//! Each concept module holds its types, its embedded tables and its Redis scripts; `embedded.rs`
//! and `redis.rs` hold what they share. Key and table names are those of earlier versions, so a
//! store written by them is read as it is.

pub mod callbacks;
pub mod calls;
pub mod digests;
pub mod jobs;
pub mod usage;
pub mod visits;

mod embedded;
mod error;
mod redis;

pub use error::StoreError;

use std::path::Path;

use callpool_pool::{Pool, SiteId};

/// The store the configuration names (see [`Store::open`]). Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Embedded(embedded::Db),
    Redis(redis::Db),
}

impl Store {
    /// The store that goes with `pool`: Redis beside a Redis pool, else `<data_dir>/calls.redb`.
    pub fn open(pool: &Pool, data_dir: Option<&Path>) -> Result<Store, StoreError> {
        let backend = match (pool, data_dir) {
            (Pool::Redis(p), _) => Backend::Redis(redis::Db::new(p.shared())),
            (Pool::Embedded(_), Some(dir)) => Backend::Embedded(embedded::Db::open(dir)?),
            (Pool::Embedded(_), None) => {
                return Err(StoreError::Failed("the embedded store needs a data directory".into()))
            }
        };
        Ok(Store { backend })
    }

    /// Opens `<data_dir>/calls.redb` on its own (tools, tests).
    pub fn embedded(data_dir: &Path) -> Result<Store, StoreError> {
        Ok(Store { backend: Backend::Embedded(embedded::Db::open(data_dir)?) })
    }
}

/// A site's part of an index; records no site could be found for are kept under "-".
fn site_part(site: Option<&SiteId>) -> &str {
    site.map_or("-", SiteId::as_str)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Failed(format!("unreadable {what} in the store: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("stored records serialize to JSON (no maps with non-string keys)")
}
