//! The store's error: what a caller of the store can act on.

use callpool_pool::PoolError;

/// What can go wrong at the store's boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached now (Redis away); the caller may try again.
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] ::redis::RedisError),
    /// The store failed to read or write, or holds something callpool cannot read.
    #[error("store error: {0}")]
    Failed(String),
    /// The pool beneath (in the same store) failed.
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl StoreError {
    /// Whether trying again later may succeed (the store is away), as opposed to a failure.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Pool(PoolError::Unavailable(_)))
    }
}

impl StoreError {
    pub(super) fn redis(e: ::redis::RedisError) -> StoreError {
        if callpool_pool::redis_store::is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Failed(format!("redis: {e}"))
        }
    }
}
